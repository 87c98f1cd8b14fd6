import type { Kysely } from 'kysely';
import type { BanyanDatabase } from '../lib/schema.js';
import { hostname, userInfo } from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadSettings, readStackFile, required, stackDir } from '../lib/config.js';
import { parseDuration } from '../lib/duration.js';
import { PREVIEW_PATH, signPreview } from '../proxy/preview.js';
import { BanyanError } from '../lib/errors.js';
import {
  announceVersion,
  auditLog,
  changeRoute,
  DEFAULT_SERVICE,
  describeChange,
  IMPLICIT_UPSTREAMS,
  latestTable,
  LEGACY,
  type Mode,
  MODES,
  readRoutesFile,
  rollbackTable,
  type Route,
  saveTable,
  summary,
  type UpstreamSpec,
  upstreamSource,
  validateTable,
} from '../routing/table/index.js';
import { connect } from '../lib/database.js';
import type { Args } from './command.js';
import { askAdmin } from './admin-api.js';
import { printTable } from './output.js';
import { preflight } from './route-preflight.js';

/** `banyan routes …`: read and change the route table every proxy follows. */
export async function routes(args: Args): Promise<void> {
  const [action, target] = args.words;
  const usage = (why: string) => new BanyanError('bad-arguments', why, `see banyan routes ${action} --help`);
  if (action === 'shadow' || action === 'status') return askProxy(action, target, args.flags.has('json'), usage);
  const settings = loadSettings();
  const db = connect(required(settings.databaseUrl, 'DATABASE_URL', 'to read the route table'), {
    max: 1,
    name: 'banyan-routes',
    schema: settings.schema,
  });
  try {
    const current = await latestTable(db);
    const c = new RoutesCommand(args, settings, db, current, usage);
    switch (action) {
      case 'list':
        return c.list();
      case 'preview':
        return c.preview(target);
      case 'show':
        return c.show(target);
      case 'set':
        return await c.set(target);
      case 'apply':
        return await c.apply(target);
      case 'history':
        return await c.history();
      case 'rollback':
        return await c.rollback(target);
      case undefined:
      default:
        throw usage(`unknown routes action "${action}"`);
    }
  } finally {
    await db.destroy();
  }
}

/** One `banyan routes` action against the table as it was read: what every action shares, and one method each. */
class RoutesCommand {
  readonly json: boolean;
  readonly table: readonly Route[];
  /** The upstreams in effect (IMPLICIT_UPSTREAMS before any version is stored). */
  readonly upstreams: readonly UpstreamSpec[];
  readonly actor = `${userInfo().username}@${hostname()} (cli)`;

  constructor(
    readonly args: Args,
    readonly settings: ReturnType<typeof loadSettings>,
    readonly db: Kysely<BanyanDatabase>,
    readonly current: Awaited<ReturnType<typeof latestTable>>,
    readonly usage: (why: string) => BanyanError,
  ) {
    this.json = args.flags.has('json');
    this.table = current?.routes ?? [];
    this.upstreams = current?.upstreams ?? IMPLICIT_UPSTREAMS;
  }

  /** The table, then its upstreams; with --json, `{version, upstreams, routes}`, which `routes apply` takes back. */
  list(): void {
    const { current } = this;
    if (this.json) return out({ version: current?.version ?? 0, upstreams: this.upstreams, routes: this.table });
    process.stdout.write(`Route table version ${current?.version ?? 0}${current ? `, by ${current.actor}: ${current.reason}` : ''}\n\n`);
    printTable(
      ['route', 'match', 'mode', 'service'],
      this.table.map((r) => [r.name, matchText(r), summary(r, false), serviceText(r)]),
    );
    process.stdout.write('\n');
    printTable(
      ['upstream', 'endpoints', 'balance', 'health'],
      this.upstreams.map((u) => [u.name, upstreamSource(u), u.balance ?? 'least-request', u.health ? u.health.path : '']),
    );
  }

  preview(target: string | undefined): void {
    const { flags } = this.args;
    const route = find(this.table, target);
    const secret = this.settings.secret?.split(',')[0] ?? stackSecret();
    if (!secret)
      throw new BanyanError(
        'missing-setting',
        'BANYAN_SECRET is not set; preview links are signed with it',
        "set BANYAN_SECRET to the proxies' secret",
      );
    const forMs = parseDuration(String(flags.get('for') ?? '1h'), '--for');
    if (forMs > 7 * 86_400_000) throw this.usage('--for is at most 7 days: a preview is for staff trying a route, not a second mode');
    const expires = Date.now() + forMs;
    const base = String(flags.get('base') ?? readStackFile()?.proxy ?? 'http://localhost:8080').replace(/\/+$/, '');
    const path = String(flags.get('path') ?? route.match.path.replace(/:[^/]+|\*/g, (m) => (m === '*' ? '' : 'x')));
    const link = `${base}${PREVIEW_PATH}?token=${encodeURIComponent(signPreview(route.name, expires, secret))}&next=${encodeURIComponent(path)}`;
    if (this.json) return out({ route: route.name, expires: new Date(expires).toISOString(), link });
    process.stdout.write(
      `Open this link in the browser that should try ${route.name} on the new app, until ${new Date(expires).toISOString().slice(0, 16).replace('T', ' ')}Z:\n\n  ${link}\n\n` +
        "Only that browser, and only this route, goes to the new app; everyone else still follows the route's mode. Anyone with the link can use it until it expires.\n",
    );
  }

