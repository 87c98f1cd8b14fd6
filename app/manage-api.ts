import type Router from '@koa/router';
import { readFields } from '../lib/form-body.js';
import { journal, type WriteAnnouncer } from '../lib/write-announcer.js';
import type { DbFor } from './server.js';
import { isValidName, normalizeName } from '../lib/names.js';

/**
 * `POST /manage/projects`: registers a project (name, summary). A write
 * through the new app: it answers with `X-Banyan-Write-LSN`, the WAL position
 * after the commit, so the proxy pins the session exactly there, and raises
 * the project's fence so every other client's reads of it wait for it too.
 */
export function manageRoutes(router: Router, db: DbFor, announcer: WriteAnnouncer): void {
  router.post('manage.projects', '/manage/projects', async (ctx) => {
    const fields = await readFields(ctx.req);
    const name = (fields['name'] ?? '').trim();
    if (!isValidName(name)) {
      ctx.throw(400, `"${name}" is not a valid project name: use letters, digits, and -, _ or . inside`);
      return;
    }
    const normalized = normalizeName(name);
    const created = await (await db(ctx)).writer.transaction().execute(async (trx) => {
      const row = await trx.insertInto('projects').values({ name, normalized_name: normalized })
        .onConflict((oc) => oc.column('normalized_name').doNothing()).returning('id').executeTakeFirst();
      if (!row) return false;
      await journal(trx, row.id, normalized, null, 'create', null);
      return true;
    });
    if (!created) {
      ctx.throw(409, `a project named "${normalized}" already exists`);
      return;
    }
    ctx.set('X-Banyan-Write-LSN', await announcer.announce([normalized], true));
    ctx.status = 201;
    ctx.body = { name, normalized_name: normalized, url: `/simple/${normalized}/` };
  });
}
