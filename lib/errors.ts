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
