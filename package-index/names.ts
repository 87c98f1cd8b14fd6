/** PEP 503 normalization: runs of `-`, `_` and `.` become one `-`, all lower case. */
export function normalizeName(name: string): string {
  return name.replace(/[-_.]+/g, '-').toLowerCase();
}

/** PEP 508 project name rule: ASCII letters and digits, with `-`, `_`, `.` inside. */
export function isValidName(name: string): boolean {
  return /^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$/i.test(name);
}
