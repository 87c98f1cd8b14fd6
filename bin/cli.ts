import { loadSettings } from '../lib/config.js';
import { BanyanError, describeError } from '../lib/errors.js';
import { parseArgs, type Args } from './args.js';

const USAGE = `Usage: banyan <command> [options]

Commands:
  start [--replica-delay 2s] [--workers N] [--no-restart] [--json]
                                         the whole stack locally, a process per component (\`npm start\`)
  proxy [--workers N]                    the strangler proxy (PORT, ADMIN_PORT, LEGACY_URL, APP_URL)
  app                                    the new app (PORT, DATABASE_URL, DATABASE_REPLICA_URLS)
  legacy                                 the legacy stand-in (PORT, DATABASE_URL)
  migrate up|down|status [--all] [--json]  schema migrations on the primary
  routes list|show|set|apply|history|rollback|shadow|status|preview  the route table every proxy follows
                                         (banyan routes help for the details)
  report usage [--since 30d] [--unused 30d] [--json]
                                         legacy routes and features in use, and retirement candidates
  users add NAME [--email E]             an account that can upload (password from stdin)
  tokens create USERNAME [--project P] [--description D] | list USERNAME | revoke ID
                                         API tokens for twine (printed once; --project scopes one)
  projects roles NAME | add-role NAME USER --role owner|maintainer | remove-role NAME USER
                                         who may upload to a project
  releases yank|unyank|delete PROJECT VERSION [--reason R]
                                         yank a release (pip skips it unless pinned), or delete it
  backfill metadata|digests [--project P] [--json]
                                         serve wheels' METADATA (PEP 658), or compute MD5/BLAKE2b digests, for files stored before

Run \`banyan COMMAND --help\` for one command; \`source <(banyan completion bash)\` completes them in bash.

Settings come from the environment; unset ones fall back to the stack that
\`npm start\` runs in this folder (.banyan/stack.json). See README.md.
`;

/** Each command's module is loaded only when that command runs: `banyan help` or `routes list` does not load the servers. */
const lazy = <M>(load: () => Promise<M>, pick: (m: M) => (args: Args) => Promise<void>) => async (args: Args) => pick(await load())(args);

const COMMANDS: Record<string, { valued: string[]; switches: string[]; run: (args: Args) => Promise<void> }> = {
  start: { valued: ['replica-delay', 'workers'], switches: ['json', 'no-restart'], run: lazy(() => import('./start.js'), (m) => m.start) },
  proxy: { valued: ['workers'], switches: [], run: lazy(() => import('./servers.js'), (m) => m.proxyCommand) },
  app: { valued: [], switches: [], run: lazy(() => import('./servers.js'), (m) => m.appCommand) },
  legacy: { valued: [], switches: [], run: lazy(() => import('./servers.js'), (m) => m.legacyCommand) },
  migrate: { valued: [], switches: ['json', 'all'], run: lazy(() => import('./migrate.js'), (m) => m.migrate) },
  users: { valued: ['email'], switches: ['json'], run: lazy(() => import('./accounts.js'), (m) => m.users) },
  report: { valued: ['since', 'unused'], switches: ['json'], run: lazy(() => import('./report.js'), (m) => m.report) },
  tokens: { valued: ['description', 'project'], switches: ['json'], run: lazy(() => import('./accounts.js'), (m) => m.tokens) },
  projects: { valued: ['role'], switches: ['json'], run: lazy(() => import('./accounts.js'), (m) => m.projects) },
  backfill: { valued: ['project'], switches: ['json'], run: lazy(() => import('./backfill.js'), (m) => m.backfill) },
  releases: { valued: ['reason'], switches: ['json'], run: lazy(() => import('./releases.js'), (m) => m.releases) },
  routes: {
    valued: ['mode', 'percent', 'reason', 'limit', 'status', 'message', 'expected-version', 'sample', 'for', 'path', 'base'],
    switches: ['json', 'fallback', 'no-fallback', 'dry-run', 'force'],
    run: lazy(() => import('./routes.js'), (m) => m.routes),
  },
};

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(USAGE);
    return;
  }
  if (name === 'completion') {
    if (rest[0] !== 'bash' || rest.length !== 1) throw new BanyanError('bad-arguments', 'usage: banyan completion bash', 'then: source <(banyan completion bash), or save it to /etc/bash_completion.d/banyan');
    process.stdout.write(bashCompletion());
    return;
  }
  const command = COMMANDS[name];
  if (!command) throw new BanyanError('unknown-command', `unknown command "${name}"`, 'run `banyan help` for the list');
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(commandHelp(name, command, name === 'routes' ? (await import('./routes.js')).USAGE : undefined));
    return;
  }
  await command.run(parseArgs(rest, command.valued, command.switches));
}

