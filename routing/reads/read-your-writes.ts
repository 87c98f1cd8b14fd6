import type { IncomingHttpHeaders } from 'node:http';
import type Koa from 'koa';
import { laterPosition, readHeaders, writeHeaders, type WalPosition } from '../../lib/lsn.js';
import { BanyanError } from '../../lib/errors.js';
import { fenceFromHeader, type DbRouter, type ReadObserver, type RequestDb } from './db-router.js';
import { jobPosition, type JobPosition } from './jobs.js';
import { requestFence, type FenceStore } from './fences.js';

/**
 * Read-your-writes for any Node backend behind Banyan's proxy, the contract
 * docs/protocol.md states: honour `X-Banyan-Min-LSN` on reads, report
 * `X-Banyan-Write-LSN` after a committed write.
 */
export interface ReadYourWritesOptions<DB = unknown> {
  readonly router: DbRouter<DB>;
  /** Resource fences (Redis): a write to a resource makes every client's reads of it wait for it. */
  readonly fences?: FenceStore | undefined;
}

/**
 * The DB handle for one request, framework-free: reads go to a replica that
 * has replayed the request's fence (the proxy's `X-Banyan-Min-LSN`, and the
 * fences of the `resources` it declares), else to the primary; writes to the
 * primary.
 */
export async function dbForRequest<DB>(
  options: ReadYourWritesOptions<DB>,
  headers: IncomingHttpHeaders,
  resources: readonly string[] = [],
  observe?: ReadObserver,
): Promise<RequestDb<DB>> {
  const pin = fenceFromHeader(headers['x-banyan-min-lsn'], headers['x-banyan-min-timeline']);
  return options.router.forRequest(await requestFence(pin, options.fences, resources), observe);
}

/**
 * When the proxy asks for it (`X-Banyan-Consistency: monotonic`), an observer that keeps the furthest
 * position the request's reads saw and hands it to `set` as `X-Banyan-Read-LSN` (and
 * `X-Banyan-Read-Timeline`), for the proxy to raise the session's pin; else undefined, and reads cost
 * nothing more.
 */
export function readReporter(headers: IncomingHttpHeaders, set: (headers: Record<string, string>) => void): ReadObserver | undefined {
  if (headers['x-banyan-consistency'] !== 'monotonic') return undefined;
  let furthest: WalPosition | undefined;
  return (position) => {
    furthest = furthest ? laterPosition(furthest, position) : position;
    set(readHeaders(furthest));
  };
}

/**
 * After a write has committed: the primary's WAL position and timeline, to
 * send as `X-Banyan-Write-LSN` and `X-Banyan-Write-Timeline` (the proxy pins
 * the session there and never shows them to the client), with the written
 * resources' fences raised to it.
 */
export async function reportWrite<DB>(
  options: ReadYourWritesOptions<DB>,
  resources: readonly string[] = [],
): Promise<Record<string, string>> {
  return writeHeaders(await committed(options, resources));
}

/** The primary's position after a commit, with the written resources' fences raised to it. */
async function committed<DB>(options: ReadYourWritesOptions<DB>, resources: readonly string[]): Promise<WalPosition> {
  const position = await options.router.currentPosition();
  for (const resource of resources) await options.fences?.raise(resource, position);
  return position;
}

/** What the middleware puts on `ctx.state.banyan`. */
export interface ReadYourWritesState<DB = unknown> {
  /** The request's DB handle, chosen on first use (resources declared then count). */
  db(resources?: readonly string[]): Promise<RequestDb<DB>>;
  /** Call after a write has committed: sets `X-Banyan-Write-LSN` and `X-Banyan-Write-Timeline`. */
  wrote(resources?: readonly string[]): Promise<void>;
  /**
   * The position to hand a background job this request queues (`dbForJob` reads at or past it): the
   * request's write once `wrote()` has reported it, else the primary's position now, which holds
   * everything the request can have read.
   */
  positionForJob(): Promise<JobPosition>;
}

/** `ctx.state.banyan.positionForJob()`, for a Koa context that went through `readYourWrites`. */
export function positionForJob(ctx: Koa.Context): Promise<JobPosition> {
  const state = ctx.state['banyan'] as ReadYourWritesState | undefined;
  if (!state) throw new BanyanError('no-read-your-writes', 'positionForJob needs the readYourWrites middleware in front of this route');
  return state.positionForJob();
}

/**
 * Koa middleware: `ctx.state.banyan.db()` gives the request's reader and
 * writer, and `ctx.state.banyan.wrote()` after a commit reports the write.
 * The server the reads went to is in `X-Banyan-Read-From`, for debugging.
 */
export function readYourWrites<DB>(options: ReadYourWritesOptions<DB>): Koa.Middleware {
  return async (ctx, next) => {
    let chosen: Promise<RequestDb<DB>> | undefined;
    let written: WalPosition | undefined;
    const state: ReadYourWritesState<DB> = {
      db: (resources = []) => {
        chosen ??= dbForRequest(
          options,
          ctx.req.headers,
          resources,
          readReporter(ctx.req.headers, (headers) => ctx.set(headers)),
        ).then((db) => {
          ctx.set('X-Banyan-Read-From', db.readTarget);
          return db;
        });
        return chosen;
      },
      wrote: async (resources = []) => {
        written = await committed(options, resources);
        ctx.set(writeHeaders(written));
      },
      positionForJob: async () => jobPosition(written ?? (await options.router.currentPosition())),
    };
    ctx.state['banyan'] = state;
    await next();
  };
}
