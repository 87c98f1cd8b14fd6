import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The `banyan` launcher of this checkout. */
export const BANYAN = fileURLToPath(new URL('../../bin/banyan.js', import.meta.url));

/** Runs `banyan args…` to completion. */
export function runBanyan(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}) {
  const result = spawnSync(process.execPath, [BANYAN, ...args], {
    cwd: options.cwd, env: { ...process.env, ...options.env }, encoding: 'utf8', timeout: 60_000, input: options.input ?? '',
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Runs `banyan args…` without blocking this process's event loop, for
 * commands that talk to servers running inside the test process.
 */
export function runBanyanAsync(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [BANYAN, ...args], { cwd: options.cwd, env: { ...process.env, ...options.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** A running `banyan start`, with its output collected. */
export interface StartedStack {
  readonly child: ChildProcess;
  readonly stack: Record<string, unknown> & { proxy: string; primary: string; replicas: string[] };
  output(): string;
  /** Sends `signal` and resolves with the exit code. */
  stop(signal: NodeJS.Signals): Promise<number | null>;
  /** Sends `signal` to its whole process group, as Ctrl-C in a terminal does, and resolves with the exit code. */
  interrupt(signal: NodeJS.Signals): Promise<number | null>;
}

/** Starts `banyan start` in `cwd` and waits for it to write `.banyan/stack.json`. */
export async function startStack(cwd: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<StartedStack> {
  // In a process group of its own, as in a terminal: a signal to the group is what Ctrl-C sends.
  const child = spawn(process.execPath, [BANYAN, 'start', ...args], {
    cwd, env: { ...process.env, PORT: '0', ADMIN_PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  let output = '';
  child.stdout!.on('data', (d) => { output += d; });
  child.stderr!.on('data', (d) => { output += d; });
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
  return {
    child,
    stack: JSON.parse(readFileSync(file, 'utf8')),
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

/** Command lines of running processes that mention `text` (our data folders appear in their arguments). */
export function processesMentioning(text: string): string[] {
  const ps = spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return ps.stdout.split('\n').filter((line) => line.includes(text) && !line.startsWith('ps '));
}
