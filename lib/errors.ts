/**
 * An error a person can act on: a stable code for scripts and metrics, a
 * message that says what is wrong, and a hint that says what to do next.
 */
export class BanyanError extends Error {
  readonly code: string;
  readonly hint: string | undefined;

  constructor(code: string, message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BanyanError';
    this.code = code;
    this.hint = hint;
  }

  /** One line for a terminal: the message, then the hint. */
  toLine(): string {
    return this.hint ? `${this.message} (${this.hint})` : this.message;
  }
}

/** A readable message for anything thrown. */
export function describeError(err: unknown): string {
  if (err instanceof BanyanError) return err.toLine();
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * The HTTP status each error code answers with, on every listener that answers with one (the proxy's
 * admin API, the app, legacy): one table, so the same refusal never gets two statuses.
 */
const HTTP_STATUS: Readonly<Record<string, number>> = {
  'bad-request': 400,
  'bad-arguments': 400,
  'bad-job-position': 400,
  unauthorized: 401,
  forbidden: 403,
  'not-found': 404,
  'no-such-route': 404,
  'no-such-version': 404,
  'no-plan': 404,
  'version-conflict': 409,
  unchanged: 409,
  'already-paused': 409,
  'not-paused': 409,
  'too-large': 413,
  'invalid-table': 422,
  'reason-required': 422,
  'admin-disabled': 503,
};

/** The HTTP status of a BanyanError whose code has one (see HTTP_STATUS); undefined for anything else. */
export function httpStatusOf(err: unknown): number | undefined {
  return err instanceof BanyanError ? HTTP_STATUS[err.code] : undefined;
}
