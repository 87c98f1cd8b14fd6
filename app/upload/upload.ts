import type { IncomingMessage, ServerResponse } from 'node:http';
import { authenticate } from '../../package-index/accounts.js';
import { dropBody } from '../../lib/form-body.js';
import { loginAddress, throttledMessage } from '../../lib/login-throttle.js';
import { DEFAULT_ARCHIVE_LIMITS } from './archive.js';
import { UploadError, tooLarge } from './upload-errors.js';
import { readUploadForm } from './upload-form.js';
import { inspectArchive, validate } from './upload-validation.js';
import { store, type UploadContext, type UploadResult } from './upload-storage.js';

/**
 * `POST /legacy/` with `:action=file_upload`: authenticates, checks the form
 * the way Warehouse does, then stores the file and its rows. The file is
 * renamed into place inside the database transaction, before COMMIT, and
 * removed again if the commit fails: nothing is served that has no row, and
 * no row points at a missing file.
 */
export async function handleUpload(ctx: UploadContext, req: IncomingMessage, res: ServerResponse): Promise<UploadResult> {
  // Credentials (and their throttle) before anything of the form: without them, every form gets the same answer.
  const auth = await authenticate(ctx.writer, req.headers.authorization, { throttle: ctx.logins, address: loginAddress(req) });
  if (typeof auth === 'object' && 'retryAfterSeconds' in auth) {
    refuseBody(ctx, req, res);
    throw new UploadError(429, throttledMessage(auth), 'auth-throttled', { 'Retry-After': String(auth.retryAfterSeconds) });
  }
  if (auth === 'missing' || auth === 'malformed') {
    refuseBody(ctx, req, res);
    throw new UploadError(
      401,
      'Invalid or non-existent authentication information. Use __token__ and an API token, or your username and password.',
      'auth-missing',
    );
  }
  if (auth === 'invalid') {
    refuseBody(ctx, req, res);
    throw new UploadError(403, 'Invalid or non-existent authentication information. Check the token or password.', 'auth-invalid');
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > ctx.maxUploadBytes + 16 * 1024 * 1024) {
    refuseBody(ctx, req, res);
    throw new UploadError(400, tooLarge(ctx.maxUploadBytes), 'too-large');
  }
  const form = await readUploadForm(req, ctx.store, ctx.maxUploadBytes).catch((err: unknown) => {
    // What is left of a form over its budget is dropped, not parsed, and the connection closed.
    if (err instanceof UploadError && err.status === 413) dropBody(req, res, { maxBytes: 1024 * 1024, maxMs: 5_000 });
    throw err;
  });
  try {
    const checked = validate(form, ctx.maxUploadBytes);
    const metadata = await inspectArchive(checked, form.fields, ctx.archiveLimits ?? DEFAULT_ARCHIVE_LIMITS);
    return await store(ctx, auth, { ...checked, coreMetadata: metadata });
  } catch (err) {
    if (form.content) await ctx.store.discard(form.content);
    throw err;
  }
}

/** Refused before the form is read: nothing of the body is parsed, and at most a little more than an upload's worth is read. */
function refuseBody(ctx: UploadContext, req: IncomingMessage, res: ServerResponse): void {
  dropBody(req, res, { maxBytes: ctx.maxUploadBytes + 16 * 1024 * 1024 });
}
