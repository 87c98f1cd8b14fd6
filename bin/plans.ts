import { hostname, userInfo } from 'node:os';
import { activePlans, controlPlan, planFor, startPlan, viewPlan, type PlanView } from '../autopilot/plan-store.js';
import { DEFAULT_PROMOTE_PLAN, DEFAULT_RETIRE_PLAN, formatMs, type PlanKind } from '../autopilot/plan-file.js';
import { loadSettings, readStackFile, required } from '../lib/config.js';
import { BanyanError } from '../lib/errors.js';
import { connect } from '../lib/database.js';
import { announceVersion } from '../routing/table/index.js';
import { existsSync, readFileSync } from 'node:fs';
import type { Args } from './command.js';
import { printTable } from './output.js';

const CONTROLS = ['status', 'pause', 'resume', 'abort', 'approve'] as const;

/**
 * `banyan routes promote|retire NAME [--plan FILE]` starts a plan the
 * autopilot walks (`--dry-run`: its budgets only watched); `--status`,
 * `--pause`, `--resume`, `--abort` and `--approve` follow and steer it.
 * `banyan routes plans` lists them.
 */
export async function plans(args: Args): Promise<void> {
  const [action, name] = args.words as ['promote' | 'retire' | 'plans', string | undefined];
  const settings = loadSettings();
  const db = connect(required(settings.databaseUrl, 'DATABASE_URL', 'to reach the plans'), {
    max: 2,
    name: 'banyan-plans',
    schema: settings.schema,
  });
  const json = args.flags.has('json');
  const out = (value: unknown): void => {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  };
  const actor = `${userInfo().username}@${hostname()} (cli)`;
  try {
    if (action === 'plans') {
      const rows = await activePlans(db);
      const views = await Promise.all(rows.map((r) => viewPlan(db, r, new Date(), settings.prometheusUrl)));
      if (json) return out(views);
      if (!views.length) {
        process.stdout.write('No plan is under way. Start one: banyan routes promote NAME, or banyan routes retire NAME.\n');
        return;
      }
      printTable(
        ['route', 'plan', 'status', 'step', 'on step', 'next step in'],
        views.map((v) => [
          v.route,
          `${v.kind} ${v.id}`,
          v.status,
          v.step >= 0 ? `${v.step + 1}/${v.steps.length} ${v.stepLabel}` : v.stepLabel,
          formatMs(v.elapsedMs),
          nextIn(v),
        ]),
      );
      return;
    }
    const chosen = CONTROLS.filter((c) => args.flags.has(c));
    if (chosen.length > 1) throw new BanyanError('bad-arguments', `choose one of --${chosen.join(', --')}`);
    const control = chosen[0];
    if (control && args.flags.has('plan')) throw new BanyanError('bad-arguments', `--plan starts a plan; it does not go with --${control}`);
    if (control && args.flags.has('dry-run'))
      throw new BanyanError('bad-arguments', `--dry-run starts a plan that only watches; it does not go with --${control}`);
    if (control === 'approve' && action !== 'promote')
      throw new BanyanError('bad-arguments', 'only promotions have steps that wait for approval');
    if (control === 'status') {
      const row = await planFor(db, name!);
      if (!row) throw new BanyanError('no-plan', `${name} has never had a plan`, `start one: banyan routes ${action} ${name}`);
      const view = await viewPlan(db, row, new Date(), settings.prometheusUrl);
      if (json) return out(view);
      printStatus(view);
      return;
    }
    if (control) {
      const { row, version } = await controlPlan(db, name!, control, actor);
      if (version !== undefined) await announceVersion(settings.redisUrl, version);
      if (json) return out({ plan: String(row.id), route: row.route, status: row.status, version: version ?? null });
      process.stdout.write(
        control === 'abort'
          ? `Plan ${row.id} for ${row.route} is aborted${version !== undefined ? `; the route is back as it was before the plan (table version ${version})` : '; the route already was as before the plan'}.\n`
          : control === 'pause'
            ? `Plan ${row.id} for ${row.route} is paused: the route stays where it is and nothing is judged until --resume.\n`
            : control === 'approve'
              ? `Plan ${row.id} for ${row.route}: ${row.reason}; the autopilot goes on within a second.\n`
              : `Plan ${row.id} for ${row.route} runs again; this step's hold starts over now.\n`,
      );
      return;
    }
    const file = args.flags.get('plan');
    const given = typeof file === 'string' ? readPlanFile(file) : action === 'promote' ? DEFAULT_PROMOTE_PLAN : DEFAULT_RETIRE_PLAN;
    if (args.flags.has('dry-run') && action !== 'promote')
      throw new BanyanError('bad-arguments', '--dry-run is for promotions: a retirement has no budgets to watch');
    const raw =
      args.flags.has('dry-run') && given && typeof given === 'object' && !Array.isArray(given) ? { ...given, dryRun: true } : given;
    const started = await startPlan(db, action as PlanKind, name!, raw, actor);
    const lease = await db
      .selectFrom('autopilot_lease')
      .select(['holder', 'expires_at'])
      .where('name', '=', 'autopilot')
      .executeTakeFirst();
    const live = lease && new Date(lease.expires_at).getTime() > Date.now();
    if (json)
      return out({
        plan: started.id,
        route: name,
        steps: started.steps.map((s) => s.label),
        startsAt: started.first + 1,
        autopilot: live ? lease.holder : null,
      });
    process.stdout.write(
      `Plan ${started.id} (${action}) for ${name}: ${started.steps.map((s, i) => (i === started.first ? `[${s.label}]` : s.label)).join(' → ')}\n`,
    );
    process.stdout.write(
      live
        ? `The autopilot (${lease.holder}) applies the first step within a second. Follow it: banyan routes ${action} ${name} --status\n`
        : `No proxy holds the autopilot lease right now: the plan starts when a proxy runs (${readStackFile() ? 'is npm start running?' : 'start banyan proxy'}).\n`,
    );
  } finally {
    await db.destroy();
  }
}

