import type Router from '@koa/router';
import type Koa from 'koa';
import { escapeHtml } from '../lib/html.js';
import { INDEX_CACHE_KEY, INDEX_RESOURCE, projectCacheKey, projectResource } from '../package-index/write-announcer.js';
import { sendPage, type CacheCounter } from './http-cache.js';
import { inPieces, lookupPage, sendSource } from './page-stream.js';
import { isValidName, normalizeName } from '../package-index/names.js';
import type { PageCache } from './page-cache.js';
import { findProject, versionsWithFiles, type ProjectRow, type Reads } from './queries.js';
import { releaseParts } from './file-lists.js';
import type { DbFor } from './db-for.js';

/** PEP 629: the repository version this index speaks (1.1: PEP 700's size, upload-time and versions). */
export const REPOSITORY_VERSION = '1.1';

export const SIMPLE_JSON = 'application/vnd.pypi.simple.v1+json';
export const SIMPLE_HTML = 'application/vnd.pypi.simple.v1+html';

type Format = 'json' | 'html';

/**
 * The content types we answer with, each mapped to its format and the type sent back, in the order a
 * wildcard picks them: any type, or any text type, gets HTML, as browsers expect; any application type
 * gets PEP 691 JSON.
 */
const OFFERS: Readonly<Record<string, { format: Format; type: string }>> = {
  'text/html': { format: 'html', type: 'text/html; charset=utf-8' },
  [SIMPLE_JSON]: { format: 'json', type: SIMPLE_JSON },
  'application/vnd.pypi.simple.latest+json': { format: 'json', type: SIMPLE_JSON },
  [SIMPLE_HTML]: { format: 'html', type: SIMPLE_HTML },
  'application/vnd.pypi.simple.latest+html': { format: 'html', type: SIMPLE_HTML },
};

const POLICY = (normalized?: string) => ({
  cacheControl: 'public, max-age=60',
  surrogateKeys: normalized ? [`project-${normalized}`, 'simple'] : ['simple', 'simple-index'],
  vary: 'Accept',
  cors: true,
});

/** `/simple/` and `/simple/<project>/`: PEP 503 HTML and PEP 691 JSON, cached in Redis. */
export function simpleRoutes(router: Router, db: DbFor, cache: PageCache | undefined, counted: CacheCounter = () => {}): void {
  router.get('simple.index', '/simple/', async (ctx) => {
    const format = acceptable(ctx);
    if (!format) return;
    // Keyed by the media type sent, not the format: a vnd.pypi HTML page must never answer a text/html request.
    const { hit, store } = await lookupPage(ctx, cache, counted, INDEX_CACHE_KEY, format.type);
    if (hit) return sendPage(ctx, hit, POLICY());
    // The index declares its own fence, so a page rendered after a new project's cache bump includes it.
    const projects = await (
      await db(ctx, [INDEX_RESOURCE])
    ).read((r) => r.selectFrom('projects').select(['name', 'normalized_name', 'last_serial']).orderBy('normalized_name').execute());
    const serial = projects.reduce((max, p) => Math.max(max, Number(p.last_serial)), 0);
    const body =
      format.format === 'json'
        ? JSON.stringify({
            meta: { 'api-version': REPOSITORY_VERSION, '_last-serial': serial },
            projects: projects.map((p) => ({ name: p.name })),
          })
        : htmlPage(
            'Simple index',
            projects.map((p) => `    <a href="/simple/${p.normalized_name}/">${escapeHtml(p.name)}</a><br/>`),
          );
    return sendSource(ctx, { type: format.type, serial, chunks: [body] }, POLICY(), store);
  });

  // The forms without the trailing slash (as typed, or from a tool that strips it) redirect, as Warehouse's do.
  // (The router is not strict about a trailing slash: a path with one goes on to the real route.)
  router.get('simple.index.bare', '/simple', (ctx, next) => {
    if (ctx.path.endsWith('/')) return next();
    ctx.status = 301;
    ctx.redirect('/simple/');
    return undefined;
  });
  router.get('simple.detail.bare', '/simple/:project', (ctx, next) => {
    if (ctx.path.endsWith('/')) return next();
    const requested = ctx.params['project'] ?? '';
    if (!isValidName(requested)) return ctx.throw(404, `"${requested}" is not a valid project name`);
    ctx.status = 301;
    ctx.redirect(`/simple/${normalizeName(requested)}/`);
    return undefined;
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
    const format = acceptable(ctx);
    if (!format) return;
    const { hit, store } = await lookupPage(ctx, cache, counted, projectCacheKey(normalized), format.type);
    if (hit) return sendPage(ctx, hit, POLICY(normalized));
    // Declaring the project makes these reads wait for anyone's write to it, not only this session's.
    const requestDb = await db(ctx, [projectResource(normalized)]);
    const read: Reads = (fn) => requestDb.read(fn);
    const found = await read(async (reader) => {
      const project = await findProject(reader, normalized);
      return project && { project, versions: format.format === 'json' ? await versionsWithFiles(reader, project.id) : [] };
    });
    if (!found) return ctx.throw(404, `no project named "${requested}"`);
    const { project, versions } = found;
    const serial = Number(project.last_serial);
    return sendSource(
      ctx,
      {
        type: format.type,
        serial,
        chunks:
          format.format === 'json'
            ? jsonDetail(project, serial, versions, releaseParts(read, project.id, 'simple-json'))
            : htmlDetail(project, releaseParts(read, project.id, 'simple-html')),
      },
      POLICY(normalized),
      store,
    );
  });
}

/** PEP 691's JSON detail page, in pieces: the same bytes as JSON.stringify of the whole. */
async function* jsonDetail(
  project: ProjectRow,
  serial: number,
  versions: string[],
  parts: AsyncIterable<string[]>,
): AsyncGenerator<string> {
  yield `${JSON.stringify({ meta: { 'api-version': REPOSITORY_VERSION, '_last-serial': serial }, name: project.normalized_name, versions }).slice(0, -1)},"files":[`;
  let first = true;
  for await (const releases of parts) {
    for (const piece of inPieces(releases, ',')) {
      yield (first ? '' : ',') + piece;
      first = false;
    }
  }
  yield ']}';
}

/** PEP 503's HTML detail page, in pieces. */
async function* htmlDetail(project: ProjectRow, parts: AsyncIterable<string[]>): AsyncGenerator<string> {
  const [top, bottom] = htmlPage(`Links for ${project.name}`, [`    <h1>Links for ${escapeHtml(project.name)}</h1>`, BODY_MARK]).split(
    `${BODY_MARK}\n`,
  );
  yield top!;
  for await (const releases of parts) yield* inPieces(releases, '');
  yield bottom!;
}

const BODY_MARK = '\u0000body\u0000';

/**
 * PEP 691 content negotiation, by Koa's `ctx.accepts`: the acceptable offer with the highest q (the
 * client's order breaks ties); no Accept header, or an empty one, means HTML. Nothing we serve is
 * acceptable: 406, saying what to ask for.
 */
function acceptable(ctx: Koa.Context): { format: Format; type: string } | undefined {
  const chosen = ctx.get('Accept').trim() ? ctx.accepts(Object.keys(OFFERS)) : 'text/html';
  if (chosen) return OFFERS[chosen];
  ctx.status = 406;
  ctx.vary('Accept');
  ctx.type = 'text/plain; charset=utf-8';
  ctx.body = `406 None of the types in Accept are served here. Ask for ${SIMPLE_JSON}, ${SIMPLE_HTML} or text/html.\n`;
  return undefined;
}

function htmlPage(title: string, body: string[]): string {
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
