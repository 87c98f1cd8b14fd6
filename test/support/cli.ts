import { spawn, spawnSync } from 'node:child_process';
import { BANYAN } from '../../chaos/stack.js';

export { BANYAN };

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

export { startStack, type StartedStack } from '../../chaos/stack.js';

/** Command lines of running processes that mention `text` (our data folders appear in their arguments). */
export function processesMentioning(text: string): string[] {
  const ps = spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return ps.stdout.split('\n').filter((line) => line.includes(text) && !line.startsWith('ps '));
}
