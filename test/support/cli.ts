import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { BANYAN, type StartedStack } from '../../chaos/stack.js';

export { BANYAN };

/** Runs `banyan args…` to completion. */
export function runBanyan(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}) {
  const result = spawnSync(process.execPath, [BANYAN, ...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    encoding: 'utf8',
    timeout: 60_000,
    input: options.input ?? '',
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
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
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

/** Adds user `name` to the stack in `cwd` with `banyan users add` and returns an API token from `banyan tokens create`. */
export function addUploader(cwd: string, name: string): string {
  const user = runBanyan(['users', 'add', name, '--email', `${name}@example.org`], { cwd, input: `a long ${name} password\n` });
  if (user.status !== 0) throw new Error(`banyan users add ${name}: ${user.stderr}`);
  const created = runBanyan(['tokens', 'create', name], { cwd });
  if (created.status !== 0) throw new Error(`banyan tokens create ${name}: ${created.stderr}`);
  return created.stdout.trim().split('\n').pop()!.trim();
}

/** Stops a stack a test started (SIGTERM; a stack still up after 45 s, or exiting non-zero, fails the test) and removes its folder. */
export async function stopStack(stack: StartedStack | undefined, cwd: string | undefined): Promise<void> {
  if (stack) {
    const code = await Promise.race([stack.stop('SIGTERM'), new Promise((r) => setTimeout(r, 45_000)).then(() => 'timeout' as const)]);
    if (code !== 0) throw new Error(`SIGTERM did not stop the stack (${code}):\n${stack.output().slice(-3_000)}`);
  }
  if (cwd) rmSync(cwd, { recursive: true, force: true });
}

/** Banyan's own migrations, as `banyan migrate status` lists them: written out, so a test fails when one is added or renamed. */
export const BANYAN_MIGRATION_NAMES = [
  '2026-11-21-02-route-table',
  '2026-11-21-03-usage-ledger',
  '2026-11-23-01-usage-status',
  '2026-11-23-05-autopilot',
  '2026-12-02-01-route-upstreams',
  '2026-12-02-02-usage-service',
  '2026-12-02-03-plan-gates',
];
