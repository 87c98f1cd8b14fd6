import { sql, type Kysely } from 'kysely';
import type { Account } from './accounts.js';
import { BanyanError } from '../lib/errors.js';
import { normalizeName } from './names.js';
import type { IndexDatabase } from './schema.js';
import { journal, lockProject } from './write-announcer.js';

/** Warehouse's two roles: owners manage the project and its roles; maintainers upload. */
export const ROLES = ['Owner', 'Maintainer'] as const;
export type Role = (typeof ROLES)[number];

/** Why a write to a project is refused, in Warehouse's words, with the status and a metric reason. */
export interface Refusal {
  readonly status: 403 | 429;
  readonly message: string;
  readonly reason: 'forbidden' | 'token-scope' | 'rate-limited';
}

/**
 * Whether `account` may upload to `project` (undefined: the upload would
 * create it). Both backends ask this, inside the transaction that holds the
 * project's lock, so the answer cannot change before the write.
 */
export async function uploadRefusal(
  trx: Kysely<IndexDatabase>,
  account: Account,
  project: { id: string; name: string } | undefined,
  projectsPerHour: number,
): Promise<Refusal | undefined> {
  if (account.tokenProject) {
    if (!project) {
      return {
        status: 403,
        reason: 'token-scope',
        message: `Invalid API Token: this token is scoped to project '${account.tokenProject.name}' and cannot create a new project.`,
      };
    }
    if (account.tokenProject.id !== project.id) {
      return {
        status: 403,
        reason: 'token-scope',
        message: `Invalid API Token: this token is scoped to project '${account.tokenProject.name}', not '${project.name}'.`,
      };
    }
  }
  if (!project) return creationRefusal(trx, account, projectsPerHour);
  const role = await trx
    .selectFrom('project_roles')
    .select('role')
    .where('project_id', '=', project.id)
    .where('user_id', '=', account.id)
    .executeTakeFirst();
  if (!role) {
    return {
      status: 403,
      reason: 'forbidden',
      message: `The user '${account.username}' isn't allowed to upload to project '${project.name}'. Ask an owner to add you.`,
    };
  }
  return undefined;
}

