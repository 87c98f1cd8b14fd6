import { Argument, Command, CommanderError, Option } from 'commander';
import { loadSettings, showsStacks } from '../lib/config.js';
import { BanyanError, describeError } from '../lib/errors.js';
import { MODES } from '../routing/table/index.js';
import { argsOf, type Args } from './command.js';

/** A command's handler, whose module is loaded only when it runs: `banyan help` or `routes list` does not load the servers. */
const lazy =
  <M>(load: () => Promise<M>, pick: (m: M) => (args: Args) => Promise<void>) =>
  async (...received: unknown[]): Promise<void> =>
    pick(await load())(argsOf(received.at(-1) as Command));

const json = () => new Option('--json', 'print JSON for scripts instead of a table');

/** The whole command line. Commander parses it, refuses unknown options and missing arguments, and writes every `--help`. */
export function program(): Command {
  const banyan = new Command('banyan')
    .description('A strangler proxy, read-your-writes DB router and usage metrics for rewriting a legacy web application route by route.')
    .usage('<command> [options]')
    .showSuggestionAfterError()
    .addHelpText(
      'after',
      `
Run \`banyan COMMAND --help\` for one command; \`source <(banyan completion bash)\` completes them in bash.

Settings come from the environment; unset ones fall back to the stack that
\`npm start\` runs in this folder (.banyan/stack.json). See README.md.`,
    );

  banyan
    .command('start')
    .description('the whole stack locally, a process per component (`npm start`)')
    .option('--replica-delay <duration>', 'hold the replica this far behind the primary (e.g. 2s), to see read-your-writes at work')
    .option('--workers <n>', 'proxy worker processes')
    .option('--app-instances <n>', 'new app processes behind the proxy, app-1 to app-N (1 to 16; default 2)')
    .option('--no-restart', 'do not restart components or databases that die')
    .option('--prometheus', "also run Prometheus (/usr/bin/prometheus) scraping the stack, for plans' PromQL checks")
    .option(
      '--failover',
      'when the PostgreSQL primary dies, promote the replica and build a new one from it (as a managed database does) instead of restarting the primary',
    )
    .addOption(json())
    .action(
      lazy(
        () => import('./start.js'),
        (m) => m.start,
      ),
    );
  banyan
    .command('proxy')
    .description('the strangler proxy (PORT, ADMIN_PORT, LEGACY_URL, APP_URL; with no DATABASE_URL it follows BANYAN_ROUTES_FILE alone)')
    .option('--workers <n>', 'worker processes sharing the port (1 to 64)')
    .action(
      lazy(
        () => import('./servers.js'),
        (m) => m.proxyCommand,
      ),
    );
  banyan
    .command('app')
    .description('the new app (PORT, DATABASE_URL, DATABASE_REPLICA_URLS)')
    .action(
      lazy(
        () => import('./servers.js'),
        (m) => m.appCommand,
      ),
    );
  banyan
    .command('files')
    .description('the files service: /packages/* from BANYAN_STORAGE (PORT, DATABASE_URL, DATABASE_REPLICA_URLS)')
    .action(
      lazy(
        () => import('./servers.js'),
        (m) => m.filesCommand,
      ),
    );
  banyan
    .command('legacy')
    .description('the legacy package index (PORT, DATABASE_URL)')
    .action(
      lazy(
        () => import('./servers.js'),
        (m) => m.legacyCommand,
      ),
    );

  migrateCommand(
    banyan.command('migrate').description("Banyan's own tables (route table, usage ledger, autopilot) on the primary (DATABASE_URL)"),
    lazy(
      () => import('./migrate.js'),
      (m) => m.migrate,
    ),
  );
  migrateCommand(
    banyan.command('index-migrate').description("the package index's tables (users, projects, releases, files) on the primary"),
    lazy(
      () => import('./migrate.js'),
      (m) => m.indexMigrate,
    ),
  );

  routesCommand(banyan.command('routes').description('the route table every proxy follows'));
  const upstreams = banyan
    .command('upstreams')
    .description('the services the running proxy sends to: endpoints, health, ejections, requests in flight, breakers');
  const upstreamAction = lazy(
    () => import('./upstreams.js'),
    (m) => m.upstreams,
  );
  upstreams.command('list').description('every service and its endpoints').addOption(json()).action(upstreamAction);
  upstreams.command('show').description('one service, endpoint by endpoint').argument('<name>').addOption(json()).action(upstreamAction);

  const report = banyan.command('report').description('what the usage ledger shows');
  report
    .command('usage')
    .description('legacy routes and features in use, and retirement candidates')
    .option('--since <duration>', 'the window to count (default 30d)')
    .option('--unused <duration>', 'a route with no use for this long is a retirement candidate (default: --since)')
    .addOption(json())
    .action(
      lazy(
        () => import('./report.js'),
        (m) => m.report,
      ),
    );

  const users = banyan.command('users').description('accounts that can upload');
  users
    .command('add')
    .description('create an account; its password is read from stdin')
    .argument('<name>')
    .option('--email <address>', "the account's email address")
    .addOption(json())
    .action(
      lazy(
        () => import('./accounts.js'),
        (m) => m.users,
      ),
    );

  const tokens = banyan.command('tokens').description('API tokens for twine, flit and poetry (printed once; only a hash is kept)');
  const tokenAction = lazy(
    () => import('./accounts.js'),
    (m) => m.tokens,
  );
  tokens
    .command('create')
    .description('a new token for USERNAME')
    .argument('<username>')
    .option('--project <name>', 'the token uploads to this project only')
    .option('--description <text>', 'what the token is for, shown by tokens list')
    .addOption(json())
    .action(tokenAction);
  tokens
    .command('list')
    .description("USERNAME's tokens, without their secrets")
    .argument('<username>')
    .addOption(json())
    .action(tokenAction);
  tokens.command('revoke').description('a token stops working at once').argument('<id>').addOption(json()).action(tokenAction);

  const projects = banyan.command('projects').description('who may upload to a project (owners also manage it)');
  const projectAction = lazy(
    () => import('./accounts.js'),
    (m) => m.projects,
  );
  projects
    .command('roles')
    .description("the project's owners and maintainers")
    .argument('<project>')
    .addOption(json())
    .action(projectAction);
  projects
    .command('add-role')
    .description('give USERNAME a role on the project')
    .argument('<project>')
    .argument('<username>')
    .option('--role <role>', 'owner (manages the project and its roles) or maintainer (uploads)')
    .addOption(json())
    .action(projectAction);
  projects
    .command('remove-role')
    .description("take USERNAME's role away (the last owner stays)")
    .argument('<project>')
    .argument('<username>')
    .addOption(json())
    .action(projectAction);

  const releases = banyan.command('releases').description('yank, unyank or delete a release, as its owner would');
  const releaseAction = lazy(
    () => import('./releases.js'),
    (m) => m.releases,
  );
  for (const [name, what] of [
    ['yank', 'pip skips it unless pinned with =='],
    ['unyank', 'pip sees it again'],
    ['delete', 'the release and its files are gone'],
  ] as const) {
    releases
      .command(name)
      .description(what)
      .argument('<project>')
      .argument('<version>')
      .option('--reason <text>', 'shown to installers (yank) and kept in the account events')
      .addOption(json())
      .action(releaseAction);
  }

  const backfill = banyan.command('backfill').description('fill in what files stored before an upgrade lack');
  const backfillAction = lazy(
    () => import('./backfill.js'),
    (m) => m.backfill,
  );
  backfill
    .command('metadata')
    .description("serve wheels' METADATA (PEP 658) for files stored before")
    .option('--project <name>', 'this project only')
    .addOption(json())
    .action(backfillAction);
  backfill
    .command('digests')
    .description('compute MD5 and BLAKE2b digests for files stored before')
    .option('--project <name>', 'this project only')
    .addOption(json())
    .action(backfillAction);

  banyan
    .command('seed')
    .description('fill the index with a representative data set: a long tail of projects and a few giants, by bulk inserts')
    .option('--projects <n>', 'projects with a long-tailed number of releases (default 2000)')
    .option('--giants <n>', 'projects with --giant-releases releases of 5 files each (default 2)')
    .option('--giant-releases <n>', 'releases of each giant (default 10000)')
    .option('--seed <n>', 'the random seed: the same seed gives the same data set (default 1)')
    .option('--prefix <text>', 'the first word of every project name (default seed)')
    .addOption(json())
    .action(
      lazy(
        () => import('./seed.js'),
        (m) => m.seed,
      ),
    );
  banyan
    .command('completion')
    .description('a completion script: source <(banyan completion bash)')
    .addArgument(new Argument('<shell>', 'only bash for now').choices(['bash']))
    .action(() => {
      process.stdout.write(bashCompletion(banyan));
    });
  for (const command of banyan.commands) command.helpGroup(INDEX_COMMANDS.has(command.name()) ? INDEX_GROUP : KIT_GROUP);
  return banyan;
}