function nextIn(v: PlanView): string {
  if (v.status !== 'running') return '—';
  if (v.awaiting) return 'when approved (--approve)';
  if (v.step < 0) return 'starting';
  return v.nextInMs > 0 ? formatMs(v.nextInMs) : 'when the evidence is in';
}

function printStatus(v: PlanView): void {
  const out = process.stdout;
  out.write(`Plan ${v.id} (${v.kind}) for ${v.route}: ${v.status}\n`);
  out.write(`Steps: ${v.steps.map((s, i) => (i === v.step ? `[${s}]` : s)).join(' → ')}\n`);
  if (v.step >= 0 && v.status === 'running')
    out.write(`On step ${v.step + 1} of ${v.steps.length} (${v.stepLabel}) for ${formatMs(v.elapsedMs)}; next step: ${nextIn(v)}\n`);
  if (v.awaiting && v.status === 'running')
    out.write(
      `Waiting for approval before step ${v.awaiting.step + 1} (${v.awaiting.label}): banyan routes ${v.kind} ${v.route} --approve\n`,
    );
  for (const a of v.approvals) out.write(`Approved: step ${a.step + 1} (${v.steps[a.step] ?? '?'}) by ${a.by} at ${a.at}\n`);
  if (v.dryRun) out.write('Dry run: budgets are only watched; a broken one is reported, and the route is not rolled back\n');
  for (const w of v.watched) out.write(`Dry run: ${w}\n`);
  out.write(`Last: ${v.reason}\n`);
  // A hold's cause of this moment, when it is not the one recorded when the hold began.
  if (v.verdict?.action === 'hold' && v.verdict.reason !== v.reason) out.write(`Now: ${v.verdict.reason}\n`);
  if (v.verdict) {
    out.write('\n');
    printTable(
      ['check', 'live', 'must be', ''],
      v.verdict.checks.map((c) => [
        c.name,
        c.value,
        c.limit,
        (c.ok === true
          ? c.kind === 'gate'
            ? 'reached'
            : 'ok'
          : c.ok === false
            ? c.kind === 'gate'
              ? 'not yet'
              : 'BROKEN'
            : 'not judged yet') + (c.dryRun ? ' (dry run)' : ''),
      ]),
    );
  }
  if (v.status === 'running' || v.status === 'paused') {
    const lease =
      v.lease && v.lease.expiresInMs > 0 ? `the autopilot is ${v.lease.holder}` : 'no proxy holds the autopilot lease: is a proxy running?';
    out.write(`\n${lease}\n`);
  }
}

/** A plan file's JSON, or what is wrong with it. */
function readPlanFile(path: string): unknown {
  if (!existsSync(path))
    throw new BanyanError(
      'plan-file-missing',
      `plan file ${path} does not exist`,
      'write one as README.md shows ("Cutover on autopilot"), or leave --plan out for the default plan',
    );
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new BanyanError('plan-file-invalid', `plan file ${path} is not valid JSON: ${(err as Error).message}`, 'nothing was started');
  }
}
