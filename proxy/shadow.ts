import { constants as zlibConstants, createGunzip, createInflate } from 'node:zlib';
import type { Dispatcher } from 'undici';
import type { ProxyMetrics } from '../metrics/catalog.js';
import { canaryBucket, DEFAULT_SERVICE, LEGACY, type Route } from '../routing/table/index.js';
import type { CapturedResponse } from './forwarder.js';
import { compareResponses, type Difference, type Observed } from './shadow-compare.js';
import { namedFields } from './shadow-html.js';
import { beginShadowSpan, endShadowSpan, type RequestTrace, type ShadowTrace } from './request-span.js';
import type { UpstreamSet } from './upstreams/index.js';

export interface ShadowSettings {
  /** Shadow requests in flight at once, all routes together; beyond this a copy is skipped, never queued. */
  readonly concurrency: number;
  /** The same for one route, unless it says `shadow.maxInFlight`. */
  readonly perRoute: number;
  readonly timeoutMs: number;
  /** Mismatch samples kept per route. */
  readonly samples: number;
  /** Bytes of each body kept for comparison. */
  readonly maxBodyBytes: number;
}

export const DEFAULT_SHADOW: ShadowSettings = { concurrency: 32, perRoute: 8, timeoutMs: 5_000, samples: 20, maxBodyBytes: 1024 * 1024 };

/**
 * Whether a session's requests on a route with `shadow.percent` are copied: a hash of the session key
 * (salted, so the shadow's sample is not the canary's), the same answer for every request of the session.
 */
export function shadowSampled(percent: number, sessionKey: string): boolean {
  return canaryBucket(`shadow\u0000${sessionKey}`) < Math.round(percent * 100);
}

/** A mismatch kept for operators to read. */
export interface MismatchSample {
  readonly at: string;
  readonly method: string;
  readonly path: string;
  readonly requestId: string;
  readonly differences: readonly Difference[];
}

/**
 * Mismatches grouped by what differs, as Diffy shows them: one group per
 * place (`status`, `header content-type`, `body.info.version`, array
 * indexes folded to `[]`), with a count and one example request.
 */
export interface MismatchGroup {
  readonly where: string;
  count: number;
  readonly example: {
    readonly method: string;
    readonly path: string;
    readonly requestId: string;
    readonly legacy: string;
    readonly new: string;
  };
}

/** Per-route results, grouped differences and raw samples, as `GET /api/shadow/<route>` shows them. */
export interface ShadowReport {
  readonly route: string;
  readonly counts: Record<'match' | 'mismatch' | 'noise' | 'error' | 'skipped', number>;
  /** Copies sent and not yet compared (each is, within the shadow timeout). */
  readonly inFlight: number;
  readonly groups: readonly MismatchGroup[];
  readonly samples: readonly MismatchSample[];
}

/** Distinct difference groups kept per route; the rest are counted under `(other places)`. */
const MAX_GROUPS = 50;

/** The group a difference belongs to: array indexes and text line numbers folded away; an HTML field is its own group. */
export function groupOf(where: string): string {
  if (where.startsWith('body line ')) return 'body (text)';
  if (where.startsWith('html ')) return where;
  return where.replace(/\.\d+(?=\.|$)/g, '[]');
}

/** What the shadow needs of the original request. */
export interface ShadowRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string | string[]>;
  readonly requestId: string;
  /** The request's span, when tracing is on: the copy gets a span of its own, its child and linked to it. */
  readonly trace?: RequestTrace | undefined;
}

/**
 * Sends copies of safe requests on shadow routes to a new service (the
 * route's, or `shadow.service`), compares its answer with legacy's (which the
 * client already got), and keeps counts and mismatch samples. With
 * `shadow.percent`, only that share of sessions is copied. Copies in flight
 * are bounded per route and in all. The client never waits for any of it.
 */
export class Shadower {
  readonly #upstreams: UpstreamSet;
  readonly #settings: ShadowSettings;
  readonly #metrics: ProxyMetrics;
  readonly #reports = new Map<string, { counts: ShadowReport['counts']; groups: Map<string, MismatchGroup>; samples: MismatchSample[] }>();
  readonly #routeInFlight = new Map<string, number>();
  #inFlight = 0;

