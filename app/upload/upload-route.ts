import type { LoginThrottle } from '../../lib/login-throttle.js';
import type Router from '@koa/router';
import type { WriteAnnouncer } from '../../package-index/write-announcer.js';
import type { DbFor } from '../db-for.js';
import type { FileStore } from '../../lib/file-store.js';
import { reasonPhrase, UploadError, type UploadFailure } from './upload-errors.js';
import { handleUpload } from './upload.js';

/** Called once per upload attempt: `ok`, or the reason it was refused. */
export type UploadListener = (outcome: 'stored' | 'exists' | UploadFailure) => void;

export interface UploadRouteOptions {
  readonly dbOf: DbFor;
  readonly store: FileStore;
  readonly announcer: WriteAnnouncer;
  readonly maxUploadBytes: number;
  readonly projectsPerHour: number;
  readonly onUpload?: UploadListener | undefined;
  readonly logins?: LoginThrottle | undefined;
}

/**
 * `POST /legacy/`: the upload endpoint twine talks to. The path is
 * Warehouse's (twine's default repository is https://upload.pypi.org/legacy/):
 * despite its name it is the new app's endpoint, not the legacy backend's.
 * Success is 200 with `X-Banyan-Write-LSN`; a refusal is 4xx with
 * Warehouse's message in the status line and the body.
 */
export function uploadRoutes(router: Router, options: UploadRouteOptions): void {
  router.post('upload', '/legacy/', async (ctx) => {
    const db = await options.dbOf(ctx);
    try {
      const result = await handleUpload(
        {
          writer: db.writer,
          store: options.store,
          maxUploadBytes: options.maxUploadBytes,
          projectsPerHour: options.projectsPerHour,
          logins: options.logins,
        },
        ctx.req,
        ctx.res,
      );
      options.onUpload?.(result.outcome);
      if (result.outcome === 'stored') {
        ctx.set(await options.announcer.announce([result.project], result.projectCreated));
      }
      ctx.status = 200;
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body =
        result.outcome === 'stored'
          ? `OK: stored ${result.filename}\n`
          : `OK: ${result.filename} was already uploaded with the same contents; nothing changed\n`;
    } catch (err) {
      if (!(err instanceof UploadError)) throw err;
      options.onUpload?.(err.reason);
      ctx.status = err.status;
      ctx.message = reasonPhrase(err.message);
      if (err.status === 401) ctx.set('WWW-Authenticate', 'Basic realm="banyan"');
      ctx.set(err.headers);
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body = `${err.status} ${err.message}\n`;
    }
  });
}