/** `up`, `down` and `status` of one migration set. */
function migrateCommand(migrate: Command, action: (...received: unknown[]) => Promise<void>): void {
  migrate.command('up').description('apply every pending migration').addOption(json()).action(action);
  migrate.command('down').description('undo the newest migration').option('--all', 'undo every migration').addOption(json()).action(action);
  migrate.command('status').description('each migration and when it was applied').addOption(json()).action(action);
}

/** Help shows Banyan's own commands apart from those of the package index it ships as its demo. */
const KIT_GROUP = 'Banyan (the proxy, DB router and usage metrics):';
const INDEX_GROUP = 'The demo package index it migrates (legacy to app):';
const INDEX_COMMANDS = new Set(['index-migrate', 'app', 'files', 'legacy', 'users', 'tokens', 'projects', 'releases', 'backfill', 'seed']);

function routesCommand(routes: Command): void {
  const action = lazy(
    () => import('./routes.js'),
    (m) => m.routes,
  );
  const reason = () => new Option('--reason <text>', 'why, for the audit log (banyan routes history); needed unless --dry-run');
  routes.command('list').description('every route, its match, mode and service, then the upstreams').addOption(json()).action(action);
  routes.command('show').description("one route's every field").argument('<name>').addOption(json()).action(action);
  routes
    .command('set')
    .description("change one route's mode; first checks the backends it would send users to")
    .argument('<name>')
    .addOption(new Option('--mode <mode>', 'where the route goes').choices(MODES))
    .option('--percent <n>', 'canary: the share of sessions sent to the new app (0 to 100)')
    .option('--service <name>', 'new, canary and shadow: the upstream that answers on the new side (see `banyan routes list`; default app)')
    .option('--fallback', 'safe requests fall back to legacy when the new app fails')
    .option('--no-fallback', 'they do not')
    .option('--status <code>', 'retired: the status to answer (410 by default)')
    .option('--message <text>', 'retired: the message to answer')
    .addOption(reason())
    .option('--sample <path>', "the path to check on the backends (default: the route's own)")
    .option('--dry-run', 'show what would change, and change nothing')
    .option('--force', 'change it even when a backend is down or answers 404 where the current one answers')
    .addOption(json())
    .action(action);
  routes
    .command('apply')
    .description(
      'replace the whole table with FILE ({upstreams, routes}; a list of routes, keeping the upstreams; or `routes list --json` output, whose version is then expected)',
    )
    .argument('<file>')
    .addOption(reason())
    .option('--expected-version <n>', 'refuse if the table is no longer at this version')
    .option('--dry-run', 'validate and show what would change, and change nothing')
    .addOption(json())
    .action(action);
  routes
    .command('history')
    .description('every version of the table: who, when, why and what changed')
    .option('--limit <n>', 'the newest N versions (default 20)')
    .addOption(json())
    .action(action);
  routes
    .command('rollback')
    .description('restore an earlier version, as a new version')
    .argument('<version>')
    .addOption(reason())
    .addOption(json())
    .action(action);
  routes
    .command('shadow')
    .description("a shadowed route's comparison results and recent mismatches (asks the proxy)")
    .argument('<name>')
    .addOption(json())
    .action(action);
  routes
    .command('status')
    .description('what the proxy is doing now: table version, breakers, shadow counts')
    .addOption(json())
    .action(action);
  const plans = lazy(
    () => import('./plans.js'),
    (m) => m.plans,
  );
  const steer = (c: Command, what: string) =>
    c
      .argument('<name>')
      .option('--plan <file>', `a JSON plan file (default: the plan in README.md)`)
      .option('--status', `the ${what}'s step, its budgets against the live numbers, and the time to the next step`)
      .option('--pause', 'the route stays where it is; nothing is judged until --resume')
      .option('--resume', "go on; the step's hold starts over")
      .option('--abort', 'end the plan and put the route back as it was before it')
      .option('--approve', 'let a plan that waits at a step with "approve": true into that step; your name is recorded')
      .option('--dry-run', 'start the plan with every budget only watched: a broken one is reported as the rollback it would have been')
      .addOption(json())
      .action(plans);
  steer(
    routes
      .command('promote')
      .description('walk a route to the new app step by step (shadow, canary ramp, new), rolling back when a budget breaks'),
    'promotion',
  );
  steer(
    routes
      .command('retire')
      .description('retire a route nobody uses: brownouts of growing length, then retired; stops if real traffic shows up'),
    'retirement',
  );
  routes.command('plans').description('the plans under way').addOption(json()).action(plans);
  routes
    .command('preview')
    .description('a link that sends one browser to the new app on this route only, signed with BANYAN_SECRET')
    .argument('<name>')
    .option('--for <duration>', 'how long the link works (default 1h, at most 7d)')
    .option('--path <path>', "the page the link opens (default: the route's own path)")
    .option('--base <url>', "the proxy's public address")
    .addOption(json())
    .action(action);
}

