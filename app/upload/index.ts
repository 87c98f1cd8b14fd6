/**
 * Uploads to the new app: the endpoint twine talks to (`upload-route.ts`),
 * the handler (`upload.ts`) and its steps — the form (`upload-form.ts`), the
 * checks (`upload-validation.ts`, with the archive's own metadata from
 * `archive.ts` and `core-metadata.ts`) and storage (`upload-storage.ts`) —
 * and why an upload is refused (`upload-errors.ts`).
 */
export { uploadRoutes, type UploadRouteOptions } from './upload-route.js';
export { handleUpload } from './upload.js';
export { type UploadContext, type UploadResult } from './upload-storage.js';
export { reasonPhrase, UPLOAD_FAILURES, UploadError, type UploadFailure } from './upload-errors.js';
export { ArchiveError, DEFAULT_ARCHIVE_LIMITS, readSdist, readWheel, type ArchiveLimits } from './archive.js';
export * from './core-metadata.js';