  constructor(upstreams: UpstreamSet, settings: ShadowSettings, metrics: ProxyMetrics) {
    this.#upstreams = upstreams;
    this.#settings = settings;
    this.#metrics = metrics;
  }

  /**
   * Starts the copy to the new app now (so both sides see the same moment). Returns how many bytes of
   * legacy's answer to capture and a function to call with them once the client has its answer; or
   * undefined when no copy runs (too many in flight), so nothing of legacy's answer is kept.
   */
  begin(
    route: Route,
    request: ShadowRequest,
    sessionKey: string | undefined,
  ): { readonly captureBytes: number; finish(legacy: CapturedResponse | undefined): void } | undefined {
    const shadow = route.shadow;
    // A session outside the sample is not compared at all: not counted, nothing kept.
    if (sessionKey !== undefined && shadow?.percent !== undefined && !shadowSampled(shadow.percent, sessionKey)) return undefined;
    const routeInFlight = this.#routeInFlight.get(route.name) ?? 0;
    if (this.#inFlight >= this.#settings.concurrency || routeInFlight >= (shadow?.maxInFlight ?? this.#settings.perRoute)) {
      this.#count(route.name, 'skipped');
      return undefined;
    }
    this.#inFlight++;
    this.#routeInFlight.set(route.name, routeInFlight + 1);
    const limit = shadow?.maxBodyBytes ?? this.#settings.maxBodyBytes;
    const service = shadow?.service ?? route.service ?? DEFAULT_SERVICE;
    const traced = request.trace ? beginShadowSpan(request.trace, route.name, service, request.method, request.path) : undefined;
    const copy = traced ? { ...request, headers: { ...request.headers, ...traced.headers } } : request;
    const candidate = this.#fetch(service, copy, limit);
    const again = shadow?.calibrate ? this.#fetch(LEGACY, copy, limit) : undefined;
    // A copy that fails (refused, reset, timed out) before its answer is compared, or whose comparison
    // never comes because legacy failed, is an error result, never an unhandled rejection that ends the proxy.
    candidate.catch(() => {});
    again?.catch(() => {});
    return {
      captureBytes: limit,
      finish: (legacy) => {
        void this.#finish(route, request, legacy, candidate, again, traced).finally(() => {
          this.#inFlight--;
          this.#routeInFlight.set(route.name, (this.#routeInFlight.get(route.name) ?? 1) - 1);
        });
      },
    };
  }

  async #finish(
    route: Route,
    request: ShadowRequest,
    legacy: CapturedResponse | undefined,
    candidate: Promise<Observed>,
    again: Promise<Observed> | undefined,
    traced: ShadowTrace | undefined,
  ): Promise<void> {
    let result: 'match' | 'mismatch' | 'noise' | 'error';
    let differences: Difference[] = [];
    let status: number | undefined;
    try {
      const [got, second] = await Promise.all([candidate, again]);
      status = got.status;
      if (!legacy) throw new Error('the legacy answer was not captured');
      // The client's answer may be compressed (a legacy behind gzip): compare what it says, not its encoding.
      const limit = route.shadow?.maxBodyBytes ?? this.#settings.maxBodyBytes;
      const verdict = compareResponses(
        await decoded(legacy, limit),
        await decoded(got, limit),
        {
          headers: route.shadow?.headers ?? ['content-type'],
          ignore: route.shadow?.ignore ?? [],
          html: route.shadow?.html?.compare && namedFields(route.shadow.html.compare),
        },
        second,
      );
      result = verdict.verdict;
      differences = verdict.differences;
    } catch {
      result = 'error';
    }
    this.#count(route.name, result);
    if (traced)
      endShadowSpan(
        traced,
        result,
        status,
        differences.map((d) => d.where),
      );
    if (result === 'mismatch') {
      const report = this.#report(route.name);
      for (const d of differences) {
        let key = groupOf(d.where);
        if (!report.groups.has(key) && report.groups.size >= MAX_GROUPS) key = '(other places)';
        const group = report.groups.get(key);
        if (group) group.count++;
        else
          report.groups.set(key, {
            where: key,
            count: 1,
            example: { method: request.method, path: request.path, requestId: request.requestId, legacy: d.legacy, new: d.new },
          });
      }
      report.samples.unshift({
        at: new Date().toISOString(),
        method: request.method,
        path: request.path,
        requestId: request.requestId,
        differences,
      });
      report.samples.length = Math.min(report.samples.length, this.#settings.samples);
    }
  }

  /** A copy to one endpoint of `service`, which counts in its balancing and health like any request. */
  async #fetch(service: string, request: ShadowRequest, limit: number): Promise<Observed> {
    const endpoint = this.#upstreams.get(service)?.pick(undefined);
    if (!endpoint?.begin()) throw new Error(`no endpoint of the ${service} service is taking requests`);
    try {
      const observed = await this.#fetchFrom(endpoint.pool, request, limit);
      endpoint.end({ ok: true, status: observed.status });
      return observed;
    } catch (err) {
      const code = String((err as { code?: unknown }).code ?? '');
      endpoint.end({
        ok: false,
        kind:
          code === 'ECONNREFUSED'
            ? 'refused'
            : code === 'ECONNRESET' || code === 'UND_ERR_SOCKET'
              ? 'reset'
              : code.includes('TIMEOUT')
                ? 'timeout'
                : 'error',
      });
      throw err;
    }
  }

  async #fetchFrom(pool: Dispatcher, request: ShadowRequest, limit: number): Promise<Observed> {
    const headers: Record<string, string | string[]> = { ...request.headers };
    headers['x-banyan-shadow'] = '1';
    // Copies are compared, not delivered: ask for the plain representation, whatever the client accepts.
    headers['accept-encoding'] = 'identity';
    const res = await pool.request({
      method: request.method as 'GET',
      path: request.path,
      headers,
      signal: AbortSignal.timeout(this.#settings.timeoutMs),
      headersTimeout: this.#settings.timeoutMs,
      bodyTimeout: this.#settings.timeoutMs,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      const buffer = chunk as Buffer;
      if (size < limit) chunks.push(buffer.subarray(0, limit - size));
      size += buffer.length;
    }
    return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
  }

  #count(route: string, result: keyof ShadowReport['counts']): void {
    this.#report(route).counts[result]++;
    this.#metrics.shadowResults.inc({ route, result });
  }

  #report(route: string) {
    let report = this.#reports.get(route);
    if (!report) {
      report = { counts: { match: 0, mismatch: 0, noise: 0, error: 0, skipped: 0 }, groups: new Map(), samples: [] };
      this.#reports.set(route, report);
    }
    return report;
  }

  /** Counts and recent mismatches of one route. */
  report(route: string): ShadowReport {
    const r = this.#report(route);
    const groups = [...r.groups.values()].map((g) => ({ ...g })).sort((a, b) => b.count - a.count);
    return { route, counts: { ...r.counts }, inFlight: this.#routeInFlight.get(route) ?? 0, groups, samples: [...r.samples] };
  }
}

