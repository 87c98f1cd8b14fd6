import { randomInt } from 'node:crypto';
import { newSession, SESSION_COOKIE } from '../../proxy/canary-session.js';

/** Chrome on 64-bit Windows, as the download page reads it. */
export const CHROME_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36';

/**
 * Browsers on `url` until stopped: three at a time, each request a new visitor with its own canary
 * session (signed with the stack's `secret`, as the proxy mints them: a hand-made banyan_sid picks no
 * side). `served` counts answers by status and backend (`200 new`), and `error` for failed requests.
 */
export function browsers(url: string, secret: string, userAgent = CHROME_WINDOWS): { served: Map<string, number>; stop(): Promise<void> } {
  const served = new Map<string, number>();
  let running = true;
  const worker = async () => {
    while (running) {
      try {
        const res = await fetch(url, {
          headers: {
            'user-agent': userAgent,
            accept: 'text/html,application/xhtml+xml',
            cookie: `${SESSION_COOKIE}=${newSession(randomInt(10_000), secret)}`,
          },
          signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer();
        const who = `${res.status} ${/backend=(\w+)/.exec(res.headers.get('banyan-route') ?? '')?.[1] ?? '?'}`;
        served.set(who, (served.get(who) ?? 0) + 1);
      } catch {
        served.set('error', (served.get('error') ?? 0) + 1);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const workers = Array.from({ length: 3 }, worker);
  return {
    served,
    stop: async () => {
      running = false;
      await Promise.all(workers);
    },
  };
}
