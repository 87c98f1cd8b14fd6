import { quoted } from '../lib/quoted.js';
import { loadSettings, required } from '../lib/config.js';
import { parseDuration } from '../lib/duration.js';
import { usageReport, type UsageLine } from '../metrics/report.js';
import { connect } from '../lib/database.js';
import { latestTable } from '../routing/table/index.js';
import type { Args } from './command.js';
import { printTable } from './output.js';

/** `banyan report usage [--since 30d] [--unused 30d] [--json]`: which legacy routes and features are used, and which can go. */
export async function report(args: Args): Promise<void> {
  const sinceMs = parseDuration(String(args.flags.get('since') ?? '30d'), '--since');
  const unusedMs = args.flags.has('unused') ? parseDuration(String(args.flags.get('unused')), '--unused') : sinceMs;
  const settings = loadSettings();
  const db = connect(required(settings.databaseUrl, 'DATABASE_URL', 'to read the usage ledger'), {
    max: 2,
    name: 'banyan-report',
    schema: settings.schema,
  });
  try {
    const now = new Date();
    const table = await latestTable(db);
    const r = await usageReport(db, table?.routes ?? [], {
      since: new Date(now.getTime() - sinceMs),
      unusedSince: new Date(now.getTime() - unusedMs),
      now,
    });
    if (args.flags.has('json')) {
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return;
    }
    const days = (ms: number) => `${+(ms / 86_400_000).toFixed(2)} days`;
    const out = process.stdout;
    const count = (n: number) => n.toLocaleString('en-US');
    const when = (iso: string | null) => (iso ? `${iso.slice(0, 16).replace('T', ' ')}Z` : 'never');
    out.write(
      `Usage from ${r.since.slice(0, 16)}Z to ${r.until.slice(0, 16)}Z (${days(sinceMs)}): ${count(r.totalRequests)} requests through the proxy, ${count(r.totalUse)} of them use.\n`,
    );
    out.write(
      'Use is every answer but a 4xx (not found, refused), aborted requests included. Counts reach the ledger within a minute (BANYAN_USAGE_FLUSH).\n\n',
    );
    const section = (title: string, lines: UsageLine[], empty: string) => {
      out.write(`${title}\n`);
      if (lines.length === 0) {
        out.write(`  ${empty}\n\n`);
        return;
      }
      printTable(
        ['route / feature', 'use', 'share', '4xx', '5xx', 'by service', 'last used', 'top user agents'],
        lines.map((l) => [
          l.feature ? `  ${l.feature}` : l.route,
          count(l.use),
          `${(l.share * 100).toFixed(1)}%`,
          count(l.statuses['4xx'] ?? 0),
          count(l.statuses['5xx'] ?? 0),
          Object.entries(l.services)
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([b, n]) => `${b} ${count(n)}`)
            .join(', '),
          when(l.lastUsed),
          l.topUserAgents.map((a) => `${shortAgent(a.userAgent)} (${a.requests})`).join(', '),
        ]),
      );
      out.write('\n');
    };
    section('Legacy routes and features in use', r.legacy, 'none: no request reached legacy in this window');
    section('Served by the new services', r.new, 'none yet');
    if (r.retired.length) section('Retired routes still being called', r.retired, '');
    out.write(
      `Retirement candidates: legacy routes and features with no use since ${r.unusedSince.slice(0, 16)}Z (4xx answers are not use)\n`,
    );
    if (r.candidates.length === 0) out.write('  none: every legacy route was used\n');
    else {
      printTable(
        ['route', 'feature', 'mode', 'last used'],
        r.candidates.map((c) => [c.route, c.feature || '(whole route)', c.mode, when(c.lastUsed)]),
      );
      out.write('\nTo retire one: banyan routes set ROUTE --mode retired --status 410 --message "…" --reason "…"\n');
    }
  } finally {
    await db.destroy();
  }
}

/** A user agent for a table: pip's JSON details dropped, at most 40 characters, quoted. */
function shortAgent(agent: string): string {
  return quoted(agent.replace(/\s*\{.*$/, ''), 40);
}
