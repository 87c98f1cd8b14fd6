import type Router from '@koa/router';
import { escapeHtml } from '../lib/html.js';
import type { DbFor } from './server.js';
import { isValidName, normalizeName } from './names.js';

/** PEP 629: the repository version this index speaks. */
export const REPOSITORY_VERSION = '1.0';

interface SimpleFile {
  filename: string;
  path: string;
  sha256_digest: string;
  requires_python: string | null;
  yanked: boolean;
  yanked_reason: string | null;
}

/** `/simple/` and `/simple/<project>/`: the PEP 503 index pip reads. */
export function simpleRoutes(router: Router, db: DbFor): void {
  router.get('simple.index', '/simple/', async (ctx) => {
    const projects = await (await db(ctx)).read((r) => r.selectFrom('projects')
      .select(['name', 'normalized_name']).orderBy('normalized_name').execute());
    const links = projects.map((p) => `    <a href="/simple/${p.normalized_name}/">${escapeHtml(p.name)}</a><br/>`);
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = page('Simple index', links);
  });

  router.get('simple.detail', '/simple/:project/', async (ctx) => {
    const requested = ctx.params['project'] ?? '';
    const normalized = normalizeName(requested);
    if (!isValidName(requested)) {
      ctx.throw(404, `"${requested}" is not a valid project name`);
      return;
    }
    if (requested !== normalized) {
      ctx.status = 301;
      ctx.redirect(`/simple/${normalized}/`);
      return;
    }
    // Declaring the project makes this read wait for anyone's write to it, not only this session's.
    const { project, files } = await (await db(ctx, [`project:${normalized}`])).read(async (reader) => {
      const found = await reader.selectFrom('projects').select(['id', 'name'])
        .where('normalized_name', '=', normalized).executeTakeFirst();
      const list: SimpleFile[] = found ? await reader.selectFrom('files')
        .innerJoin('releases', 'releases.id', 'files.release_id')
        .select(['files.filename', 'files.path', 'files.sha256_digest', 'files.requires_python',
          'releases.yanked', 'releases.yanked_reason'])
        .where('releases.project_id', '=', found.id)
        .orderBy('files.filename')
        .execute() : [];
      return { project: found, files: list };
    });
    if (!project) {
      ctx.throw(404, `no project named "${requested}"`);
      return;
    }
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = page(`Links for ${project.name}`, [`    <h1>Links for ${escapeHtml(project.name)}</h1>`, ...files.map(fileLink)]);
  });
}

function fileLink(file: SimpleFile): string {
  const attrs = [`href="/packages/${escapeHtml(file.path)}#sha256=${file.sha256_digest}"`];
  if (file.requires_python) attrs.push(`data-requires-python="${escapeHtml(file.requires_python)}"`);
  if (file.yanked) attrs.push(`data-yanked="${escapeHtml(file.yanked_reason ?? '')}"`);
  return `    <a ${attrs.join(' ')}>${escapeHtml(file.filename)}</a><br/>`;
}

function page(title: string, body: string[]): string {
  return [
    '<!DOCTYPE html>',
    '<html>',
    '  <head>',
    `    <meta name="pypi:repository-version" content="${REPOSITORY_VERSION}">`,
    `    <title>${escapeHtml(title)}</title>`,
    '  </head>',
    '  <body>',
    ...body,
    '  </body>',
    '</html>',
    '',
  ].join('\n');
}
