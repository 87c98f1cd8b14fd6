import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { BanyanError } from '../lib/errors.js';
import { spawnIdentity, type RunAs } from './os-user.js';

/** A long-running server we started, with its output going to a log file. */
export interface ServerProcess {
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Settles when the process has exited, with its exit code or signal. */
  readonly exited: Promise<string>;
}

/** Every server child still running, with the signal that stops it cleanly. */
const running = new Map<ChildProcess, NodeJS.Signals>();

// A safety net for exits we did not plan (an uncaught error): no server outlives us.
process.once('exit', () => {
  for (const child of running.keys()) child.kill('SIGTERM');
});

/** Stops every server child this process started; for signal handlers during start-up. */
export async function stopAllServerProcesses(): Promise<void> {
  await Promise.all(
    [...running].map(
      ([child, signal]) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill(signal);
          setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
        }),
    ),
  );
}

/** Starts `command` with output appended to `logFile`, as `runAs` when given. */
export function startServerProcess(
  command: string,
  args: string[],
  logFile: string,
  runAs?: RunAs,
  extra: SpawnOptions = {},
  stopSignal: NodeJS.Signals = 'SIGTERM',
): ServerProcess {
  const fd = openSync(logFile, 'a', 0o644);
  let child: ChildProcess;
  try {
    // Its own process group: Ctrl-C in the terminal reaches only our supervisor, which stops servers in order.
    child = spawn(command, args, { stdio: ['ignore', fd, fd], detached: true, ...spawnIdentity(runAs), ...extra });
  } finally {
    closeSync(fd);
  }
  running.set(child, stopSignal);
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve(signal ? `signal ${signal}` : `exit code ${code}`);
    });
    child.once('error', (err) => {
      running.delete(child);
      resolve(`error ${err.message}`);
    });
  });
  return { child, logFile, exited };
}

/** Asks a server to stop with `signal`, escalating to SIGKILL after `graceMs`. */
export async function stopServerProcess(server: ServerProcess, signal: NodeJS.Signals, graceMs = 10_000): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  server.child.kill(signal);
  const timer = setTimeout(() => server.child.kill('SIGKILL'), graceMs);
  await server.exited;
  clearTimeout(timer);
}

/** The last lines of a log file, for error messages. */
export function tailOf(file: string, lines = 8): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Polls `probe` until it resolves true, failing early when the process exits
 * and with the log's tail after `timeoutMs`.
 */
export async function waitUntilReady(
  what: string,
  server: ServerProcess,
  probe: () => Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exit: string | undefined;
  void server.exited.then((how) => {
    exit = how;
  });
  while (Date.now() < deadline) {
    if (exit) {
      throw new BanyanError(
        'server-exited',
        `${what} exited during start-up (${exit}); last log lines:\n${tailOf(server.logFile)}`,
        `see ${server.logFile}`,
      );
    }
    if (await probe().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new BanyanError(
    'server-timeout',
    `${what} was not ready after ${timeoutMs / 1000} s; last log lines:\n${tailOf(server.logFile)}`,
    `see ${server.logFile}`,
  );
}
