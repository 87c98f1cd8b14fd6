import { sql } from 'kysely';
import { escapeHtml } from '../lib/html.js';
import { isValidName, normalizeName } from '../package-index/names.js';
import { canonicalVersion, parseVersion } from '../package-index/pep440.js';
import { INDEX_RESOURCE, projectResource } from '../package-index/write-announcer.js';
import { layout, notFound, send, type LegacyRequest } from './http.js';
import { findProject, findRelease, projectFiles, projectReleases, type LegacyFile } from './queries.js';

/** How many releases a project page lists: SourceForge's lesson, every listing is bounded. */
const RELEASES_SHOWN = 50;

/** `/simple/`: every project, PEP 503 HTML (the old index predates PEP 691's JSON). */
export async function simpleIndex(r: LegacyRequest): Promise<void> {
  const db = await r.db([INDEX_RESOURCE]);
  const { rows } = await db.read((reader) => sql<{ name: string }>`SELECT name FROM projects ORDER BY lower(name)`.execute(reader));
  const links = rows.map((p) => `<a href="${encodeURIComponent(p.name)}/">${escapeHtml(p.name)}</a><br/>`);
  send(r.res, 200, 'text/html', `<html><head><title>Simple Index</title></head><body>\n${links.join('\n')}\n</body></html>\n`);
}

/** `/simple/<project>/`: the project's files with `#sha256=` links, relative as the old index wrote them. */
export async function simpleDetail(r: LegacyRequest, requested: string): Promise<void> {
  const normalized = normalizeName(requested);
  if (!isValidName(requested)) return notFound(r.res, `"${requested}" is not a valid project name.`);
  if (requested !== normalized) return redirect(r, `/simple/${normalized}/`);
  const db = await r.db([projectResource(normalized)]);
  const project = await findProject(db, normalized);
  if (!project) return notFound(r.res, `There is no project named ${requested}.`);
  const files = await projectFiles(db, project.id);
  const links = files.map((f) => {
    const python = f.requires_python ? ` data-requires-python="${escapeHtml(f.requires_python)}"` : '';
    return `<a href="../../packages/${escapeHtml(f.path)}#sha256=${f.sha256_digest}"${python} rel="internal">${escapeHtml(f.filename)}</a><br/>`;
  });
  send(
    r.res,
    200,
    'text/html',
    `<html><head><title>Links for ${escapeHtml(project.name)}</title></head><body>` +
      `<h1>Links for ${escapeHtml(project.name)}</h1>\n${links.join('\n')}\n</body></html>\n`,
    { 'X-PyPI-Last-Serial': project.last_serial },
  );
}

/** The home page: the 40 newest releases. */
export async function homePage(r: LegacyRequest): Promise<void> {
  const db = await r.db([INDEX_RESOURCE]);
  const { rows } = await db.read((reader) =>
    sql<{ name: string; version: string; summary: string | null }>`
    SELECT p.name, r.version, r.summary FROM releases r JOIN projects p ON p.id = r.project_id
     ORDER BY r.created_at DESC, r.id DESC LIMIT 40`.execute(reader),
  );
  const items = rows.map(
    (row) =>
      `<tr><td><a href="/pypi/${encodeURIComponent(row.name)}/${encodeURIComponent(row.version)}">` +
      `${escapeHtml(row.name)} ${escapeHtml(row.version)}</a></td><td>${escapeHtml(row.summary ?? '')}</td></tr>`,
  );
  send(
    r.res,
    200,
    'text/html',
    layout('Python Package Index', `<h2>Recent updates</h2>\n<table class="list">\n${items.join('\n')}\n</table>`),
  );
}

/**
 * The old project page (`/pypi/<name>`, and `/project/<name>/` for links to
 * the new site): the latest release's files and the release list. With
 * `version`, that release's page.
 */