  show(target: string | undefined): void {
    const route = find(this.table, target);
    if (this.json) return out(route);
    const rows = Object.entries(route).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]);
    if (route.service === undefined)
      rows.splice(rows.findIndex(([k]) => k === 'mode') + 1, 0, ['service', `${DEFAULT_SERVICE} (the default)`]);
    printTable(['field', 'value'], rows);
  }

  async set(target: string | undefined): Promise<void> {
    const { flags } = this.args;
    const route = find(this.table, target);
    const changed = applyFlags(route, this.args, this.usage);
    const next = this.table.map((r) => (r.name === route.name ? changed : r));
    const sample = flags.get('sample');
    const warnings = await preflight(route, changed, {
      appUrl: this.serviceUrl(changed.service ?? DEFAULT_SERVICE),
      service: changed.service ?? DEFAULT_SERVICE,
      legacyUrl: this.settings.legacyUrl,
      sample: typeof sample === 'string' ? sample : undefined,
    });
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    if (warnings.length && !flags.has('force') && !flags.has('dry-run')) {
      throw new BanyanError(
        'preflight-failed',
        `${route.name} was not changed: users would get errors (see the warnings above)`,
        'fix the backend first, or add --force to change it anyway',
      );
    }
    await this.change(next, `set ${route.name}`);
  }

  /**
   * One endpoint of a service, for the preflight check: the app's as the command line knows it
   * (APP_URL, or the local stack's), another service's from its upstream (its variable, first
   * endpoint or DNS URL); undefined when it cannot be known here, and the check is skipped.
   */
  serviceUrl(service: string): string | undefined {
    const upstream = this.upstreams.find((u) => u.name === service);
    if (!upstream || service === LEGACY) return undefined;
    if (upstream.env !== undefined) {
      // The variable as this command sees it, else the running local stack's endpoints of that service.
      const value =
        (upstream.env === 'APP_URL' ? this.settings.appUrl : process.env[upstream.env]) || readStackFile()?.services?.[service]?.[0]?.url;
      return value?.split(',')[0]?.trim() || undefined;
    }
    return upstream.dns ?? upstream.endpoints?.[0];
  }

  async apply(target: string | undefined): Promise<void> {
    const { flags } = this.args;
    if (!target) throw this.usage('apply needs a FILE');
    // A list of routes (keeping the upstreams in effect), a table {upstreams, routes}, or what `routes list --json`
    // printed: {version, upstreams, routes}, whose version guards against overwriting another change.
    const file = readRoutesFile(target);
    const exported = file !== null && typeof file === 'object' && !Array.isArray(file) ? (file as Record<string, unknown>) : undefined;
    let expected: number | undefined;
    if (flags.has('expected-version')) {
      expected = Number(flags.get('expected-version'));
      if (!Number.isInteger(expected) || expected < 0) throw this.usage('--expected-version must be a table version (a whole number)');
    } else if (typeof exported?.['version'] === 'number') {
      expected = exported['version'];
    }
    let table: unknown = file;
    if (exported) {
      // What an export adds to the table itself (older exports also carried who made the version, and when).
      const { version: _version, actor: _actor, reason: _reason, createdAt: _createdAt, ...rest } = exported;
      table = rest;
    }
    await this.change(table, `apply ${target}`, expected);
  }

  async history(): Promise<void> {
    const { flags } = this.args;
    const limit = flags.has('limit') ? Number(flags.get('limit')) : 20;
    if (!Number.isInteger(limit) || limit < 1) throw this.usage('--limit must be a whole number above 0');
    const entries = await auditLog(this.db, limit);
    if (this.json) return out(entries);
    printTable(
      ['version', 'when', 'who', 'action', 'reason', 'changes'],
      entries.map((e) => [
        String(e.version),
        e.at.toISOString().replace('T', ' ').slice(0, 19),
        e.actor,
        e.action,
        e.reason,
        e.changes.map((c) => c.replace(/\s+/, ' ')).join('; ') || '(none)',
      ]),
    );
  }

  async rollback(target: string | undefined): Promise<void> {
    const version = Number(target);
    if (!target || !Number.isInteger(version) || version < 1)
      throw this.usage('rollback needs the VERSION to restore (see `banyan routes history`)');
    const saved = await rollbackTable(this.db, version, this.actor, this.reason());
    if (this.json) out({ version: saved.version, restored: version });
    else process.stdout.write(`Restored version ${version} as version ${saved.version}.\n`);
    await this.announce(saved.version);
  }

  /** Validates and stores a new table; `expected` (default: the version read first) refuses to overwrite a change made meanwhile. */
  async change(next: unknown, what: string, expected = this.current?.version): Promise<void> {
    if (this.args.flags.has('dry-run')) {
      const checked = validateTable(next, { upstreams: this.upstreams });
      if (!checked.ok) {
        throw new BanyanError(
          'invalid-table',
          `the route table would be rejected:\n  ${checked.problems.join('\n  ')}`,
          'nothing was changed',
        );
      }
      const changes = describeChange(this.table, checked.routes, this.current ? this.upstreams : [], checked.upstreams);
      if (this.json) return out({ dryRun: true, valid: true, changes });
      process.stdout.write(
        `Dry run (${what}): nothing changed. This would:\n${changes.map((c) => `  ${c}\n`).join('') || '  change nothing\n'}`,
      );
      return;
    }
    const saved = await saveTable(this.db, {
      routes: next,
      actor: this.actor,
      reason: this.reason(),
      ...(expected !== undefined ? { expectedVersion: expected } : {}),
    });
    const changes = describeChange(this.table, saved.routes, this.current ? this.upstreams : [], saved.upstreams);
    if (this.json) out({ version: saved.version, changes });
    else process.stdout.write(`${changes.map((c) => `${c}\n`).join('') || 'no route changed\n'}`);
    await this.announce(saved.version);
  }

  reason(): string {
    const r = this.args.flags.get('reason');
    if (typeof r !== 'string' || !r.trim()) throw this.usage('a change needs --reason "…" for the audit log');
    return r;
  }

  async announce(version: number): Promise<void> {
    const told = await announceVersion(this.settings.redisUrl, version);
    if (this.json) return;
    process.stdout.write(
      told
        ? `Version ${version} is stored; every proxy switches to it within a second.\n`
        : `Version ${version} is stored; proxies pick it up within their poll interval (Redis was not reachable to announce it).\n`,
    );
  }
}