/**
 * A captured answer with a gzip or deflate body decoded, to at most `limit` bytes: a capture cut at
 * its size limit decodes as far as it goes, and a body that inflates a thousandfold (a gzip bomb,
 * or just a big page) costs the comparison no more than a plain one.
 */
async function decoded<T extends { headers: Record<string, string | string[] | undefined>; body: Buffer }>(
  answer: T,
  limit: number,
): Promise<T> {
  const encoding = String(answer.headers['content-encoding'] ?? '')
    .toLowerCase()
    .trim();
  if (encoding !== 'gzip' && encoding !== 'deflate') return answer;
  const options = { finishFlush: zlibConstants.Z_SYNC_FLUSH };
  const inflater = encoding === 'gzip' ? createGunzip(options) : createInflate(options);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    inflater.end(answer.body);
    for await (const chunk of inflater as AsyncIterable<Buffer>) {
      const kept = chunk.length > limit - size ? chunk.subarray(0, limit - size) : chunk;
      chunks.push(kept);
      size += kept.length;
      if (size >= limit) break;
    }
  } catch {
    return answer;
  } finally {
    inflater.destroy();
  }
  const headers = { ...answer.headers };
  delete headers['content-encoding'];
  return { ...answer, headers, body: Buffer.concat(chunks, size) };
}
