import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StackFile } from '../lib/config.js';

/** The `banyan` launcher of this checkout. */
export const BANYAN = fileURLToPath(new URL('../bin/banyan.js', import.meta.url));

/** A running `banyan start` (what `npm start` runs), with its output collected. */
export interface StartedStack {
  readonly child: ChildProcess;
  /** The folder it runs in (its `.banyan/` holds the data, the file store and stack.json). */
  readonly dir: string;
  /** stack.json as it was when the stack came up. */
  readonly stack: StackFile & { pids: Record<string, number | null> };
  /** stack.json as it is now: process ids change when a component is restarted. */
  current(): StackFile & { pids: Record<string, number | null> };
  output(): string;
  /** Sends `signal` and resolves with the exit code. */
  stop(signal: NodeJS.Signals): Promise<number | null>;
  /** Sends `signal` to its whole process group, as Ctrl-C in a terminal does, and resolves with the exit code. */
  interrupt(signal: NodeJS.Signals): Promise<number | null>;
}

/** Starts `banyan start` in `cwd`, as a user does, and waits until it says it is up. */
export async function startStack(cwd: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<StartedStack> {
  // In a process group of its own, as in a terminal: a signal to the group is what Ctrl-C sends.
  const child = spawn(process.execPath, [BANYAN, 'start', ...args], {
    // Debug headers on: the suite and the tests tell who answered by X-Legacy-Read-From and X-Banyan-Read-From.
    cwd,
    env: { ...process.env, PORT: '0', ADMIN_PORT: '0', BANYAN_DEBUG_HEADERS: 'on', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const file = join(cwd, '.banyan', 'stack.json');
  const deadline = Date.now() + 60_000;
  while (!existsSync(file) || !output.includes('Ctrl-C')) {
    if (child.exitCode !== null) throw new Error(`banyan start exited with ${child.exitCode}:\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new Error(`banyan start was not ready within 60 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const current = () => JSON.parse(readFileSync(file, 'utf8')) as StartedStack['stack'];
  return {
    child,
    dir: cwd,
    stack: current(),
    current,
    output: () => output,
    stop: async (signal) => {
      child.kill(signal);
      return exited;
    },
    interrupt: async (signal) => {
      process.kill(-child.pid!, signal);
      return exited;
    },
  };
}
