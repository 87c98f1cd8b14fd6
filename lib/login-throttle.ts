import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { requestPathClient } from './redis.js';

/** Failed password logins allowed per window: per account (any address), and per client address (any account). */
export interface LoginLimits {
  readonly perAccount: number;
  readonly perAddress: number;
  readonly windowSeconds: number;
}

/** Warehouse's order of magnitude: 10 wrong passwords for one account, 50 from one address, in 5 minutes. */
export const DEFAULT_LOGIN_LIMITS: LoginLimits = { perAccount: 10, perAddress: 50, windowSeconds: 300 };

/** One login attempt let through: say how it ended, so a success is not counted against anyone. */
export interface LoginAttempt {
  succeeded(): Promise<void>;
}

/** Refused before the password was looked at: the seconds until the next attempt may be made. */
export interface LoginThrottled {
  readonly retryAfterSeconds: number;
}

/**
 * Throttles password logins per account and per client address, in Redis
 * (shared by every process of the app and legacy), or in this process's
 * memory while Redis is down or frozen. An attempt takes its points before
 * the password is hashed, so a throttled caller costs no scrypt and learns
 * nothing about the password it sent; a successful login clears its
 * account's failures and gives its address's point back.
 */
export class LoginThrottle {
  readonly #redis: Redis | undefined;
  readonly #account: RateLimiterAbstract;
  readonly #address: RateLimiterAbstract;

  constructor(redisUrl: string | undefined, limits: LoginLimits = DEFAULT_LOGIN_LIMITS) {
    this.#redis = redisUrl ? requestPathClient(redisUrl) : undefined;
    this.#account = this.#limiter('banyan:login:account', limits.perAccount, limits.windowSeconds);
    this.#address = this.#limiter('banyan:login:address', limits.perAddress, limits.windowSeconds);
  }

  #limiter(keyPrefix: string, points: number, duration: number): RateLimiterAbstract {
    const memory = new RateLimiterMemory({ keyPrefix, points, duration });
    if (!this.#redis) return memory;
    return new RateLimiterRedis({
      storeClient: this.#redis,
      keyPrefix,
      points,
      duration,
      rejectIfRedisNotReady: true,
      insuranceLimiter: memory,
    });
  }

  /** Takes one attempt for `username` from `address`, or says how long the caller must wait. */
  async begin(username: string, address: string): Promise<LoginAttempt | LoginThrottled> {
    const account = accountKey(username);
    const taken: [RateLimiterAbstract, string][] = [];
    let wait: number | undefined;
    for (const [limiter, key] of [
      [this.#account, account],
      [this.#address, address],
    ] as const) {
      try {
        await limiter.consume(key);
        taken.push([limiter, key]);
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) throw err;
        wait = Math.max(wait ?? 0, err.msBeforeNext);
      }
    }
    const giveBack = async () => {
      await Promise.all(taken.map(([limiter, key]) => limiter.reward(key).catch(() => undefined)));
    };
    if (wait !== undefined) {
      // Only attempts that were let through count: a throttled caller does not extend its own wait.
      await giveBack();
      return { retryAfterSeconds: Math.max(1, Math.ceil(wait / 1000)) };
    }
    return {
      // The owner got in: the account's failures are forgotten, and this attempt is not held against the address.
      succeeded: async () => {
        await Promise.all([this.#account.delete(account).catch(() => undefined), this.#address.reward(address).catch(() => undefined)]);
      },
    };
  }

  close(): void {
    this.#redis?.disconnect();
  }
}

/** Usernames are compared as given; the key is a digest, so a long or odd name makes an ordinary key. */
function accountKey(username: string): string {
  return createHash('sha256').update(username.toLowerCase()).digest('base64url');
}

/** What a throttled caller is told (the same whether its password was right or not). */
export function throttledMessage(throttled: LoginThrottled): string {
  return `Too many failed logins for this account or from this address. Try again in ${throttled.retryAfterSeconds} seconds.`;
}

/**
 * The client's address for the throttle: the proxy names it in
 * X-Banyan-Client (an IPv6 address by its /64; the proxy drops any a client
 * sends); a request that did not come through the proxy counts by its peer.
 */
export function loginAddress(req: IncomingMessage): string {
  const named = req.headers['x-banyan-client'];
  return typeof named === 'string' && named !== '' ? named : (req.socket.remoteAddress ?? '');
}
