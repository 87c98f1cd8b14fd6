/**
 * What each PostgreSQL query leaves behind when asked: a span (a child of the
 * request's, with the standard database attributes and the read router's
 * choice), and a query log line (BANYAN_QUERY_LOG) with the request id, the
 * handler, the server and the duration, as Disqus logged every query to find
 * the slow ones. Hooked into Kysely's query log, so every query of every
 * pool is seen; nothing is hooked when both are off.
 */

import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { LogEvent } from 'kysely';
import pino, { type Logger } from 'pino';
import { currentRetry, currentScope } from './request-scope.js';
import { banyanTracer, tracingOn } from './tracing.js';

/** BANYAN_QUERY_LOG: `all` queries, only `slow` ones (at least BANYAN_QUERY_LOG_SLOW_MS), or `off`. */
export interface QueryLogSettings {
  readonly mode: 'off' | 'all' | 'slow';
  readonly slowMs: number;
}

/** One query as the query log writes it. */
export interface QueryLogEntry {
  readonly reqId: string | undefined;
  readonly route: string | undefined;
  /** The server it ran on (`replica-1`, `db-2`), or `primary` for the pool that follows the primary. */
  readonly server: string;
  readonly role: 'primary' | 'replica';
  /** Why the request's reads went where they went, `write` for a statement other than SELECT on the primary. */
  readonly reason: string | undefined;
  readonly ms: number;
  /** The statement with its `$n` placeholders: no values. */
  readonly sql: string;
  readonly error?: string | undefined;
}

let queryLog: ((entry: QueryLogEntry) => void) | undefined;
let slowMs = 0;

/** Sets this process's query log (written through pino to `destination`, stdout by default). */
export function logQueries(settings: QueryLogSettings, destination: NodeJS.WritableStream = process.stdout): void {
  if (settings.mode === 'off') {
    queryLog = undefined;
    return;
  }
  slowMs = settings.mode === 'slow' ? settings.slowMs : 0;
  const logger: Logger = pino(
    { base: undefined, messageKey: 'msg', timestamp: pino.stdTimeFunctions.isoTime },
    destination === process.stdout ? pino.destination({ fd: 1, sync: false }) : destination,
  );
  queryLog = (entry) => logger.info(entry, 'query');
}

/** Whether queries are observed at all (a span or a log line): decided when a pool is made. */
export function observingQueries(): boolean {
  return queryLog !== undefined || tracingOn();
}

/** A server of the set, as its queries report it. */
export interface QueryServer {
  /** `replica-1`, `db-2`, or `primary` for the pool that follows whichever server is the primary. */
  readonly name: string;
  readonly url: string;
  /** Whether it is a standby now (a node's role changes with a failover). */
  isReplica(): boolean;
}

/**
 * Kysely's `log` for the pool of `server`: each query becomes a span under the request's (when tracing,
 * and only inside a traced request) and a query log line (when the log is on and the query qualifies).
 * Undefined when neither is on, so the pool runs as it always did.
 */
export function queryObserver(server: QueryServer): ((event: LogEvent) => void) | undefined {
  if (!observingQueries()) return undefined;
  const where = endpointOf(server.url);
  return (event) => {
    const scope = currentScope();
    const role = server.isReplica() ? 'replica' : 'primary';
    const text = event.query.sql;
    const operation = /^\s*(\w+)/.exec(text)?.[1]?.toUpperCase() ?? 'QUERY';
    const reason = currentRetry() ?? (role === 'primary' && operation !== 'SELECT' ? 'write' : scope?.readReason);
    const ms = event.queryDurationMillis;
    const error = event.level === 'error' ? String((event.error as Error)?.message ?? event.error) : undefined;
    const parent = trace.getSpan(context.active());
    if (parent && tracingOn()) {
      const span = banyanTracer().startSpan(`${operation} ${where.database ?? 'postgres'}`, {
        kind: SpanKind.CLIENT,
        startTime: performance.now() - ms,
        attributes: {
          'db.system.name': 'postgresql',
          'db.query.text': text,
          'db.operation.name': operation,
          ...(where.database ? { 'db.namespace': where.database } : {}),
          ...(where.host ? { 'server.address': where.host } : {}),
          ...(where.port ? { 'server.port': where.port } : {}),
          'banyan.db.server': server.name,
          'banyan.read.target': role,
          ...(reason ? { 'banyan.read.reason': reason } : {}),
        },
      });
      if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
      span.end();
    }
    if (queryLog && (ms >= slowMs || error !== undefined)) {
      queryLog({
        reqId: scope?.requestId,
        route: scope?.route(),
        server: server.name,
        role,
        reason,
        ms: Math.round(ms * 10) / 10,
        sql: text,
        error,
      });
    }
  };
}

/** The database, host and port a connection URL names (its password never leaves here). */
function endpointOf(url: string): { database: string | undefined; host: string | undefined; port: number | undefined } {
  try {
    const u = new URL(url);
    const database = decodeURIComponent(u.pathname.replace(/^\//, '')) || u.searchParams.get('dbname') || undefined;
    return { database, host: u.hostname || u.searchParams.get('host') || undefined, port: u.port ? Number(u.port) : 5432 };
  } catch {
    return { database: undefined, host: undefined, port: undefined };
  }
}
