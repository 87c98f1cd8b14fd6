import type Router from '@koa/router';
import type Koa from 'koa';
import { renderedPage, sendPage } from './http-cache.js';
import { isValidName, normalizeName } from '../package-index/names.js';
import { canonicalVersion, parseVersion } from '../package-index/pep440.js';
import { findProject, findRelease, latestRelease, type ProjectRow, type Reads, type ReleaseRow } from './queries.js';
import { releaseFileList, releaseParts } from './file-lists.js';
import { inPieces, sendSource } from './page-stream.js';
import { origin } from './origin.js';
import type { DbFor } from './db-for.js';
import { projectResource } from '../package-index/write-announcer.js';

/**
 * `/pypi/<project>/json` and `/pypi/<project>/<version>/json`: Warehouse's
 * JSON API, with its field names for the data this index keeps.
 */
export function jsonRoutes(router: Router, db: DbFor): void {
  router.get('json.project', '/pypi/:project/json', async (ctx) => {
    const normalized = checkName(ctx);
    if (!normalized) return;
    const requestDb = await db(ctx, [projectResource(normalized)]);
    const read: Reads = (fn) => requestDb.read(fn);
    const base = origin(ctx);
    const found = await read(async (r) => {
      const project = await findProject(r, normalized);
      if (!project) return undefined;
      const release = await latestRelease(r, project.id);
      return { project, release, latest: release ? await releaseFileList(r, release.id, base) : '[]' };
    });
    if (!found) return ctx.throw(404, `no project named "${ctx.params['project']}"`);
    const { project, release, latest } = found;
    // The same bytes as JSON.stringify of the whole answer, in pieces: a giant's is 29 MB.
    const head = JSON.stringify({ info: info(project, release), last_serial: Number(project.last_serial) }).slice(0, -1);
    async function* body(): AsyncGenerator<string> {
      yield `${head},"releases":{`;
      let first = true;
      for await (const parts of releaseParts(read, project.id, { jsonApiBase: base })) {
        for (const piece of inPieces(parts, ',')) {
          yield (first ? '' : ',') + piece;
          first = false;
        }
      }
      yield `},"urls":${latest},"vulnerabilities":[]}`;
    }
    return sendSource(ctx, { type: 'application/json', serial: Number(project.last_serial), chunks: body() }, JSON_POLICY(project));
  });

  router.get('json.release', '/pypi/:project/:version/json', async (ctx) => {
    const normalized = checkName(ctx);
    if (!normalized) return;
    const version = parseVersion(ctx.params['version'] ?? '');
    if (!version) return ctx.throw(404, `"${ctx.params['version']}" is not a PEP 440 version`);
    const found = await (
      await db(ctx, [projectResource(normalized)])
    ).read(async (r) => {
      const project = await findProject(r, normalized);
      if (!project) return undefined;
      const release = await findRelease(r, project.id, canonicalVersion(version));
      return { project, release, urls: release ? await releaseFileList(r, release.id, origin(ctx)) : '[]' };
    });
    if (!found) return ctx.throw(404, `no project named "${ctx.params['project']}"`);
    if (!found.release) return ctx.throw(404, `${found.project.name} has no release ${ctx.params['version']}`);
    const head = JSON.stringify({ info: info(found.project, found.release), last_serial: Number(found.project.last_serial) }).slice(0, -1);
    sendPage(
      ctx,
      renderedPage('application/json', `${head},"urls":${found.urls},"vulnerabilities":[]}`, Number(found.project.last_serial)),
      JSON_POLICY(found.project),
    );
  });
}

/** The normalized name, or undefined after answering: 404 for an invalid name, 301 to the normalized URL (as Warehouse). */
function checkName(ctx: Koa.Context): string | undefined {
  const requested = ctx.params['project'] ?? '';
  if (!isValidName(requested)) ctx.throw(404, `"${requested}" is not a valid project name`);
  const normalized = normalizeName(requested);
  if (normalized !== requested) {
    ctx.status = 301;
    ctx.set('Access-Control-Allow-Origin', '*');
    ctx.redirect(ctx.path.replace(`/pypi/${requested}/`, `/pypi/${normalized}/`) + (ctx.querystring ? `?${ctx.querystring}` : ''));
    return undefined;
  }
  return normalized;
}

// A read API: any page may fetch it (Warehouse answers the same).
const JSON_POLICY = (project: ProjectRow) => ({
  cacheControl: 'public, max-age=60',
  surrogateKeys: [`project-${project.normalized_name}`, 'json'],
  cors: true,
});

function info(project: ProjectRow, release: ReleaseRow | undefined): Record<string, unknown> {
  const m = release?.metadata ?? {};
  const text = (key: string) => (typeof m[key] === 'string' ? m[key] : null);
  const list = (key: string) => (Array.isArray(m[key]) ? m[key] : null);
  const projectUrls: Record<string, string> = {};
  for (const entry of (list('project_urls') ?? []) as string[]) {
    const [label, url] = entry.split(/,\s*/, 2);
    if (label && url) projectUrls[label] = url;
  }
  return {
    name: project.name,
    version: release?.version ?? null,
    summary: release?.summary ?? null,
    description: text('description') ?? '',
    description_content_type: text('description_content_type'),
    author: text('author'),
    author_email: text('author_email'),
    maintainer: text('maintainer'),
    maintainer_email: text('maintainer_email'),
    license: text('license'),
    license_expression: text('license_expression'),
    keywords: text('keywords'),
    classifiers: list('classifiers') ?? [],
    platform: (list('platform') as string[] | null)?.join(', ') ?? null,
    home_page: text('home_page'),
    download_url: text('download_url'),
    requires_python: release?.requires_python ?? null,
    requires_dist: list('requires_dist'),
    provides_extra: list('provides_extra'),
    project_urls: Object.keys(projectUrls).length > 0 ? projectUrls : null,
    project_url: `/project/${project.normalized_name}/`,
    package_url: `/project/${project.normalized_name}/`,
    release_url: release ? `/project/${project.normalized_name}/${release.version}/` : null,
    yanked: release?.yanked ?? false,
    yanked_reason: release?.yanked_reason ?? null,
  };
}