export async function projectPage(r: LegacyRequest, requested: string, version?: string): Promise<void> {
  if (!isValidName(requested)) return notFound(r.res, `"${requested}" is not a valid project name.`);
  const db = await r.db([projectResource(normalizeName(requested))]);
  const project = await findProject(db, normalizeName(requested));
  if (!project) return notFound(r.res, `There is no project named ${requested}.`);
  const releases = await projectReleases(db, project.id, RELEASES_SHOWN);
  let release = releases.find((rel) => !rel.yanked) ?? releases[0];
  if (version !== undefined) {
    const parsed = parseVersion(version);
    release = parsed && (await findRelease(db, project.id, canonicalVersion(parsed)));
    if (!release) return notFound(r.res, `${project.name} has no release ${version}.`);
  }
  const files = release ? await projectFiles(db, project.id, canonicalVersion(parseVersion(release.version)!)) : [];
  const title = release ? `${project.name} ${release.version}` : project.name;
  const body = [
    `<h1>${escapeHtml(title)}</h1>`,
    release?.summary ? `<p class="summary">${escapeHtml(release.summary)}</p>` : '',
    release?.yanked ? '<p class="warning">This release has been removed by its maintainer.</p>' : '',
    files.length
      ? `<table class="list"><tr><th>File</th><th>Type</th><th>Py Version</th><th>Size</th></tr>\n${files.map((f, i) => fileRow(f, i === 0)).join('\n')}\n</table>`
      : '<p>No files.</p>',
    `<h3>Releases</h3><ul>${releases
      .map(
        (rel) =>
          `<li><a href="/pypi/${encodeURIComponent(project.name)}/${encodeURIComponent(rel.version)}">` +
          `${escapeHtml(rel.version)}</a></li>`,
      )
      .join('')}</ul>`,
  ];
  send(r.res, 200, 'text/html', layout(`${title} : Python Package Index`, body.filter(Boolean).join('\n')));
}

/**
 * A file's row. The old page offers no file by platform: what a visitor downloads is the file at the
 * top of the table, so its link carries `id="download"` (unseen), the hook shadow's `offered` field reads.
 */
function fileRow(f: LegacyFile, first: boolean): string {
  const size = Number(f.size) >= 1024 ? `${Math.round(Number(f.size) / 1024)}KB` : `${f.size}B`;
  return (
    `<tr><td><a${first ? ' id="download"' : ''} href="/packages/${escapeHtml(f.path)}#sha256=${f.sha256_digest}">${escapeHtml(f.filename)}</a></td>` +
    `<td>${f.packagetype === 'sdist' ? 'Source' : 'Python Wheel'}</td><td>${escapeHtml(f.python_version)}</td><td>${size}</td></tr>`
  );
}

/** `?:action=rss`: the 40 newest releases, RSS 2.0. */
export async function rss(r: LegacyRequest): Promise<void> {
  const db = await r.db([INDEX_RESOURCE]);
  const { rows } = await db.read((reader) =>
    sql<{ name: string; version: string; summary: string | null; created_at: Date }>`
    SELECT p.name, r.version, r.summary, r.created_at FROM releases r JOIN projects p ON p.id = r.project_id
     ORDER BY r.created_at DESC, r.id DESC LIMIT 40`.execute(reader),
  );
  const items = rows.map(
    (row) =>
      `  <item>\n    <title>${escapeHtml(`${row.name} ${row.version}`)}</title>\n` +
      `    <link>/pypi/${encodeURIComponent(row.name)}/${encodeURIComponent(row.version)}</link>\n` +
      `    <description>${escapeHtml(row.summary ?? '')}</description>\n    <pubDate>${row.created_at.toUTCString()}</pubDate>\n  </item>`,
  );
  send(
    r.res,
    200,
    'application/rss+xml',
    `<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>\n` +
      '  <title>Package Index recent updates</title>\n  <link>/pypi</link>\n  <description>Recent updates to the Python Package Index</description>\n' +
      `${items.join('\n')}\n</channel></rss>\n`,
  );
}

export function redirect(r: LegacyRequest, location: string): void {
  send(r.res, 301, 'text/html', layout('Moved', `<p>Moved to <a href="${escapeHtml(location)}">${escapeHtml(location)}</a>.</p>`), {
    Location: location,
  });
}
