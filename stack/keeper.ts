import type { ServerProcess } from './child-process.js';
import { DEFAULTS } from '../lib/config.js';
import { MAX_RESTART_DELAY_MS } from './supervisor.js';

/** A data service the stack started and can start again. */
export interface KeptService {
  /** As people read it in the log: `PostgreSQL primary`, `Redis`. */
  readonly name: string;
  /** Its running process (a new one after each restart). */
  server(): ServerProcess;
  /** Starts it again after it died (or replaces it: a failover), and waits until it answers. */
  restart(): Promise<void>;
  /** What the log says `restart` does: `restarting it` unless given. */
  readonly restartWord?: string;
}

export interface KeeperOptions {
  readonly log: (line: string) => void;
  /** First restart delay; doubles up to `maxBackoffMs` while restarts fail, and resets after a success. */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Called after a service came back (its pid changed). */
  readonly onRestart?: () => void;
}

/**
 * Restarts the stack's own PostgreSQL servers and Redis when they die, as the
 * supervisor does for legacy, the app and the proxy: a local stack survives
 * what a production one survives (a killed or crashed server is brought
 * back), and the components, which retry their connections, carry on.
 */
export function keepRunning(services: readonly KeptService[], options: KeeperOptions): { stop(): void } {
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();
  const first = options.backoffMs ?? DEFAULTS.restartDelayMs;
  // The process each service is watched through: a failover hands one service's process to another.
  const watched = new Map<KeptService, ServerProcess>();
  const watch = (service: KeptService) => {
    const server = service.server();
    watched.set(service, server);
    void server.exited.then((how) => {
      if (stopped || watched.get(service) !== server) return;
      options.log(
        `${service.name} (pid ${server.child.pid}) died (${how}); ${service.restartWord ?? 'restarting it'} in ${(first / 1000).toFixed(1)} s`,
      );
      attempt(service, first);
    });
  };
  const attempt = (service: KeptService, delay: number) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (stopped) return;
      service.restart().then(
        () => {
          if (stopped) return;
          options.log(`${service.name} is back (pid ${service.server().child.pid})`);
          options.onRestart?.();
          // Every service whose process changed (a failover changes two) is watched through its new one.
          for (const s of services) if (s === service || watched.get(s) !== s.server()) watch(s);
        },
        (err: Error) => {
          if (stopped) return;
          const next = Math.min(delay * 2, options.maxBackoffMs ?? MAX_RESTART_DELAY_MS);
          options.log(`${service.name} did not come back: ${err.message.split('\n')[0]}; trying again in ${(next / 1000).toFixed(1)} s`);
          attempt(service, next);
        },
      );
    }, delay);
    timers.add(timer);
  };
  for (const service of services) watch(service);
  return {
    stop: () => {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
    },
  };
}