/** `banyan completion bash`: commands, their subcommands, and each one's options, from the same tree the parser uses. */
export function bashCompletion(banyan: Command): string {
  const visible = (c: Command) => c.commands.filter((s) => s.name() !== 'help');
  const flags = (c: Command) => [...c.options.map((o) => o.long!), '--help'].join(' ');
  const cases: string[] = [];
  for (const command of visible(banyan)) {
    const subs = visible(command);
    if (!subs.length) {
      cases.push(`    "${command.name()} "*) words="${flags(command)}" ;;`);
      continue;
    }
    cases.push(`    "${command.name()} ") words="${subs.map((s) => s.name()).join(' ')} --help" ;;`);
    for (const sub of subs) cases.push(`    "${command.name()} ${sub.name()} "*) words="${flags(sub)}" ;;`);
  }
  return `# bash completion for banyan: source <(banyan completion bash)
_banyan() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" words path="" i
  for ((i = 1; i < COMP_CWORD && i < 3; i++)); do path+="\${COMP_WORDS[i]} "; done
  if [ "$COMP_CWORD" -eq 1 ]; then
    words="${visible(banyan)
      .map((c) => c.name())
      .join(' ')} help"
  else
    case "$path" in
    "completion ") words="bash" ;;
${cases.join('\n')}
    *) words="" ;;
    esac
  fi
  COMPREPLY=( $(compgen -W "$words" -- "$cur") )
}
complete -F _banyan banyan
`;
}

