/** A JSON object: not null, not an array (what route tables, plans and request bodies are checked against). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
