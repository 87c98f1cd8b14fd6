import type Router from '@koa/router';
import type Koa from 'koa';
import { authenticate, type Account } from '../package-index/accounts.js';
import { loginAddress, throttledMessage, type LoginThrottle } from '../lib/login-throttle.js';
import type { Kysely } from 'kysely';
import type { IndexDatabase } from '../package-index/schema.js';
import { BanyanError, httpStatusOf } from '../lib/errors.js';
import type { FileStore } from '../lib/file-store.js';
import { readFields } from '../lib/form-body.js';
import { isValidName, normalizeName } from '../package-index/names.js';
import { createProject, creationRefusal } from '../package-index/ownership.js';
import { changeRelease, type ReleaseAction } from '../package-index/releases.js';
import { lockProject, type WriteAnnouncer } from '../package-index/write-announcer.js';
import type { DbFor } from './db-for.js';

/**
 * `POST /manage/projects`: registers a project (name) for the logged-in
 * account, which becomes its owner; anonymous callers get 401, and an
 * account may create at most `projectsPerHour` projects an hour (429). A
 * write through the new app: it answers with `X-Banyan-Write-LSN`, the WAL
 * position after the commit, so the proxy pins the session exactly there,
 * and raises the project's fence so every other client's reads wait for it.
 */
export function manageRoutes(
  router: Router,
  db: DbFor,
  announcer: WriteAnnouncer,
  projectsPerHour: number,
  store?: FileStore,
  logins?: LoginThrottle,
): void {
  router.post('manage.projects', '/manage/projects', async (ctx) => {
    const handle = await db(ctx);
    const account = await loggedIn(
      ctx,
      handle.writer,
      logins,
      'Log in to register a project: HTTP Basic with your username and password, or __token__ and an API token.',
    );
    const fields = await readFields(ctx.req);
    const name = (fields['name'] ?? '').trim();
    if (!isValidName(name)) {
      ctx.throw(400, `"${name}" is not a valid project name: use letters, digits, and -, _ or . inside`);
      return;
    }
    const normalized = normalizeName(name);
    const outcome = await handle.writer.transaction().execute(async (trx) => {
      await lockProject(trx, normalized);
      const refusal = await creationRefusal(trx, account, projectsPerHour);
      if (refusal) return refusal;
      return (await createProject(trx, account, name)) ? 'created' : 'exists';
    });
    if (outcome === 'exists') {
      ctx.throw(409, `a project named "${normalized}" already exists`);
      return;
    }
    if (outcome !== 'created') {
      if (outcome.status === 429) ctx.set('Retry-After', '3600');
      ctx.throw(outcome.status, outcome.message);
      return;
    }
    ctx.set(await announcer.announce([normalized], true));
    ctx.status = 201;
    ctx.body = { name, normalized_name: normalized, owner: account.username, url: `/simple/${normalized}/` };
  });

  /**
   * `POST /manage/projects/<p>/releases/<v>/yank` (form or JSON `reason`), `…/unyank`, and
   * `DELETE /manage/projects/<p>/releases/<v>`: for the project's owners only, as in Warehouse.
   */
  const release = (action: ReleaseAction) => async (ctx: Koa.Context) => {
    const handle = await db(ctx);
    const account = await loggedIn(
      ctx,
      handle.writer,
      logins,
      'Log in as an owner of the project: HTTP Basic with your username and password, or __token__ and an API token.',
    );
    const fields = action === 'yank' ? await readFields(ctx.req) : {};
    try {
      const change = await changeRelease(handle.writer, action, ctx.params['project'] ?? '', ctx.params['version'] ?? '', {
        reason: fields['reason'],
        actor: account.username,
        allowed: async (trx, projectId) => {
          const role = await trx
            .selectFrom('project_roles')
            .select('role')
            .where('project_id', '=', projectId)
            .where('user_id', '=', account.id)
            .executeTakeFirst();
          const scoped = account.tokenProject && account.tokenProject.id !== projectId;
          if (role?.role !== 'Owner' || scoped)
            throw new BanyanError(
              'forbidden',
              `only an owner of ${ctx.params['project']} may ${action === 'delete' ? 'delete' : action} its releases`,
            );
        },
      });
      ctx.set(await announcer.announce([change.project], action === 'delete'));
      for (const path of change.removedPaths) await store?.remove(path);
      ctx.body = { project: change.project, version: change.version, action, filesRemoved: change.removedPaths.length };
    } catch (err) {
      if (!(err instanceof BanyanError)) throw err;
      ctx.throw(httpStatusOf(err) ?? 400, err.message);
    }
  };
  router.post('manage.release.yank', '/manage/projects/:project/releases/:version/yank', release('yank'));
  router.post('manage.release.unyank', '/manage/projects/:project/releases/:version/unyank', release('unyank'));
  router.delete('manage.release.delete', '/manage/projects/:project/releases/:version', release('delete'));
}

/**
 * The request's account, or a thrown 401 (no or malformed credentials, with
 * `missing`), 403 (wrong ones, whatever the form) or 429 (throttled, before
 * the password was looked at). The form is not read when refused.
 */
async function loggedIn(
  ctx: Koa.Context,
  writer: Kysely<IndexDatabase>,
  logins: LoginThrottle | undefined,
  missing: string,
): Promise<Account> {
  const account = await authenticate(writer, ctx.get('authorization') || undefined, { throttle: logins, address: loginAddress(ctx.req) });
  if (typeof account !== 'string' && !('retryAfterSeconds' in account)) return account;
  ctx.req.resume();
  if (typeof account !== 'string') {
    ctx.set('Retry-After', String(account.retryAfterSeconds));
    return ctx.throw(429, throttledMessage(account));
  }
  ctx.set('WWW-Authenticate', 'Basic realm="banyan"');
  return ctx.throw(
    account === 'invalid' ? 403 : 401,
    account === 'invalid' ? 'Invalid or non-existent authentication information. Check the token or password.' : missing,
  );
}
