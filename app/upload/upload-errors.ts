/** Why an upload is refused: the reason codes (metric labels), the error, and how its message goes on a status line. */

/** Why an upload was refused: the `reason` label of upload failure metrics (each series starts at 0). */
export const UPLOAD_FAILURES = [
  'auth-missing',
  'auth-invalid',
  'auth-throttled',
  'forbidden',
  'bad-form',
  'bad-action',
  'bad-protocol',
  'bad-name',
  'bad-version',
  'bad-filetype',
  'bad-digest',
  'digest-mismatch',
  'bad-filename',
  'too-large',
  'file-exists',
  'token-scope',
  'rate-limited',
  'bad-archive',
  'archive-too-large',
  'no-metadata',
  'metadata-mismatch',
  'bad-metadata-version',
  'bad-classifier',
  'bad-requires-dist',
  'bad-requires-python',
  'bad-platform-tag',
  'second-sdist',
] as const;

export type UploadFailure = (typeof UPLOAD_FAILURES)[number];

/** Status lines carry the message, as Warehouse's do (twine prints them); they must be plain ASCII. */
export function reasonPhrase(message: string): string {
  return message.replace(/[^\x20-\x7e]/g, '?').slice(0, 500);
}

/** A refused upload: the HTTP status, Warehouse's message (also the status line's reason) and a reason code. */
export class UploadError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason: UploadFailure,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

export function tooLarge(limit: number): string {
  const size = limit >= 1024 * 1024 ? `${+(limit / (1024 * 1024)).toFixed(1)} MiB` : `${+(limit / 1024).toFixed(1)} KiB`;
  return `File too large. Limit for this index is ${size} (BANYAN_MAX_UPLOAD).`;
}
