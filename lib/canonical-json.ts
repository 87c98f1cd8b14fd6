/**
 * JSON with every object's keys sorted (by code point), for equality: PostgreSQL's jsonb does not keep key
 * order, so plain JSON.stringify would see changes that are not. `undefined` is the text 'undefined'.
 */
export function canonical(value: unknown): string {
  return (
    JSON.stringify(value, (_key, v: unknown) =>
      v && typeof v === 'object' && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
        : v,
    ) ?? 'undefined'
  );
}
