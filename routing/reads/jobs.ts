/**
 * Background jobs that read what the request that queued them wrote, as
 * GitLab carries `wal_locations` into its Sidekiq jobs: the request hands the
 * job a small position (JSON as it is), and the job's reads go to a replica
 * that has replayed it, else (after the router's bounded fence wait) to the
 * primary; never to an older replica.
 */

import { BanyanError } from '../../lib/errors.js';
import { formatLsn, parseLsn, parseTimeline, type WalPosition } from '../../lib/lsn.js';
import type { DbRouter, ReadFence, RequestDb } from './db-router.js';
import { requestFence, type FenceStore } from './fences.js';

/** Where a job must read from: a WAL position in PostgreSQL's text form, and its timeline when known. */
export interface JobPosition {
  readonly lsn: string;
  readonly timeline?: number;
}

/** A position as a job carries it. */
export function jobPosition(position: WalPosition): JobPosition {
  return position.timeline === undefined ? { lsn: formatLsn(position.lsn) } : { lsn: formatLsn(position.lsn), timeline: position.timeline };
}

/**
 * The fence a job's position stands for, read back from a queue (any JSON): `{ lsn: "0/16B3748", timeline: 1 }`,
 * timeline optional. Anything else is a BanyanError that says what is wrong, never a silent unfenced read.
 */
export function jobFence(value: unknown): ReadFence {
  const given = value as { lsn?: unknown; timeline?: unknown } | null;
  if (typeof given !== 'object' || given === null || typeof given.lsn !== 'string') {
    throw new BanyanError(
      'bad-job-position',
      `a job's position is { "lsn": "0/16B3748", "timeline": 1 }, not ${JSON.stringify(value)?.slice(0, 80)}`,
    );
  }
  const minLsn = parseLsn(given.lsn);
  if (minLsn === undefined)
    throw new BanyanError('bad-job-position', `a job's position "lsn" is a WAL position like 0/16B3748, not "${given.lsn.slice(0, 40)}"`);
  if (given.timeline === undefined) return { minLsn };
  const timeline = typeof given.timeline === 'number' ? parseTimeline(String(given.timeline)) : undefined;
  if (timeline === undefined)
    throw new BanyanError(
      'bad-job-position',
      `a job's position "timeline" is a positive whole number, not ${JSON.stringify(given.timeline)}`,
    );
  return { minLsn, timeline };
}

/**
 * The DB handle for a job queued with `position`: its reads see at least what the queuing request wrote
 * (and, with `fences` and `resources`, the resources' fences, as a request's would). `undefined` (a job
 * queued by no request) reads from any replica.
 */
export async function dbForJob<DB>(
  router: DbRouter<DB>,
  position: JobPosition | undefined,
  options: { readonly fences?: FenceStore | undefined; readonly resources?: readonly string[] } = {},
): Promise<RequestDb<DB>> {
  const fence = position === undefined ? {} : jobFence(position);
  return router.forRequest(await requestFence(fence, options.fences, options.resources ?? []));
}
