import type { BackendRuntimeOptions } from '../lib/config.js';
import { listen } from '../lib/http-server.js';
import { createLegacyServer } from './server.js';

/** What the legacy backend needs to run: `banyan legacy` reads it from the environment. */
export type LegacyRuntimeOptions = BackendRuntimeOptions;

/** The legacy backend, listening. */
export interface LegacyRuntime {
  readonly url: string;
  close(): Promise<void>;
}

/** Starts the legacy backend on its own listener. */
export async function startLegacyRuntime(options: LegacyRuntimeOptions): Promise<LegacyRuntime> {
  const legacy = createLegacyServer(options);
  try {
    await legacy.start();
    const listening = await listen(legacy.server, options.port, options.host, 'PORT', options.drainMs);
    return {
      url: listening.url,
      close: async () => {
        await listening.close();
        await legacy.close();
      },
    };
  } catch (err) {
    await legacy.close();
    throw err;
  }
}