function out(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

interface ShadowReport {
  counts: Record<string, number>;
  groups: { where: string; count: number; example: { method: string; path: string; requestId: string; legacy: string; new: string } }[];
  samples: { at: string; method: string; path: string; requestId: string; differences: { where: string; legacy: string; new: string }[] }[];
}

/** Commands answered by the running proxy's admin API rather than the database. */
async function askProxy(
  action: 'shadow' | 'status',
  name: string | undefined,
  json: boolean,
  usage: (why: string) => BanyanError,
): Promise<void> {
  if (action === 'shadow' && !name) throw usage('shadow needs the route NAME');
  const body = await askAdmin(action === 'shadow' ? `/api/shadow/${encodeURIComponent(name!)}` : '/api/status');
  if (json) {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return;
  }
  if (action === 'status') {
    process.stdout.write(`Route table version ${String(body['version'])} in effect.\n\n`);
    const services = (body['upstreams'] ?? []) as StatusUpstream[];
    printTable(
      ['service', 'endpoints', 'taking requests', 'circuit breakers'],
      services.map((u) => [
        u.name,
        String(u.endpoints.length),
        String(u.endpoints.filter((e) => e.state === 'healthy' || e.state === 'slow-start').length),
        breakersText(u),
      ]),
    );
    const shadow = body['shadow'] as Record<string, Record<string, number>>;
    if (Object.keys(shadow).length) {
      process.stdout.write('\n');
      printTable(
        ['shadow route', 'match', 'mismatch', 'noise', 'error', 'skipped'],
        Object.entries(shadow).map(([route, c]) => [
          route,
          String(c['match']),
          String(c['mismatch']),
          String(c['noise']),
          String(c['error']),
          String(c['skipped']),
        ]),
      );
    }
    return;
  }
  const report = body as unknown as ShadowReport;
  const c = report.counts;
  const total = Object.values(c).reduce((a, b) => a + b, 0);
  process.stdout.write(
    `Shadow results for ${name}: ${total} compared: ${c['match']} match, ${c['mismatch']} mismatch, ${c['noise']} noise, ` +
      `${c['error']} error, ${c['skipped']} skipped.\n`,
  );
  if (report.groups.length) {
    process.stdout.write('\nDifferences, grouped by where they are (most frequent first):\n\n');
    printTable(
      ['where', 'mismatches', 'example request', 'legacy', 'new'],
      report.groups.map((g) => [
        g.where,
        String(g.count),
        `${g.example.method} ${g.example.path}`,
        clip(g.example.legacy),
        clip(g.example.new),
      ]),
    );
  }
  const shown = report.samples.slice(0, 3);
  if (shown.length) process.stdout.write(`\nThe ${shown.length} most recent mismatches (all ${report.samples.length} kept with --json):\n`);
  for (const sample of shown) {
    process.stdout.write(`\n${sample.at}  ${sample.method} ${sample.path}  (request ${sample.requestId})\n`);
    printTable(
      ['  where', 'legacy', 'new'],
      sample.differences.map((d) => [`  ${d.where}`, clip(d.legacy), clip(d.new)]),
    );
  }
}

/** What `routes status` reads of each service the proxy reports (`banyan upstreams` shows the rest). */
interface StatusUpstream {
  name: string;
  problem?: string;
  endpoints: { state: string; breaker: string }[];
}

/** `closed`, `open (safe requests fall back to legacy)` when every endpoint's breaker is open, else a count per state. */
function breakersText(u: StatusUpstream): string {
  if (u.endpoints.length === 0) return u.problem ? `no endpoints (${u.problem})` : 'no endpoints';
  const counts = new Map<string, number>();
  for (const e of u.endpoints) counts.set(e.breaker, (counts.get(e.breaker) ?? 0) + 1);
  if (counts.size === 1) {
    const [state] = counts.keys();
    return state === 'open' && u.name !== LEGACY ? 'open (safe requests fall back to legacy)' : state!;
  }
  return [...counts].map(([state, n]) => `${n} ${state}`).join(', ');
}

function clip(text: string, width = 48): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > width ? `${flat.slice(0, width - 1)}…` : flat;
}

