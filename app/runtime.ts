import type { BackendRuntimeOptions } from '../lib/config.js';
import { FileStore } from '../lib/file-store.js';
import { listen } from '../lib/http-server.js';
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
  readonly router: DbRouter;
  readonly storageDir: string;
  /** Stops accepting, lets requests in flight finish, then closes its connections. */
  close(): Promise<void>;
}

/** Wires and starts the new app: DB router, fences, page cache, file store, HTTP listener. */
export async function startAppRuntime(options: AppRuntimeOptions): Promise<AppRuntime> {
  const router = new DbRouter({ primaryUrl: options.primaryUrl, replicaUrls: options.replicaUrls, name: 'banyan-app', ...options.reads });
  const fences = new FenceStore({ redisUrl: options.redisUrl, whenDown: options.fencesWhenDown ?? 'skip' });
  const cache = new PageCache(options.redisUrl);
  const closeDeps = async () => {
    fences.close();
    cache.close();
    await router.close();
  };
  try {
    await router.start();
    const store = new FileStore(options.storageDir);
    await store.init();
    const app = createApp({ router, fences, store, cache, maxUploadBytes: options.maxUploadBytes, projectsPerHour: options.projectsPerHour });
    const listening = await listen(app.callback(), options.port, options.host, 'PORT', options.drainMs);
    return {
      url: listening.url, router, storageDir: store.root,
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