/** Exit codes: 0 done, 1 refused or failed (the message says why), 2 the command line was wrong. */
const USAGE_ERRORS = new Set(['bad-arguments', 'unknown-command']);

/** A connection error that did not say where it was going: the commands' database is the one behind DATABASE_URL. */
async function withSetting(err: unknown): Promise<unknown> {
  if (err instanceof BanyanError) return err;
  const { isConnectionError, redactUrl } = await import('../lib/database.js');
  if (!isConnectionError(err)) return err;
  let where = "the local stack's PostgreSQL";
  try {
    const url = loadSettings().databaseUrl;
    if (url) where = redactUrl(url);
  } catch {
    // The settings themselves are broken: the original message is all there is.
  }
  return new BanyanError(
    'database-unreachable',
    `cannot reach PostgreSQL at ${where}: ${(err as Error).message}`,
    'check DATABASE_URL, or run `npm start` in this folder',
  );
}

async function main(argv: string[]): Promise<void> {
  const banyan = program();
  // Every command, subcommand and the help command share one voice: "banyan: what is wrong", and exit 2 for a wrong command line.
  const configure = (c: Command): void => {
    const path = [];
    for (let at: Command | null = c; at; at = at.parent) path.unshift(at.name());
    c.exitOverride()
      .showHelpAfterError(`(see: ${path.join(' ')} --help)`)
      .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, 'banyan: ')) });
    c.commands.forEach(configure);
  };
  configure(banyan);
  if (argv.length === 0) {
    banyan.outputHelp();
    return;
  }
  try {
    await banyan.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    // --help and `help` exit 0; a missing subcommand printed its command's help to stderr; anything else printed its error.
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  }
}

// Output piped into a reader that has had enough (`banyan routes history | head`): stop quietly, as Unix tools do.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(0);
  });
}

main(process.argv.slice(2)).catch(async (raw: unknown) => {
  const err = await withSetting(raw);
  process.stderr.write(`banyan: ${describeError(err)}\n`);
  if (!(err instanceof BanyanError) && err instanceof Error && showsStacks()) process.stderr.write(`${err.stack}\n`);
  const code = err instanceof BanyanError && USAGE_ERRORS.has(err.code) ? 2 : 1;
  // Let 'exit' run: it stops any server child that start-up left behind.
  setImmediate(() => process.exit(code));
});