/** The per-account limit on new projects: counted from the journal's `create` rows of the last hour. */
export async function creationRefusal(trx: Kysely<IndexDatabase>, account: Account, projectsPerHour: number): Promise<Refusal | undefined> {
  if (account.tokenProject) {
    return {
      status: 403,
      reason: 'token-scope',
      message: `Invalid API Token: this token is scoped to project '${account.tokenProject.name}' and cannot create a new project.`,
    };
  }
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM journal
    WHERE action = 'create' AND submitted_by = ${account.username} AND submitted_at > now() - interval '1 hour'`.execute(trx);
  if ((rows[0]?.n ?? 0) >= projectsPerHour) {
    return {
      status: 429,
      reason: 'rate-limited',
      message: `Too many new projects created: at most ${projectsPerHour} an hour per account. Try again later.`,
    };
  }
  return undefined;
}

/** Creates a project owned by `account`, journalled; false when the name is taken. */
export async function createProject(trx: Kysely<IndexDatabase>, account: Account, name: string): Promise<{ id: string } | undefined> {
  const normalized = normalizeName(name);
  const row = await trx
    .insertInto('projects')
    .values({ name, normalized_name: normalized })
    .onConflict((oc) => oc.column('normalized_name').doNothing())
    .returning('id')
    .executeTakeFirst();
  if (!row) return undefined;
  await trx.insertInto('project_roles').values({ project_id: row.id, user_id: account.id, role: 'Owner' }).execute();
  await journal(trx, row.id, normalized, null, 'create', account.username);
  return row;
}

export interface RoleRow {
  readonly username: string;
  readonly role: Role;
}

/** A project's roles, owners first. */
export async function listRoles(db: Kysely<IndexDatabase>, projectName: string): Promise<{ project: string; roles: RoleRow[] }> {
  const project = await findProject(db, projectName);
  const roles = await db
    .selectFrom('project_roles')
    .innerJoin('users', 'users.id', 'project_roles.user_id')
    .select(['users.username', 'project_roles.role'])
    .where('project_roles.project_id', '=', project.id)
    .orderBy('project_roles.role', 'desc')
    .orderBy('users.username')
    .execute();
  return { project: project.name, roles };
}

/**
 * Gives `username` a role on a project (or changes it), journalled in the
 * release journal (as Warehouse's "add Owner alice") and in account_events.
 * Refuses to demote the last owner.
 */
export async function setRole(
  db: Kysely<IndexDatabase>,
  projectName: string,
  username: string,
  role: Role,
  actor: string,
): Promise<'added' | 'changed' | 'unchanged'> {
  return db.transaction().execute(async (trx) => {
    const project = await findProject(trx, projectName);
    await lockProject(trx, project.normalized);
    const user = await findUser(trx, username);
    const current = await trx
      .selectFrom('project_roles')
      .select('role')
      .where('project_id', '=', project.id)
      .where('user_id', '=', user.id)
      .executeTakeFirst();
    if (current?.role === role) return 'unchanged';
    if (current?.role === 'Owner') await keepAnOwner(trx, project, username);
    await trx
      .insertInto('project_roles')
      .values({ project_id: project.id, user_id: user.id, role })
      .onConflict((oc) => oc.columns(['project_id', 'user_id']).doUpdateSet({ role }))
      .execute();
    if (current) await record(trx, project, actor, username, `remove ${current.role}`);
    await record(trx, project, actor, username, `add ${role}`);
    return current ? 'changed' : 'added';
  });
}

/** Takes a user's role on a project away; the last owner cannot be removed. */
export async function removeRole(db: Kysely<IndexDatabase>, projectName: string, username: string, actor: string): Promise<Role> {
  return db.transaction().execute(async (trx) => {
    const project = await findProject(trx, projectName);
    await lockProject(trx, project.normalized);
    const user = await findUser(trx, username);
    const current = await trx
      .selectFrom('project_roles')
      .select('role')
      .where('project_id', '=', project.id)
      .where('user_id', '=', user.id)
      .executeTakeFirst();
    if (!current)
      throw new BanyanError('not-found', `${username} has no role on ${project.name}`, `see: banyan projects roles ${project.name}`);
    if (current.role === 'Owner') await keepAnOwner(trx, project, username);
    await trx.deleteFrom('project_roles').where('project_id', '=', project.id).where('user_id', '=', user.id).execute();
    // Their tokens scoped to this project are of no use any more: revoke them too.
    const tokens = await trx
      .deleteFrom('api_tokens')
      .where('user_id', '=', user.id)
      .where('project_id', '=', project.id)
      .returning('id')
      .execute();
    for (const t of tokens) await recordToken(trx, actor, username, 'revoke token', project.normalized, t.id);
    await record(trx, project, actor, username, `remove ${current.role}`);
    return current.role;
  });
}

/** Writes a token event to account_events. */
export async function recordToken(
  trx: Kysely<IndexDatabase>,
  actor: string,
  username: string,
  action: string,
  projectName: string | null,
  tokenId: string,
): Promise<void> {
  await trx.insertInto('account_events').values({ actor, username, action, project_name: projectName, token_id: tokenId }).execute();
}

async function keepAnOwner(trx: Kysely<IndexDatabase>, project: { id: string; name: string }, leaving: string): Promise<void> {
  const { rows } = await sql<{
    n: number;
  }>`SELECT count(*)::int AS n FROM project_roles WHERE project_id = ${project.id} AND role = 'Owner'`.execute(trx);
  if ((rows[0]?.n ?? 0) <= 1) {
    throw new BanyanError(
      'last-owner',
      `${leaving} is the last owner of ${project.name}; a project always keeps one`,
      `make someone else an owner first: banyan projects add-role ${project.name} USER --role owner`,
    );
  }
}

async function record(
  trx: Kysely<IndexDatabase>,
  project: { id: string; normalized: string },
  actor: string,
  username: string,
  action: string,
): Promise<void> {
  await journal(trx, project.id, project.normalized, null, `${action} ${username}`, actor);
  await trx.insertInto('account_events').values({ actor, username, action, project_name: project.normalized, token_id: null }).execute();
}

async function findProject(db: Kysely<IndexDatabase>, name: string): Promise<{ id: string; name: string; normalized: string }> {
  const row = await db
    .selectFrom('projects')
    .select(['id', 'name', 'normalized_name'])
    .where('normalized_name', '=', normalizeName(name))
    .executeTakeFirst();
  if (!row) throw new BanyanError('not-found', `there is no project named "${name}"`);
  return { id: row.id, name: row.name, normalized: row.normalized_name };
}

async function findUser(db: Kysely<IndexDatabase>, username: string): Promise<{ id: string }> {
  const row = await db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst();
  if (!row)
    throw new BanyanError(
      'not-found',
      `there is no user named "${username}"`,
      `create one first: banyan users add ${username} --email you@example.com`,
    );
  return row;
}
