import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { sql } from 'kysely';
import { WriteAnnouncer } from '../app/announce.js';
import { PageCache } from '../app/page-cache.js';
import { FileStore } from '../app/storage.js';
import { handleUpload, reasonPhrase, UploadError } from '../app/upload.js';
import { DEFAULT_MAX_UPLOAD, type ReadSettings } from '../lib/config.js';
import { readFields } from '../lib/form-body.js';
import { escapeHtml } from '../lib/html.js';
import { isConnectionError } from '../routing/database.js';
import { DbRouter, fenceFromHeader, type RequestDb } from '../routing/db-router.js';
import { FenceStore } from '../routing/fences.js';
import { xmlRpc } from './xmlrpc-api.js';

export interface LegacyOptions {
  readonly primaryUrl: string;
  readonly replicaUrls: readonly string[];
  readonly reads?: ReadSettings | undefined;
  /** The file store it shares with the new app (the old upload writes there). */
  readonly storageDir: string;
  /** Redis, to announce uploads: the fence and page-cache updates the new app relies on. */
  readonly redisUrl?: string | undefined;
  readonly maxUploadBytes?: number | undefined;
}

interface Legacy {
  readonly router: DbRouter;
  readonly store: FileStore;
  readonly announcer: WriteAnnouncer;
  readonly maxUploadBytes: number;
}

/**
 * A stand-in for the old package index: plain node:http and raw SQL, the way
 * the old system was built. It shares the new app's database, reads from the
 * replicas, and honours the proxy's `X-Banyan-Min-LSN` fence like the app, so
 * a write through either backend is visible on the next page from both.
 */
export function createLegacyServer(options: LegacyOptions): { server: Server; start(): Promise<void>; close(): Promise<void> } {
  const router = new DbRouter({ primaryUrl: options.primaryUrl, replicaUrls: options.replicaUrls, poolSize: 5, name: 'banyan-legacy', ...options.reads });
  const fences = new FenceStore({ redisUrl: options.redisUrl });
  const cache = new PageCache(options.redisUrl);
  const legacy: Legacy = {
    router, store: new FileStore(options.storageDir), announcer: new WriteAnnouncer(router, fences, cache),
    maxUploadBytes: options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD,
  };
  const server = createServer((req, res) => {
    handle(legacy, req, res).catch((err: Error) => {
      if (res.headersSent) return res.destroy();
      if (isConnectionError(err)) {
        return send(res, 503, 'text/plain', 'The database is unavailable: nothing was changed. Try again in a few seconds.\n', { 'Retry-After': '5' });
      }
      console.error(`legacy: ${req.method} ${req.url}: ${err.message}`);
      send(res, 500, 'text/plain', 'The package index is having trouble; try again shortly.\n');
    });
  });
  return {
    server,
    start: async () => {
      await legacy.store.init();
      await router.start();
    },
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fences.close();
      cache.close();
      await router.close();
    },
  };
}

async function handle(legacy: Legacy, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://legacy.invalid');
  const db = await legacy.router.forRequest(fenceFromHeader(req.headers['x-banyan-min-lsn']));
  res.setHeader('X-Legacy-Read-From', db.readTarget);
  if (req.method === 'POST' && url.pathname === '/pypi') {
    const type = (req.headers['content-type'] ?? '').toLowerCase();
    if (type.startsWith('multipart/form-data')) return oldUpload(legacy, db, req, res);
    if (type.startsWith('text/xml') || type.startsWith('application/xml')) {
      const answer = await xmlRpc(db, req);
      return send(res, 200, 'text/xml', answer);
    }
    return submit(legacy, db, req, res);
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, 'text/plain', `${req.method} is not supported here\n`, { Allow: 'GET, HEAD' });
    return;
  }
  if (url.pathname === '/' || url.pathname === '/pypi') {
    const action = url.searchParams.get(':action');
    const name = url.searchParams.get('name');
    if (action === 'display' && name) return projectPage(db, res, name);
    if (action === 'rss') return rss(db, res);
    return homePage(db, res);
  }
  const project = /^\/pypi\/([^/]+)\/?$/.exec(url.pathname);
  if (project) return projectPage(db, res, decodeURIComponent(project[1]!));
  send(res, 404, 'text/html', layout('Not Found', '<p>There is no page here.</p>'));
}

/**
 * The old `:action=submit` form: registers a project. The old system does not
 * report WAL positions to the proxy, but it was taught to announce its writes
 * (fences and cache), as PyPI's legacy code purged its CDN.
 */
