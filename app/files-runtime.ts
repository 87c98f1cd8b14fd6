import type { IndexDatabase } from '../package-index/schema.js';
import type Koa from 'koa';
import { createAppMetrics } from '../metrics/catalog.js';
import { createService } from './app.js';
import { fileRoutes } from './files.js';
import { startServiceRuntime, type AppRuntime, type AppRuntimeOptions } from './runtime.js';
import type { FileStore } from '../lib/file-store.js';
import type { DbRouter, FenceStore } from '../routing/reads/index.js';

/** `banyan files` listens here unless PORT says otherwise. */
export const FILES_PORT = 8083;

/**
 * The files service, as Warehouse split it from the index: only
 * `GET`/`HEAD /packages/*` (the app's own file routes, with ETag, Range and
 * a one-year immutable Cache-Control), `/_health` and `/metrics`, over the
 * same content-addressed store the app writes uploads to.
 */
export function createFilesApp(options: { router: DbRouter<IndexDatabase>; fences?: FenceStore; store: FileStore }): Koa {
  return createService('files', createAppMetrics(options.router, options.fences), (routes) => fileRoutes(routes, options.store));
}

/** Wires and starts the files service: the same DB router, fences and file store as the app, on its own listener. */
export function startFilesRuntime(options: AppRuntimeOptions): Promise<AppRuntime> {
  return startServiceRuntime(options, 'banyan-files', (deps) => ({ app: createFilesApp(deps) }));
}
