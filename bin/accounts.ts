import { addUser, createToken } from '../lib/accounts.js';
import { loadSettings, required } from '../lib/config.js';
import { BanyanError } from '../lib/errors.js';
import { connect } from '../routing/database.js';
import type { Args } from './args.js';

function primary() {
  const url = required(loadSettings().databaseUrl, 'DATABASE_URL', 'to reach the primary');
  return connect(url, { max: 1, name: 'banyan-accounts' });
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
  const [action, name] = args.words;
  if (action !== 'add' || !name || args.words.length > 2) {
    throw new BanyanError('bad-arguments', 'usage: banyan users add NAME [--email E] (the password is read from stdin)',
      'for example: echo "$PASSWORD" | banyan users add alice --email alice@example.com');
  }
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

/** `banyan tokens create NAME [--description D]`: prints the token once. */
export async function tokens(args: Args): Promise<void> {
  const [action, name] = args.words;
  if (action !== 'create' || !name || args.words.length > 2) {
    throw new BanyanError('bad-arguments', 'usage: banyan tokens create USERNAME [--description TEXT]');
  }
  const description = args.flags.get('description');
  const db = primary();
  try {
    const { token, id } = await createToken(db, name, typeof description === 'string' ? description : '');
    if (args.flags.has('json')) {
      process.stdout.write(`${JSON.stringify({ id, username: name, token })}\n`);
      return;
    }
    process.stdout.write(`${token}\n`);
    process.stderr.write('This token is shown only once; store it now. Upload with it as username __token__:\n' +
      `  twine upload --repository-url <proxy>/legacy/ -u __token__ -p ${token.slice(0, 12)}... dist/*\n`);
  } finally {
    await db.destroy();
  }
}