async function submit(legacy: Legacy, db: RequestDb, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const fields = await readFields(req);
  if (fields[':action'] !== 'submit') {
    send(res, 400, 'text/plain', 'Unknown :action\n');
    return;
  }
  const name = (fields['name'] ?? '').trim();
  if (!/^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$/i.test(name)) {
    send(res, 400, 'text/plain', 'Error: invalid project name\n');
    return;
  }
  const normalized = name.replace(/[-_.]+/g, '-').toLowerCase();
  await sql`INSERT INTO projects (name, normalized_name) VALUES (${name}, ${normalized}) ON CONFLICT (normalized_name) DO NOTHING`.execute(db.writer);
  await legacy.announcer.announce([normalized], true);
  send(res, 200, 'text/html', layout('Submitted', `<p>Project ${escapeHtml(name)} registered.</p>`));
}

/** The old upload (`:action=file_upload`, the distutils `upload` command): the same checks as the new app's. */
async function oldUpload(legacy: Legacy, db: RequestDb, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const result = await handleUpload({ writer: db.writer, store: legacy.store, maxUploadBytes: legacy.maxUploadBytes }, req);
    if (result.outcome === 'stored') await legacy.announcer.announce([result.project], result.projectCreated);
    send(res, 200, 'text/plain', 'OK\n');
  } catch (err) {
    if (!(err instanceof UploadError)) throw err;
    res.statusMessage = reasonPhrase(err.message);
    send(res, err.status, 'text/plain', `Error: ${err.message}\n`, err.status === 401 ? { 'WWW-Authenticate': 'Basic realm="pypi"' } : {});
  }
}

/** `?:action=rss`: the 40 newest releases, RSS 2.0. */
async function rss(db: RequestDb, res: ServerResponse): Promise<void> {
  const { rows } = await db.read((reader) => sql<{ name: string; version: string; summary: string | null; created_at: Date }>`
    SELECT p.name, r.version, r.summary, r.created_at FROM releases r JOIN projects p ON p.id = r.project_id
     ORDER BY r.created_at DESC, r.id DESC LIMIT 40`.execute(reader));
  const items = rows.map((r) => `  <item>\n    <title>${escapeHtml(`${r.name} ${r.version}`)}</title>\n` +
    `    <link>/pypi/${encodeURIComponent(r.name)}/${encodeURIComponent(r.version)}</link>\n` +
    `    <description>${escapeHtml(r.summary ?? '')}</description>\n    <pubDate>${r.created_at.toUTCString()}</pubDate>\n  </item>`);
  send(res, 200, 'application/rss+xml', `<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>\n` +
    `  <title>Package Index recent updates</title>\n  <link>/pypi</link>\n  <description>Recent updates to the Python Package Index</description>\n` +
    `${items.join('\n')}\n</channel></rss>\n`);
}

async function homePage(db: RequestDb, res: ServerResponse): Promise<void> {
  const { rows } = await db.read((reader) => sql<{ name: string; version: string; summary: string | null }>`
    SELECT p.name, r.version, r.summary FROM releases r JOIN projects p ON p.id = r.project_id
     ORDER BY r.created_at DESC LIMIT 40`.execute(reader));
  const items = rows.map((r) => `<tr><td><a href="/pypi/${encodeURIComponent(r.name)}">${escapeHtml(r.name)} ${escapeHtml(r.version)}</a></td>` +
    `<td>${escapeHtml(r.summary ?? '')}</td></tr>`);
  send(res, 200, 'text/html', layout('Python Package Index',
    `<h2>Recent updates</h2><table>${items.join('\n')}</table>`));
}

async function projectPage(db: RequestDb, res: ServerResponse, name: string): Promise<void> {
  const { rows } = await db.read((reader) => sql<{ name: string; version: string | null; summary: string | null }>`
    SELECT p.name, r.version, r.summary FROM projects p LEFT JOIN releases r ON r.project_id = p.id
     WHERE p.normalized_name = lower(regexp_replace(${name}, '[-_.]+', '-', 'g'))
     ORDER BY r.created_at DESC LIMIT 50`.execute(reader));
  if (rows.length === 0) {
    send(res, 404, 'text/html', layout('Not Found', `<p>There is no project named ${escapeHtml(name)}.</p>`));
    return;
  }
  const first = rows[0]!;
  const versions = rows.filter((r) => r.version).map((r) => `<li>${escapeHtml(r.version!)}</li>`);
  send(res, 200, 'text/html', layout(`${first.name} : Python Package Index`,
    `<h1>${escapeHtml(first.name)}</h1><p>${escapeHtml(first.summary ?? '')}</p><ul>${versions.join('')}</ul>`));
}

function layout(title: string, body: string): string {
  return `<!DOCTYPE html>\n<html><head><title>${escapeHtml(title)}</title></head>\n` +
    `<body><div id="header">Legacy Package Index</div>\n${body}\n</body></html>\n`;
}

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': `${type}; charset=utf-8`, 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
