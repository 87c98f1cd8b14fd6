import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { Kysely } from 'kysely';
import { BanyanError } from '../lib/errors.js';
import type { LoginThrottle, LoginThrottled } from '../lib/login-throttle.js';
import { normalizeName } from './names.js';
import type { IndexDatabase } from './schema.js';

/** scrypt cost N=2^15, r=8, p=1: about 50 ms per check, 32 MiB of memory. */
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, keylen: 32 };

function scryptAsync(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, { ...options, maxmem: 128 * options.N! * options.r! * 2 }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
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
  /** For a project-scoped API token, the one project it may upload to. */
  readonly tokenProject?: { readonly id: string; readonly name: string } | undefined;
}

/**
 * Why a request could not be authenticated; the backends turn these into 401
 * and 403, and a throttled login into 429 with Retry-After.
 */
export type AuthFailure = 'missing' | 'malformed' | 'invalid' | LoginThrottled;

/** Where a login comes from, for its throttle. */
export interface LoginSource {
  readonly throttle?: LoginThrottle | undefined;
  /** The client's address (an IPv6 one by its /64), as the proxy named it. */
  readonly address: string;
}

/**
 * Checks HTTP Basic credentials: `__token__` with an API token, or a
 * username and password. Reads the primary: a token created a moment ago
 * must work at once. A password login is throttled per account and address
 * before its password is hashed; an unknown user, an inactive one and a wrong
 * password are one answer, `invalid`.
 */
export async function authenticate(
  db: Kysely<IndexDatabase>,
  header: string | undefined,
  source?: LoginSource,
): Promise<Account | AuthFailure> {
  if (!header) return 'missing';
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return 'malformed';
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return 'malformed';
  const username = decoded.slice(0, colon);
  const secret = decoded.slice(colon + 1);
  if (username === '__token__') {
    const row = await db
      .selectFrom('api_tokens')
      .innerJoin('users', 'users.id', 'api_tokens.user_id')
      .leftJoin('projects', 'projects.id', 'api_tokens.project_id')
      .select([
        'users.id',
        'users.username',
        'users.is_active',
        'api_tokens.id as token_id',
        'api_tokens.project_id',
        'projects.name as project_name',
      ])
      .where('api_tokens.token_hash', '=', tokenHash(secret))
      .executeTakeFirst();
    if (!row || !row.is_active) return 'invalid';
    await db.updateTable('api_tokens').set({ last_used_at: new Date() }).where('id', '=', row.token_id).execute();
    return {
      id: row.id,
      username: row.username,
      tokenProject: row.project_id ? { id: row.project_id, name: row.project_name ?? '' } : undefined,
    };
  }
  const attempt = await source?.throttle?.begin(username, source.address);
  if (attempt && 'retryAfterSeconds' in attempt) return attempt;
  const user = await db
    .selectFrom('users')
    .select(['id', 'username', 'password_hash', 'is_active'])
    .where('username', '=', username)
    .executeTakeFirst();
  // Hash anyway when the user is unknown, so timing does not tell which usernames exist.
  const ok = await verifyPassword(secret, user?.password_hash ?? DUMMY_HASH);
  if (!user || !user.is_active || !ok) return 'invalid';
  await attempt?.succeeded();
  return { id: user.id, username: user.username };
}

const DUMMY_HASH = 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

const USERNAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,48}[A-Za-z0-9])?$/;

/** Creates a user; a clear error when the name is taken or malformed. */
export async function addUser(db: Kysely<IndexDatabase>, username: string, email: string | undefined, password: string): Promise<Account> {
  if (!USERNAME.test(username)) {
    throw new BanyanError('bad-arguments', `"${username}" is not a valid username: use 1 to 50 letters, digits, and . _ - inside`);
  }
  if (email !== undefined && !/^[^@\s]+@[^@\s]+$/.test(email)) throw new BanyanError('bad-arguments', `"${email}" is not an email address`);
  if (password.length < 8) throw new BanyanError('weak-password', 'the password must be at least 8 characters long');
  const row = await db
    .insertInto('users')
    .values({ username, email: email ?? null, password_hash: await hashPassword(password) })
    .onConflict((oc) => oc.column('username').doNothing())
    .returning(['id', 'username'])
    .executeTakeFirst();
  if (!row) throw new BanyanError('exists', `a user named "${username}" already exists`);
  return row;
}

/**
 * Creates an API token for a user and returns it; only its hash is kept. With
 * `project`, the token uploads to that project only (the user must have a
 * role on it). Recorded in account_events.
 */
