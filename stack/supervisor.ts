import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { BanyanError } from '../lib/errors.js';
import { DEFAULTS } from '../lib/config.js';

/** The longest a restart waits however often a component died before (BANYAN_RESTART_DELAY doubles up to it). */
export const MAX_RESTART_DELAY_MS = 30_000;

const BANYAN = fileURLToPath(new URL('../bin/banyan.js', import.meta.url));

/** One component of the stack, run as `banyan <command>` in a process of its own. */
export interface ComponentSpec {
  /** The name its log lines are prefixed with: `proxy`, `app-1`, `files`, `legacy`. */
  readonly name: string;
  /** `banyan` arguments, e.g. `['proxy']`. */
  readonly args: readonly string[];
  /** Its settings: added to this process's environment. */
  readonly env: Readonly<Record<string, string>>;
  /** A URL that answers (any HTTP status) once the component serves. */
  readonly readyUrl: string;
}

export interface SupervisorOptions {
  /** Restart a component that dies (with backoff), as systemd or Kubernetes would; off: leave it down. */
  readonly restart: boolean;
  readonly log: (line: string) => void;
  /** First restart delay; it doubles up to `maxBackoffMs`, and resets after a component ran for a minute. */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
}

interface Running {
  readonly spec: ComponentSpec;
  child: ChildProcess;
  startedAt: number;
  backoffMs: number;
  stopping: boolean;
  restartTimer: NodeJS.Timeout | undefined;
  exited: Promise<void>;
}

/**
 * Runs each component as a child process, prefixes its output with its
 * name, reports a death at once and restarts it with backoff (or leaves it
 * down). Children run in their own process group, so Ctrl-C in the terminal
 * reaches only this process, which stops them in the order it is told; they
 * also hold an IPC channel to it and exit when it goes away.
 */
export class Supervisor {
  readonly #options: SupervisorOptions;
  readonly #running = new Map<string, Running>();
  #onChange: () => void = () => {};

  constructor(options: SupervisorOptions) {
    this.#options = options;
  }

  /** Starts a component and waits until it answers HTTP at its ready URL. */
  async start(spec: ComponentSpec, timeoutMs = 60_000): Promise<void> {
    const running: Running = {
      spec,
      child: undefined as unknown as ChildProcess,
      startedAt: 0,
      backoffMs: this.#options.backoffMs ?? DEFAULTS.restartDelayMs,
      stopping: false,
      restartTimer: undefined,
      exited: Promise.resolve(),
    };
    this.#running.set(spec.name, running);
    this.#spawn(running);
    await this.#waitReady(running, timeoutMs);
  }

  /** Called when a component died (its pid is gone) and again when it was restarted and answers (its new pid). */
  onChange(listener: () => void): void {
    this.#onChange = listener;
  }

  /** The component's current process id (undefined while it is down). */
  pid(name: string): number | undefined {
    const r = this.#running.get(name);
    return r && r.child.exitCode === null && r.child.signalCode === null ? r.child.pid : undefined;
  }

  /** Every component's process id, for stack.json. */
  pids(): Record<string, number | null> {
    return Object.fromEntries([...this.#running.keys()].map((name) => [name, this.pid(name) ?? null]));
  }

  /** Stops components (SIGTERM: they drain), in parallel within one call, and waits for them; SIGKILL after `graceMs`. */
  async stop(names: readonly string[], graceMs = 30_000): Promise<void> {
    await Promise.all(
      names.map(async (name) => {
        const r = this.#running.get(name);
        if (!r) return;
        r.stopping = true;
        clearTimeout(r.restartTimer);
        if (r.child.exitCode === null && r.child.signalCode === null) {
          r.child.kill('SIGTERM');
          const timer = setTimeout(() => r.child.kill('SIGKILL'), graceMs);
          await r.exited;
          clearTimeout(timer);
        }
        this.#running.delete(name);
      }),
    );
  }

  #spawn(r: Running): void {
    const { spec } = r;
    const child = spawn(process.execPath, [BANYAN, ...spec.args], {
      env: { ...process.env, ...spec.env },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      detached: true,
    });
    r.child = child;
    r.startedAt = Date.now();
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => this.#options.log(`[${spec.name}] ${line}`));
    }
    // The IPC channel only tells the child we are alive; nothing is sent on it.
    child.on('message', () => {});
    r.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        resolve();
        if (r.stopping) return;
        const how = signal ? `signal ${signal}` : `exit code ${code}`;
        const ran = Date.now() - r.startedAt;
        this.#onChange();
        if (!this.#options.restart) {
          this.#options.log(`${spec.name} (pid ${child.pid}) died (${how}); not restarting it (--no-restart)`);
          return;
        }
        if (ran > 60_000) r.backoffMs = this.#options.backoffMs ?? DEFAULTS.restartDelayMs;
        this.#options.log(
          `${spec.name} (pid ${child.pid}) died (${how}) after ${(ran / 1000).toFixed(1)} s; restarting it in ${(r.backoffMs / 1000).toFixed(1)} s`,
        );
        r.restartTimer = setTimeout(() => {
          this.#spawn(r);
          this.#waitReady(r, 60_000).then(
            () => {
              this.#options.log(`${spec.name} is back (pid ${r.child.pid})`);
              this.#onChange();
            },
            (err: Error) => this.#options.log(`${spec.name}: ${err.message}`),
          );
        }, r.backoffMs);
        r.backoffMs = Math.min(r.backoffMs * 2, this.#options.maxBackoffMs ?? MAX_RESTART_DELAY_MS);
      }),
    );
  }

  async #waitReady(r: Running, timeoutMs: number): Promise<void> {
    const child = r.child;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new BanyanError(
          'component-exited',
          `${r.spec.name} exited while starting (${child.signalCode ?? `exit code ${child.exitCode}`})`,
          `its log lines above, prefixed [${r.spec.name}], say why`,
        );
      }
      try {
        const res = await fetch(r.spec.readyUrl, { signal: AbortSignal.timeout(1_000) });
        await res.arrayBuffer();
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    throw new BanyanError('component-timeout', `${r.spec.name} did not answer at ${r.spec.readyUrl} within ${timeoutMs / 1000} s`);
  }
}
