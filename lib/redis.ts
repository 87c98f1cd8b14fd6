import { Redis } from 'ioredis';

/** How long Redis is left alone after a command failed or timed out, before one is tried again. */
const REST_MS = 2_000;

/**
 * An ioredis client that never queues: a command fails within 250 ms, or at
 * once while the connection is down, so a caller can fall back at once.
 */
export function requestPathClient(url: string): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 500,
    commandTimeout: 250,
    retryStrategy: (times) => Math.min(times * 200, 2_000),
  });
  redis.on('error', () => {});
  return redis;
}

/**
 * A Redis client for work on the request path (fences, page cache, cache
 * generations), behind a breaker. A command fails within 250 ms instead of
 * queueing while Redis is away; after a failure, commands are not sent at
 * all for two seconds (they fail at once), so a frozen or dead Redis costs
 * the request path one short wait, not one per request. Callers catch the
 * failure and degrade: Redis being down degrades features, never availability.
 */
export class RequestPathRedis {
  readonly #redis: Redis;
  #restUntil = 0;

  constructor(url: string) {
    this.#redis = requestPathClient(url);
  }

  /** Runs `command`, or fails at once while Redis is resting after a failure. */
  async run<T>(command: (redis: Redis) => Promise<T>): Promise<T> {
    if (Date.now() < this.#restUntil) throw new Error('Redis is being skipped after a failure');
    try {
      return await command(this.#redis);
    } catch (err) {
      this.#restUntil = Date.now() + REST_MS;
      throw err;
    }
  }

  disconnect(): void {
    this.#redis.disconnect();
  }
}
