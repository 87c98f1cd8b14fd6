import type Router from '@koa/router';
import { origin } from './origin.js';
import type Koa from 'koa';
import { escapeHtml } from '../lib/html.js';
import { renderedPage, sendPage } from './http-cache.js';
import { isValidName, normalizeName } from '../package-index/names.js';
import { canonicalVersion, parseVersion } from '../package-index/pep440.js';
import { ACCEPT_CH, chooseFile, describePlatform, detectPlatform, type Choice, type Platform } from './platform.js';
import { findProject, findRelease, latestRelease, releaseFiles, releasePage, type FileRow } from './queries.js';
import type { DbFor } from './db-for.js';
import { projectResource } from '../package-index/write-announcer.js';

/** Releases listed per page: the page costs the same for 10 releases or 10,000. */
export const RELEASES_PER_PAGE = 20;

/**
 * `/project/<name>/` (and `/project/<name>/<version>/`): the download page.
 * It offers the best file of the latest release for the visitor's platform
 * (from the User-Agent), lists the release's other files, and pages through
 * releases newest first. Every query is bounded by an index and a LIMIT.
 */
export function projectPageRoutes(router: Router, db: DbFor): void {
  const handler = async (ctx: Koa.Context) => {
    const page = await readPage(ctx, db);
    const body = renderPage(ctx, page);
    sendPage(ctx, renderedPage('text/html; charset=utf-8', body), {
      cacheControl: 'public, max-age=60',
      surrogateKeys: [`project-${page.project.normalized_name}`],
      vary: 'User-Agent, Sec-CH-UA-Platform, Sec-CH-UA-Arch, Sec-CH-UA-Bitness',
    });
    // Chromium sends the CPU on the next request once asked: arm64 Windows and Macs then get their own wheel.
    ctx.set('Accept-CH', ACCEPT_CH);
  };
  router.get('project.page', '/project/:project/', handler);
  router.get('project.release', '/project/:project/:version/', handler);
}

type PageData = Awaited<ReturnType<typeof readPage>>;

/** The request's project, release (asked for, else the latest), its files and a page of releases; 4xx when any is wrong. */
async function readPage(ctx: Koa.Context, db: DbFor) {
  const requested = ctx.params['project'] ?? '';
  if (!isValidName(requested)) return ctx.throw(404, `"${requested}" is not a valid project name`);
  const normalized = normalizeName(requested);
  const askedVersion = ctx.params['version'];
  const parsedVersion = askedVersion === undefined ? undefined : parseVersion(askedVersion);
  if (askedVersion !== undefined && !parsedVersion) return ctx.throw(404, `"${askedVersion}" is not a PEP 440 version`);
  const pageNumber = ctx.query['page'] === undefined ? 1 : Number(ctx.query['page']);
  if (!Number.isInteger(pageNumber) || pageNumber < 1 || pageNumber > 100_000) {
    return ctx.throw(400, `page must be a whole number from 1 to 100000, not "${String(ctx.query['page'])}"`);
  }
  const found = await (
    await db(ctx, [projectResource(normalized)])
  ).read(async (r) => {
    const project = await findProject(r, normalized);
    if (!project) return undefined;
    const release = parsedVersion ? await findRelease(r, project.id, canonicalVersion(parsedVersion)) : await latestRelease(r, project.id);
    const files = release ? await releaseFiles(r, release.id) : [];
    const releases = await releasePage(r, project.id, (pageNumber - 1) * RELEASES_PER_PAGE, RELEASES_PER_PAGE);
    return { project, release, files, releases };
  });
  if (!found) return ctx.throw(404, `no project named "${requested}"`);
  if (parsedVersion && !found.release) return ctx.throw(404, `${found.project.name} has no release ${askedVersion}`);
  return { ...found, pageNumber };
}

