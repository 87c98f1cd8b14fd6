import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { Kysely } from 'kysely';
import { BanyanError } from './errors.js';
import type { Database } from './schema.js';

/** scrypt cost N=2^15, r=8, p=1: about 50 ms per check, 32 MiB of memory. */
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, keylen: 32 };

function scryptAsync(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, { ...options, maxmem: 128 * options.N! * options.r! * 2 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** `scrypt$N$r$p$salt$hash` (base64): the parameters travel with the hash, so they can be raised later. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, SCRYPT.keylen, SCRYPT);
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), key.toString('base64')].join('$');
}

export async function verifyPassword(password: string, stored: string | null): Promise<boolean> {
  const parts = (stored ?? '').split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, n, r, p, salt, hash] = parts as [string, string, string, string, string, string];
  const expected = Buffer.from(hash, 'base64');
  const key = await scryptAsync(password, Buffer.from(salt, 'base64'), expected.length, { N: Number(n), r: Number(r), p: Number(p) });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** Tokens are `pypi-`-style: a recognizable prefix and 32 random bytes; only their SHA-256 is stored. */
export const TOKEN_PREFIX = 'banyan-';

export function newToken(): string {
  return `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export interface Account {
  readonly id: string;
  readonly username: string;
}

/** Why a request could not be authenticated; the app turns these into 401 and 403. */
export type AuthFailure = 'missing' | 'malformed' | 'invalid';

/**
 * Checks HTTP Basic credentials: `__token__` with an API token, or a
 * username and password. Reads the primary: a token created a moment ago
 * must work at once.
 */
export async function authenticate(db: Kysely<Database>, header: string | undefined): Promise<Account | AuthFailure> {
  if (!header) return 'missing';
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return 'malformed';
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return 'malformed';
  const username = decoded.slice(0, colon);
  const secret = decoded.slice(colon + 1);
  if (username === '__token__') {
    const row = await db.selectFrom('api_tokens').innerJoin('users', 'users.id', 'api_tokens.user_id')
      .select(['users.id', 'users.username', 'users.is_active', 'api_tokens.id as token_id'])
      .where('api_tokens.token_hash', '=', tokenHash(secret)).executeTakeFirst();
    if (!row || !row.is_active) return 'invalid';
    await db.updateTable('api_tokens').set({ last_used_at: new Date() }).where('id', '=', row.token_id).execute();
    return { id: row.id, username: row.username };
  }
  const user = await db.selectFrom('users').select(['id', 'username', 'password_hash', 'is_active'])
    .where('username', '=', username).executeTakeFirst();
  // Hash anyway when the user is unknown, so timing does not tell which usernames exist.
  const ok = await verifyPassword(secret, user?.password_hash ?? DUMMY_HASH);
  if (!user || !user.is_active || !ok) return 'invalid';
  return { id: user.id, username: user.username };
}

const DUMMY_HASH = 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

const USERNAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,48}[A-Za-z0-9])?$/;

/** Creates a user; a clear error when the name is taken or malformed. */
export async function addUser(db: Kysely<Database>, username: string, email: string | undefined, password: string): Promise<Account> {
  if (!USERNAME.test(username)) {
    throw new BanyanError('bad-arguments', `"${username}" is not a valid username: use 1 to 50 letters, digits, and . _ - inside`);
  }
  if (email !== undefined && !/^[^@\s]+@[^@\s]+$/.test(email)) throw new BanyanError('bad-arguments', `"${email}" is not an email address`);
  if (password.length < 8) throw new BanyanError('weak-password', 'the password must be at least 8 characters long');
  const row = await db.insertInto('users').values({ username, email: email ?? null, password_hash: await hashPassword(password) })
    .onConflict((oc) => oc.column('username').doNothing()).returning(['id', 'username']).executeTakeFirst();
  if (!row) throw new BanyanError('exists', `a user named "${username}" already exists`);
  return row;
}

/** Creates an API token for a user and returns it; only its hash is kept. */
export async function createToken(db: Kysely<Database>, username: string, description: string): Promise<{ token: string; id: string }> {
  const user = await db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst();
  if (!user) throw new BanyanError('not-found', `there is no user named "${username}"`, `create one first: banyan users add ${username} --email you@example.com`);
  const token = newToken();
  const row = await db.insertInto('api_tokens').values({ user_id: user.id, description, token_hash: tokenHash(token) })
    .returning('id').executeTakeFirstOrThrow();
  return { token, id: row.id };
}