function find(table: readonly Route[], name: string | undefined): Route {
  if (!name) throw new BanyanError('bad-arguments', 'name the route (see `banyan routes list`)');
  const route = table.find((r) => r.name === name);
  if (!route) {
    const near = table
      .map((r) => r.name)
      .filter((n) => n.includes(name) || name.includes(n))
      .slice(0, 5);
    throw new BanyanError(
      'no-such-route',
      `no route named "${name}"`,
      near.length ? `did you mean ${near.join(', ')}?` : 'see `banyan routes list`',
    );
  }
  return route;
}

/** The command line's flags as a route change (see routing/table/route-change.ts for how it applies). */
function applyFlags(route: Route, args: Args, usage: (why: string) => BanyanError): Route {
  const mode = args.flags.get('mode');
  if (mode !== undefined && (typeof mode !== 'string' || !MODES.includes(mode as Mode)))
    throw usage(`--mode must be one of ${MODES.join(', ')}`);
  let percent: number | undefined;
  if (args.flags.has('percent')) {
    percent = Number(args.flags.get('percent'));
    if (!Number.isFinite(percent)) throw usage('--percent must be a number from 0 to 100');
  }
  const fallback = args.flags.has('fallback') ? true : args.flags.has('no-fallback') ? false : undefined;
  const service = args.flags.has('service') ? String(args.flags.get('service')) : undefined;
  const retired =
    args.flags.has('message') || args.flags.has('status')
      ? {
          status: args.flags.has('status') ? Number(args.flags.get('status')) : undefined,
          message: args.flags.has('message') ? String(args.flags.get('message')) : undefined,
        }
      : undefined;
  return changeRoute(route, { mode: mode as Mode | undefined, percent, service, fallback, retired });
}

/** The service column: where the new side goes (the default too), blank for a legacy or retired route that names none. */
function serviceText(route: Route): string {
  if (route.mode === 'shadow') return route.shadow?.service ?? route.service ?? DEFAULT_SERVICE;
  if (route.service !== undefined) return route.service;
  return route.mode === 'legacy' || route.mode === 'retired' ? '' : DEFAULT_SERVICE;
}

function matchText(route: Route): string {
  const m = route.match;
  const extras = [
    m.methods ? m.methods.join(',') : '',
    m.host ? `host ${m.host}` : '',
    m.query
      ? Object.entries(m.query)
          .map(([k, v]) => `${k}=${v}`)
          .join('&')
      : '',
    m.headers
      ? Object.entries(m.headers)
          .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : v.join('|')}`)
          .join(', ')
      : '',
    m.cookies
      ? `cookie ${Object.entries(m.cookies)
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : v.join('|')}`)
          .join(', ')}`
      : '',
  ].filter(Boolean);
  return extras.length ? `${m.path} (${extras.join('; ')})` : m.path;
}

/** The secret `npm start` generated for this folder's stack, when there is one. */
function stackSecret(): string | undefined {
  const file = join(stackDir(), 'secret');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
}