/** The download page's HTML for the visitor's platform. */
function renderPage(ctx: Koa.Context, page: PageData): string {
  const { project, release, files, releases, pageNumber } = page;
  const platform = detectPlatform(ctx.get('User-Agent'), {
    platform: ctx.get('Sec-CH-UA-Platform'),
    arch: ctx.get('Sec-CH-UA-Arch'),
    bitness: ctx.get('Sec-CH-UA-Bitness'),
  });
  const choice = chooseFile(files, platform);
  const base = `/project/${project.normalized_name}/`;
  const more = releases.length > RELEASES_PER_PAGE;
  const shown = releases.slice(0, RELEASES_PER_PAGE);
  const yanked = release?.yanked
    ? `<p id="yanked" class="yanked"><strong>This release is yanked</strong>${release.yanked_reason ? `: ${escapeHtml(release.yanked_reason)}` : ''}. ` +
      `pip installs it only when pinned with <code>==${escapeHtml(release.version)}</code>; you probably want another release.</p>\n`
    : '';
  const index = `${origin(ctx)}/simple/`;
  // With this index's URL: a bare `pip install NAME` would take a same-named package from the public index.
  const install = `pip install --index-url ${index} ${project.normalized_name}${release?.yanked ? `==${release.version}` : ''}`;
  const download = downloadHtml(choice, release, platform, yanked);
  const offered = new Set([choice?.file, ...(choice?.alternatives ?? []).map((a) => a.file)]);
  const others = files
    .filter((f) => !offered.has(f))
    .map(
      (f) =>
        `<tr><td><a href="/packages/${escapeHtml(f.path)}">${escapeHtml(f.filename)}</a></td><td>${f.packagetype === 'sdist' ? 'source' : escapeHtml(f.python_version)}</td>` +
        `<td>${fmtSize(f)}</td><td><code>${f.sha256_digest.slice(0, 16)}…</code></td></tr>`,
    );
  const releaseItems = shown.map(
    (r) =>
      `<li><a href="${base}${escapeHtml(r.version)}/">${escapeHtml(r.version)}</a>` +
      `${r.is_prerelease ? ' <small>pre-release</small>' : ''}${r.yanked ? ' <small>yanked</small>' : ''} <time>${r.created_at.toISOString().slice(0, 10)}</time></li>`,
  );
  const nav = [
    pageNumber > 1 ? `<a rel="prev" href="${base}?page=${pageNumber - 1}">Newer releases</a>` : '',
    more ? `<a rel="next" href="${base}?page=${pageNumber + 1}">Older releases</a>` : '',
  ]
    .filter(Boolean)
    .join(' · ');

  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(project.name)}${release ? ` ${escapeHtml(release.version)}` : ''}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1d2733}
.button{display:inline-block;background:#2a6f3c;color:#fff;padding:.8rem 1.4rem;border-radius:6px;text-decoration:none;font-weight:600}
.why{color:#55606e;margin-top:.4rem}.yanked{background:#fff4d6;border-left:4px solid #c98a00;padding:.5rem .8rem}.button.yanked{background:#8a6d3b}table{border-collapse:collapse;width:100%}td{padding:.3rem .5rem;border-bottom:1px solid #e3e7ec}
code{font-size:.85em}li small{color:#8a5a00}</style></head>
<body>
<h1>${escapeHtml(project.name)}${release ? ` <span class="version">${escapeHtml(release.version)}</span>` : ''}</h1>
<p class="summary">${escapeHtml(release?.summary ?? '')}</p>
<p><code id="install">${escapeHtml(install)}</code></p>
<section><h2>Download for ${escapeHtml(describePlatform(platform))}</h2>
${download}</section>
${others.length ? `<section><h2>Other files</h2><table id="files">${others.join('\n')}</table></section>` : ''}
<section><h2>Releases</h2><ol id="releases">${releaseItems.join('\n')}</ol>
<nav>${nav}</nav></section>
</body></html>
`;
}

/** The download button for the best file (and alternatives), or why there is none. */
function downloadHtml(choice: Choice<FileRow> | undefined, release: PageData['release'], platform: Platform, yanked: string): string {
  if (!choice) {
    return release
      ? `<p id="download" class="none">No file of ${escapeHtml(release.version)} fits ${escapeHtml(describePlatform(platform))}; see the files below.</p>`
      : '<p id="download" class="none">This project has no releases yet.</p>';
  }
  return (
    `${yanked}<a id="download" class="button${release?.yanked ? ' yanked' : ''}" href="/packages/${escapeHtml(choice.file.path)}" data-filename="${escapeHtml(choice.file.filename)}">` +
    `Download ${escapeHtml(choice.file.filename)}</a>\n<p class="why">${escapeHtml(choice.reason)}; ${fmtSize(choice.file)}</p>` +
    (choice.alternatives ?? [])
      .map(
        (alt) =>
          `\n<a class="button alternative" href="/packages/${escapeHtml(alt.file.path)}" data-filename="${escapeHtml(alt.file.filename)}">` +
          `Download ${escapeHtml(alt.file.filename)}</a>\n<p class="why">${escapeHtml(alt.reason)}; ${fmtSize(alt.file)}</p>`,
      )
      .join('') +
    (choice.note ? `\n<p id="platform-note" class="why">${escapeHtml(choice.note)}</p>` : '')
  );
}

function fmtSize(f: FileRow): string {
  const n = Number(f.size);
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
