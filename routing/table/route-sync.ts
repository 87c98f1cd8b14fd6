import { Redis } from 'ioredis';
import type { Kysely } from 'kysely';
import type { BanyanDatabase } from '../../lib/schema.js';
import { latestTable, latestVersionNumber, seedTable } from './route-store.js';
import { compileTable, type CompiledTable } from './route-table.js';
import { DEFAULTS } from '../../lib/config.js';

/** The Redis channel on which a new table version is announced. */
export const ROUTES_CHANNEL = 'banyan:routes';

export interface RouteSyncOptions {
  readonly db: Kysely<BanyanDatabase>;
  readonly redisUrl?: string | undefined;
  /** How often to ask PostgreSQL for a newer version, the fallback when Redis is down. */
  readonly pollMs?: number;
  readonly log?: (line: string) => void;
  /** Called after a new version is in effect. */
  readonly onChange?: (table: CompiledTable) => void;
}

/**
 * Keeps this process's compiled route table current: loaded from PostgreSQL,
 * reloaded when Redis announces a new version, and polled as a fallback so a
 * change still arrives when Redis is down. A table is compiled once per
 * version; requests only read `current`.
 */
export class RouteSync {
  current: CompiledTable;
  readonly #options: RouteSyncOptions;
  #subscriber: Redis | undefined;
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;
  #again: Promise<void> | undefined;

  private constructor(options: RouteSyncOptions, initial: CompiledTable) {
    this.#options = options;
    this.current = initial;
  }

  /** Loads the latest table with its upstreams (seeding version 1 from `seed`, a routes file's table, when the store is empty) and starts listening. */
  static async start(options: RouteSyncOptions, seed?: unknown): Promise<RouteSync> {
    const stored = seed !== undefined ? await seedTable(options.db, seed, 'routes file') : await latestTable(options.db);
    const sync = new RouteSync(options, compileTable(stored?.routes ?? [], stored?.version ?? 0, stored?.upstreams));
    sync.#listen();
    return sync;
  }

  /**
   * Loads a newer version if there is one. A call while a load runs gets one more load after it (shared by
   * every call meanwhile): the running one may have read before the version just announced was stored.
   */
  refresh(): Promise<void> {
    if (this.#refreshing) {
      this.#again ??= this.#refreshing
        .catch(() => {})
        .then(() => {
          this.#again = undefined;
          return this.refresh();
        });
      return this.#again;
    }
    this.#refreshing = this.#load().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #load(): Promise<void> {
    const newest = await latestVersionNumber(this.#options.db);
    if (newest <= this.current.version) return;
    const stored = await latestTable(this.#options.db);
    if (!stored || stored.version <= this.current.version) return;
    this.current = compileTable(stored.routes, stored.version, stored.upstreams);
    this.#options.log?.(`route table version ${stored.version} in effect`);
    this.#options.onChange?.(this.current);
  }

  #listen(): void {
    const poll = this.#options.pollMs ?? DEFAULTS.routesPollMs;
    this.#timer = setInterval(() => {
      this.refresh().catch(() => {});
    }, poll);
    this.#timer.unref();
    if (!this.#options.redisUrl) return;
    const subscriber = new Redis(this.#options.redisUrl, { lazyConnect: false, maxRetriesPerRequest: null, enableOfflineQueue: true });
    let warned = false;
    subscriber.on('error', (err: Error) => {
      if (!warned) this.#options.log?.(`Redis unavailable for route notifications (${err.message}); polling every ${poll} ms`);
      warned = true;
    });
    // After a reconnect, announcements may have been missed: look once.
    subscriber.on('ready', () => {
      warned = false;
      this.refresh().catch(() => {});
    });
    subscriber.on('message', () => {
      this.refresh().catch(() => {});
    });
    subscriber.subscribe(ROUTES_CHANNEL).catch(() => {});
    this.#subscriber = subscriber;
  }

  /** Stops listening and polling. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#subscriber?.disconnect();
  }
}

/**
 * Tells every proxy that `version` is the newest table. Best effort: when
 * Redis is unreachable the proxies pick the change up by polling.
 */
export async function announceVersion(redisUrl: string | undefined, version: number): Promise<boolean> {
  if (!redisUrl) return false;
  const client = new Redis(redisUrl, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: 1_000,
    retryStrategy: () => null,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.publish(ROUTES_CHANNEL, String(version));
    return true;
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}
