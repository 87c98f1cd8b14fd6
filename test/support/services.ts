import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startServices, type Services } from '../../stack/local-stack.js';

let running: Promise<Services> | undefined;
let dir: string | undefined;

/**
 * The real PostgreSQL primary + streaming replica and Redis that the
 * integration tests share, started on first use in a temporary folder and
 * stopped (and removed) when mocha finishes.
 */
export function services(): Promise<Services> {
  if (!running) {
    dir = tempDir('banyan-test-');
    running = startServices({ dir, redis: 'required' });
  }
  return running;
}

/** Stops the shared services and removes their folder. */
export async function stopServices(): Promise<void> {
  if (running) await (await running.catch(() => undefined))?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  running = undefined;
}

/** A temporary folder other users can traverse (PostgreSQL may run as another user). */
export function tempDir(prefix: string): string {
  const path = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(path, 0o755);
  return path;
}

/** Runs `fn` with a connected client, and closes it. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Waits until the replica has replayed everything the primary has written so far. */
export async function waitForReplay(s: Pick<Services, 'cluster'>, timeoutMs = 10_000): Promise<void> {
  await s.cluster.waitForReplay(timeoutMs);
}
