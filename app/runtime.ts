import type { IndexDatabase } from '../package-index/schema.js';
import type Koa from 'koa';
import type { BackendRuntimeOptions } from '../lib/config.js';
import { FileStore } from '../lib/file-store.js';
import { listen } from '../lib/http-server.js';
import { LoginThrottle } from '../lib/login-throttle.js';
import { DbRouter, FenceStore, type FencesWhenDown } from '../routing/reads/index.js';
import { PageCache } from './page-cache.js';
import { createApp } from './app.js';

/** What the new app needs to run: `banyan app` reads it from the environment. */
export interface AppRuntimeOptions extends BackendRuntimeOptions {
  readonly fencesWhenDown?: FencesWhenDown | undefined;
}

/** The new app, listening. */
export interface AppRuntime {
  readonly url: string;
  readonly router: DbRouter<IndexDatabase>;
  readonly storageDir: string;
  /** Stops accepting, lets requests in flight finish, then closes its connections. */
  close(): Promise<void>;
}

/** Wires and starts the new app: DB router, fences, page cache, file store, HTTP listener. */
export async function startAppRuntime(options: AppRuntimeOptions): Promise<AppRuntime> {
  return startServiceRuntime(options, 'banyan-app', ({ router, fences, store }) => {
    const cache = new PageCache(options.redisUrl);
    const logins = new LoginThrottle(options.redisUrl);
    return {
      app: createApp({
        router,
        fences,
        store,
        cache,
        logins,
        maxUploadBytes: options.maxUploadBytes,
        projectsPerHour: options.projectsPerHour,
        origin: { publicUrl: options.publicUrl, trustForwardedHost: options.trustForwardedHost === true },
      }),
      close: () => {
        cache.close();
        logins.close();
      },
    };
  });
}

/** What a process of the rewrite is built on: its DB router, resource fences and file store, started. */
export interface ServiceDeps {
  readonly router: DbRouter<IndexDatabase>;
  readonly fences: FenceStore;
  readonly store: FileStore;
}

/**
 * Starts a process of the rewrite (the app, the files service): DB router
 * (`name` is its PostgreSQL application name), fences and file store, then
 * the Koa app `build` makes on them, on its HTTP listener. Closing drains the
 * listener, then closes what `build` opened, then the data connections.
 */
export async function startServiceRuntime(
  options: AppRuntimeOptions,
  name: string,
  build: (deps: ServiceDeps) => { app: Koa; close?: () => void },
): Promise<AppRuntime> {
  const router = new DbRouter<IndexDatabase>({ primaryUrl: options.primaryUrl, replicaUrls: options.replicaUrls, name, ...options.reads });
  const fences = new FenceStore({ redisUrl: options.redisUrl, whenDown: options.fencesWhenDown ?? 'skip' });
  let built: { app: Koa; close?: () => void } | undefined;
  const closeDeps = async () => {
    built?.close?.();
    fences.close();
    await router.close();
  };
  try {
    await router.start();
    const store = new FileStore(options.storageDir);
    await store.init();
    built = build({ router, fences, store });
    const listening = await listen(built.app.callback(), options.port, options.host, 'PORT', options.drainMs);
    return {
      url: listening.url,
      router,
      storageDir: store.root,
      close: async () => {
        await listening.close();
        await closeDeps();
      },
    };
  } catch (err) {
    await closeDeps();
    throw err;
  }
}
