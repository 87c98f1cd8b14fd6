import type Router from '@koa/router';
import type Koa from 'koa';
import { renderedPage, sendPage } from './http-cache.js';
import { isValidName, normalizeName } from '../lib/names.js';
import { canonicalVersion, parseVersion } from '../lib/pep440.js';
import { findProject, findRelease, latestRelease, projectFileBatches, releaseFiles, type FileRow, type ProjectRow, type Reads, type ReleaseRow } from './queries.js';
import { inPieces, sendSource } from './page-stream.js';
import { origin } from './origin.js';
import type { DbFor } from './db-for.js';
import { projectResource } from '../lib/write-announcer.js';

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
    const found = await read(async (r) => {
      const project = await findProject(r, normalized);
      if (!project) return undefined;
      const release = await latestRelease(r, project.id);
      return { project, release, latest: release ? await releaseFiles(r, release.id) : [] };
    });
    if (!found) return ctx.throw(404, `no project named "${ctx.params['project']}"`);
    const { project, release, latest } = found;
    const base = origin(ctx);
    // The same bytes as JSON.stringify of the whole answer, in pieces: a giant's is 29 MB.
    const head = JSON.stringify({ info: info(project, release), last_serial: Number(project.last_serial) }).slice(0, -1);
    const tail = JSON.stringify({ urls: latest.map((f) => jsonApiFile(f, base)), vulnerabilities: [] }).slice(1);
    async function* body(): AsyncGenerator<string> {
      yield `${head},"releases":{`;
      let first = true;
      for await (const files of projectFileBatches(read, project.id)) {
        const parts: string[] = [];
        for (let i = 0; i < files.length;) {
          const version = files[i]!.version;
          const entries: string[] = [];
          for (; i < files.length && files[i]!.version === version; i++) entries.push(JSON.stringify(jsonApiFile(files[i]!, base)));
          parts.push(`${JSON.stringify(version)}:[${entries.join(',')}]`);
        }
        for (const piece of inPieces(parts, ',')) {
          yield (first ? '' : ',') + piece;
          first = false;
        }
      }
      yield `},${tail}`;
    }
    return sendSource(ctx, { type: 'application/json', serial: Number(project.last_serial), chunks: body() }, JSON_POLICY(project));
  });

  router.get('json.release', '/pypi/:project/:version/json', async (ctx) => {
    const normalized = checkName(ctx);
    if (!normalized) return;
    const version = parseVersion(ctx.params['version'] ?? '');
    if (!version) return ctx.throw(404, `"${ctx.params['version']}" is not a PEP 440 version`);
    const found = await (await db(ctx, [projectResource(normalized)])).read(async (r) => {
      const project = await findProject(r, normalized);
      if (!project) return undefined;
      const release = await findRelease(r, project.id, canonicalVersion(version));
      return { project, release, files: release ? await releaseFiles(r, release.id) : [] };
    });
    if (!found) return ctx.throw(404, `no project named "${ctx.params['project']}"`);
    if (!found.release) return ctx.throw(404, `${found.project.name} has no release ${ctx.params['version']}`);
    send(ctx, found.project, {
      info: info(found.project, found.release),
      last_serial: Number(found.project.last_serial),
      urls: found.files.map((f) => jsonApiFile(f, origin(ctx))),
      vulnerabilities: [],
    });
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

function send(ctx: Koa.Context, project: ProjectRow, body: unknown): void {
  sendPage(ctx, renderedPage('application/json', JSON.stringify(body), Number(project.last_serial)), JSON_POLICY(project));
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

/** A file as Warehouse's JSON API shows it; `base` makes its URL absolute. */
function jsonApiFile(f: FileRow, base = ''): Record<string, unknown> {
  const iso = f.upload_time.toISOString();
  return {
    filename: f.filename,
    packagetype: f.packagetype,
    python_version: f.python_version,
    requires_python: f.requires_python,
    size: Number(f.size),
    digests: {
      ...(f.blake2_256_digest ? { blake2b_256: f.blake2_256_digest } : {}),
      ...(f.md5_digest ? { md5: f.md5_digest } : {}),
      sha256: f.sha256_digest,
    },
    md5_digest: f.md5_digest,
    url: `${base}/packages/${f.path}`,
    upload_time: iso.slice(0, 19),
    upload_time_iso_8601: iso,
    yanked: f.yanked,
    yanked_reason: f.yanked_reason,
    has_sig: false,
    comment_text: '',
  };
}