export async function createToken(
  db: Kysely<IndexDatabase>,
  username: string,
  description: string,
  options: { project?: string | undefined; actor?: string | undefined } = {},
): Promise<{ token: string; id: string; project: string | null }> {
  return db.transaction().execute(async (trx) => {
    const user = await trx.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst();
    if (!user)
      throw new BanyanError(
        'not-found',
        `there is no user named "${username}"`,
        `create one first: banyan users add ${username} --email you@example.com`,
      );
    let project: { id: string; normalized_name: string } | undefined;
    if (options.project !== undefined) {
      project = await trx
        .selectFrom('projects')
        .select(['id', 'normalized_name'])
        .where('normalized_name', '=', normalizeName(options.project))
        .executeTakeFirst();
      if (!project)
        throw new BanyanError(
          'not-found',
          `there is no project named "${options.project}"`,
          'a scoped token is for an existing project; upload once with an account token to create it',
        );
      const role = await trx
        .selectFrom('project_roles')
        .select('role')
        .where('project_id', '=', project.id)
        .where('user_id', '=', user.id)
        .executeTakeFirst();
      if (!role)
        throw new BanyanError(
          'forbidden',
          `${username} has no role on ${project.normalized_name}, so a token scoped to it could do nothing`,
          `an owner can add them: banyan projects add-role ${project.normalized_name} ${username} --role maintainer`,
        );
    }
    const token = newToken();
    const row = await trx
      .insertInto('api_tokens')
      .values({ user_id: user.id, description, token_hash: tokenHash(token), project_id: project?.id ?? null })
      .returning('id')
      .executeTakeFirstOrThrow();
    await trx
      .insertInto('account_events')
      .values({
        actor: options.actor ?? username,
        username,
        action: 'create token',
        project_name: project?.normalized_name ?? null,
        token_id: row.id,
      })
      .execute();
    return { token, id: row.id, project: project?.normalized_name ?? null };
  });
}

export interface TokenInfo {
  readonly id: string;
  readonly description: string;
  /** The one project it may upload to; null: every project of its user. */
  readonly project: string | null;
  readonly createdAt: string;
  readonly lastUsedAt: string | null;
}

/** A user's tokens (never the tokens themselves: only their hashes are kept). */
export async function listTokens(db: Kysely<IndexDatabase>, username: string): Promise<TokenInfo[]> {
  const user = await db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst();
  if (!user) throw new BanyanError('not-found', `there is no user named "${username}"`);
  const rows = await db
    .selectFrom('api_tokens')
    .leftJoin('projects', 'projects.id', 'api_tokens.project_id')
    .select(['api_tokens.id', 'api_tokens.description', 'projects.normalized_name', 'api_tokens.created_at', 'api_tokens.last_used_at'])
    .where('api_tokens.user_id', '=', user.id)
    .orderBy('api_tokens.id')
    .execute();
  return rows.map((r) => ({
    id: r.id,
    description: r.description,
    project: r.normalized_name,
    createdAt: new Date(r.created_at).toISOString(),
    lastUsedAt: r.last_used_at ? new Date(r.last_used_at).toISOString() : null,
  }));
}

/** Revokes a token by id: it stops working at once. Recorded in account_events. */
export async function revokeToken(
  db: Kysely<IndexDatabase>,
  id: string,
  actor: string,
): Promise<{ username: string; project: string | null }> {
  if (!/^\d{1,18}$/.test(id)) throw new BanyanError('bad-arguments', `"${id}" is not a token id; banyan tokens list USERNAME shows them`);
  return db.transaction().execute(async (trx) => {
    const row = await trx.deleteFrom('api_tokens').where('id', '=', id).returning(['user_id', 'project_id']).executeTakeFirst();
    if (!row) throw new BanyanError('not-found', `there is no token with id ${id}`, 'banyan tokens list USERNAME shows the ids');
    const user = await trx.selectFrom('users').select('username').where('id', '=', row.user_id).executeTakeFirstOrThrow();
    const project = row.project_id
      ? await trx.selectFrom('projects').select('normalized_name').where('id', '=', row.project_id).executeTakeFirst()
      : undefined;
    await trx
      .insertInto('account_events')
      .values({ actor, username: user.username, action: 'revoke token', project_name: project?.normalized_name ?? null, token_id: id })
      .execute();
    return { username: user.username, project: project?.normalized_name ?? null };
  });
}
