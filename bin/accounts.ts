import type { IndexDatabase } from '../package-index/schema.js';
import { addUser, createToken, listTokens, revokeToken } from '../package-index/accounts.js';
import { loadSettings, operatorName, required } from '../lib/config.js';
import { BanyanError } from '../lib/errors.js';
import { connect } from '../lib/database.js';
import { listRoles, removeRole, ROLES, setRole } from '../package-index/ownership.js';
import type { Args } from './command.js';
import { printTable } from './output.js';

function primary() {
  const url = required(loadSettings().databaseUrl, 'DATABASE_URL', 'to reach the primary');
  return connect<IndexDatabase>(url, { max: 1, name: 'banyan-accounts' });
}

/** The password: the first line of stdin (piped), or typed at a prompt that does not echo. */
async function readPassword(): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    let text = '';
    for await (const chunk of stdin) text += String(chunk);
    return text.split(/\r?\n/)[0] ?? '';
  }
  process.stderr.write('Password: ');
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let typed = '';
    const onData = (key: string) => {
      for (const ch of key) {
        if (ch === '\r' || ch === '\n') {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.off('data', onData);
          process.stderr.write('\n');
          resolve(typed);
          return;
        }
        if (ch === '\u0003') {
          stdin.setRawMode(false);
          reject(new BanyanError('cancelled', 'cancelled; no user was created'));
          return;
        }
        typed = ch === '\u007f' ? typed.slice(0, -1) : typed + ch;
      }
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}

/** `banyan users add NAME --email E`: the password comes from stdin. */
export async function users(args: Args): Promise<void> {
  const name = args.words[1]!;
  const email = args.flags.get('email');
  const password = await readPassword();
  const db = primary();
  try {
    const user = await addUser(db, name, typeof email === 'string' ? email : undefined, password);
    if (args.flags.has('json')) process.stdout.write(`${JSON.stringify({ id: user.id, username: user.username })}\n`);
    else process.stdout.write(`Created user ${user.username}. Next: banyan tokens create ${user.username}\n`);
  } finally {
    await db.destroy();
  }
}

/**
 * `banyan tokens create|list|revoke`: API tokens for twine, flit and poetry.
 * A token is printed once; only its hash is kept. `--project` scopes it to
 * one project, as Warehouse's project tokens are.
 */
export async function tokens(args: Args): Promise<void> {
  const [action, subject] = args.words as [string, string];
  const db = primary();
  try {
    if (action === 'list') {
      const list = await listTokens(db, subject);
      if (args.flags.has('json')) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      if (list.length === 0) {
        process.stdout.write(`${subject} has no tokens. Create one: banyan tokens create ${subject}\n`);
        return;
      }
      printTable(
        ['id', 'scope', 'description', 'created', 'last used'],
        list.map((t) => [
          t.id,
          t.project ? `project ${t.project}` : 'all their projects',
          t.description,
          t.createdAt.slice(0, 16).replace('T', ' '),
          t.lastUsedAt ? t.lastUsedAt.slice(0, 16).replace('T', ' ') : 'never',
        ]),
      );
      return;
    }
    if (action === 'revoke') {
      const revoked = await revokeToken(db, subject, operatorName());
      if (args.flags.has('json')) process.stdout.write(`${JSON.stringify({ id: subject, ...revoked })}\n`);
      else
        process.stdout.write(
          `Revoked token ${subject} of ${revoked.username}${revoked.project ? ` (project ${revoked.project})` : ''}; it stops working now.\n`,
        );
      return;
    }
    const description = args.flags.get('description');
    const project = args.flags.get('project');
    const created = await createToken(db, subject, typeof description === 'string' ? description : '', {
      project: typeof project === 'string' ? project : undefined,
      actor: operatorName(),
    });
    if (args.flags.has('json')) {
      process.stdout.write(`${JSON.stringify({ id: created.id, username: subject, project: created.project, token: created.token })}\n`);
      return;
    }
    process.stdout.write(`${created.token}\n`);
    process.stderr.write(
      `This token is shown only once; store it now.${created.project ? ` It can upload to ${created.project} only.` : ''} Upload with it as username __token__:\n` +
        `  twine upload --repository-url <proxy>/legacy/ -u __token__ -p ${created.token.slice(0, 12)}... dist/*\n`,
    );
  } finally {
    await db.destroy();
  }
}

/** `banyan projects roles|add-role|remove-role`: who may upload to a project (owners also manage it). */
export async function projects(args: Args): Promise<void> {
  const [action, project, username] = args.words;
  const db = primary();
  try {
    if (action === 'roles') {
      const { project: name, roles } = await listRoles(db, project!);
      if (args.flags.has('json')) process.stdout.write(`${JSON.stringify({ project: name, roles }, null, 2)}\n`);
      else
        printTable(
          ['user', 'role'],
          roles.map((r) => [r.username, r.role]),
        );
      return;
    }
    if (action === 'add-role') {
      const given = String(args.flags.get('role') ?? '');
      const role = ROLES.find((r) => r.toLowerCase() === given.toLowerCase());
      if (!role)
        throw new BanyanError(
          'bad-arguments',
          `--role must be owner or maintainer, not "${given}"`,
          'owners manage the project and its roles; maintainers upload',
        );
      const outcome = await setRole(db, project!, username!, role, operatorName());
      process.stdout.write(
        outcome === 'unchanged'
          ? `${username} already is ${role} of ${project}; nothing changed.\n`
          : `${username} is now ${role} of ${project}.\n`,
      );
      return;
    }
    const removed = await removeRole(db, project!, username!, operatorName());
    process.stdout.write(`${username} is no longer ${removed} of ${project}; their tokens scoped to it are revoked.\n`);
  } finally {
    await db.destroy();
  }
}