/** Subcommands, for completion. */
const ACTIONS: Record<string, string[]> = {
  migrate: ['up', 'down', 'status'], report: ['usage'], users: ['add'], tokens: ['create', 'list', 'revoke'],
  projects: ['roles', 'add-role', 'remove-role'], backfill: ['metadata', 'digests'], releases: ['yank', 'unyank', 'delete'],
  routes: ['list', 'show', 'set', 'apply', 'history', 'rollback', 'shadow', 'status', 'preview', 'help'],
};

/** `banyan completion bash`: completes commands, their actions and their options, from the same table the parser uses. */
function bashCompletion(): string {
  const cases = Object.entries(COMMANDS).map(([name, c]) => {
    const words = [...(ACTIONS[name] ?? []), ...c.valued.map((f) => `--${f}`), ...c.switches.map((f) => `--${f}`), '--help'];
    return `    ${name}) words="${words.join(' ')}" ;;`;
  });
  return `# bash completion for banyan: source <(banyan completion bash)
_banyan() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" words
  if [ "$COMP_CWORD" -eq 1 ]; then
    words="${[...Object.keys(COMMANDS), 'help', 'completion'].join(' ')}"
  else
    case "\${COMP_WORDS[1]}" in
${cases.join('\n')}
    completion) words="bash" ;;
    *) words="" ;;
    esac
  fi
  COMPREPLY=( $(compgen -W "$words" -- "$cur") )
}
complete -F _banyan banyan
`;
}

/** `banyan NAME --help` (anywhere after the name): the command's lines of the usage, and its options. */
function commandHelp(name: string, command: { valued: string[]; switches: string[] }, details?: string): string {
  const lines = USAGE.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`  ${name} `) || l === `  ${name}`);
  const block: string[] = [];
  for (let i = start; i >= 0 && i < lines.length; i++) {
    if (i > start && !/^ {4,}/.test(lines[i]!)) break;
    block.push(lines[i]!);
  }
  const options = [...command.valued.map((f) => `--${f} VALUE`), ...command.switches.map((f) => `--${f}`)];
  return `Usage: banyan ${block.join('\n').trim()}\n${details ? `\n${details}\n` : ''}${options.length ? `\nOptions: ${options.join(', ')}\n` : ''}\nSee README.md for the settings it reads.\n`;
}

/** Exit codes: 0 done, 1 refused or failed (the message says why), 2 the command line was wrong. */
const USAGE_ERRORS = new Set(['bad-arguments', 'unknown-command']);

/** A connection error that did not say where it was going: the commands' database is the one behind DATABASE_URL. */
async function withSetting(err: unknown): Promise<unknown> {
  if (err instanceof BanyanError) return err;
  const { isConnectionError, redactUrl } = await import('../routing/database.js');
  if (!isConnectionError(err)) return err;
  let where = 'the local stack\'s PostgreSQL';
  try {
    const url = loadSettings().databaseUrl;
    if (url) where = redactUrl(url);
  } catch {
    // The settings themselves are broken: the original message is all there is.
  }
  return new BanyanError('database-unreachable', `cannot reach PostgreSQL at ${where}: ${(err as Error).message}`,
    'check DATABASE_URL, or run `npm start` in this folder');
}

main(process.argv.slice(2)).catch(async (raw: unknown) => {
  const err = await withSetting(raw);
  process.stderr.write(`banyan: ${describeError(err)}\n`);
  if (!(err instanceof BanyanError) && err instanceof Error && process.env['BANYAN_DEBUG']) process.stderr.write(`${err.stack}\n`);
  const code = err instanceof BanyanError && USAGE_ERRORS.has(err.code) ? 2 : 1;
  // Let 'exit' run: it stops any server child that start-up left behind.
  setImmediate(() => process.exit(code));
});
