import { execFileSync } from 'node:child_process';

/**
 * The faults, done to real processes. Every component and server of the
 * stack runs in a process group of its own (a PostgreSQL server's group holds
 * its postmaster and backends; a proxy's, its workers), so a signal to the
 * group reaches the whole server, as a crash or a stalled machine would.
 */

/** SIGKILL to a whole server: nothing is flushed, no goodbye is said. */
export function kill(pid: number): void {
  signalGroup(pid, 'SIGKILL');
}

/** SIGSTOP to a whole server for `ms`, then SIGCONT: it accepts connections and answers nothing, then resumes. */
export async function freeze(pid: number, ms: number): Promise<void> {
  signalGroup(pid, 'SIGSTOP');
  try {
    await new Promise((resolve) => setTimeout(resolve, ms));
  } finally {
    signalGroup(pid, 'SIGCONT');
  }
}

/** The process ids whose parent is `pid` (a proxy's workers). */
export function childrenOf(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => n > 0);
  } catch {
    return [];
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Not a group leader (or already gone): the process alone.
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}
