import { isValidName, normalizeName } from '../package-index/names.js';
import { canonicalVersion, parseVersion } from '../package-index/pep440.js';
import { projectResource } from '../package-index/write-announcer.js';
import { notFound, send, type LegacyRequest } from './http.js';
import { findProject, findRelease, projectFiles, projectReleases, type LegacyFile, type LegacyRelease } from './queries.js';

/**
 * The old JSON API (`/pypi/<name>/json`, `/pypi/<name>/<version>/json`), as
 * it was before Warehouse: `info`, `urls` and `releases`, without the newer
 * fields (`yanked`, `vulnerabilities`, `last_serial` in the body).
 */
export async function jsonApi(r: LegacyRequest, requested: string, version?: string): Promise<void> {
  if (!isValidName(requested)) return notFound(r.res, `"${requested}" is not a valid project name.`);
  const db = await r.db([projectResource(normalizeName(requested))]);
  const project = await findProject(db, normalizeName(requested));
  if (!project) return notFound(r.res, `There is no project named ${requested}.`);
  let release: LegacyRelease | undefined;
  let releases: Record<string, unknown[]> | undefined;
  let files: LegacyFile[];
  if (version === undefined) {
    release = (await projectReleases(db, project.id, 1))[0];
    const all = await projectFiles(db, project.id);
    releases = {};
    for (const f of all) (releases[f.version] ??= []).push(jsonApiFile(f));
    files = release ? all.filter((f) => f.version === release!.version) : [];
  } else {
    const parsed = parseVersion(version);
    release = parsed && (await findRelease(db, project.id, canonicalVersion(parsed)));
    if (!release) return notFound(r.res, `${project.name} has no release ${version}.`);
    files = await projectFiles(db, project.id, canonicalVersion(parsed!));
  }
  const m = release?.metadata ?? {};
  const text = (k: string) => (typeof m[k] === 'string' ? (m[k] as string) : '');
  const body = {
    info: {
      name: project.name,
      version: release?.version ?? null,
      summary: release?.summary ?? '',
      author: text('author'),
      author_email: text('author_email'),
      license: text('license'),
      home_page: text('home_page'),
      keywords: text('keywords'),
      description: text('description'),
      requires_python: release?.requires_python ?? '',
      classifiers: Array.isArray(m['classifiers']) ? m['classifiers'] : [],
      requires_dist: Array.isArray(m['requires_dist']) ? m['requires_dist'] : null,
      package_url: `/pypi/${project.name}`,
      release_url: release ? `/pypi/${project.name}/${release.version}` : null,
    },
    ...(releases ? { releases } : {}),
    urls: files.map(jsonApiFile),
  };
  send(r.res, 200, 'application/json', JSON.stringify(body, null, 2), { 'X-PyPI-Last-Serial': project.last_serial });
}

function jsonApiFile(f: LegacyFile): Record<string, unknown> {
  return {
    filename: f.filename,
    packagetype: f.packagetype,
    python_version: f.python_version,
    size: Number(f.size),
    url: `/packages/${f.path}`,
    digests: { sha256: f.sha256_digest },
    requires_python: f.requires_python,
    upload_time: f.upload_time.toISOString().slice(0, 19),
    has_sig: false,
    comment_text: '',
  };
}
