import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import pg from 'pg';
import { escapeHtml } from '../lib/html.js';

/**
 * A stand-in for the old package index: plain node:http and raw SQL on the
 * primary, the way the old system was built. It shares the new app's
 * database, so a write through either backend is visible to both.
 */
export function createLegacyServer(databaseUrl: string): { server: Server; close(): Promise<void> } {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 5, application_name: 'banyan-legacy' });
  pool.on('error', () => {});
  const server = createServer((req, res) => {
    handle(pool, req, res).catch((err: Error) => {
      console.error(`legacy: ${req.method} ${req.url}: ${err.message}`);
      if (!res.headersSent) send(res, 500, 'text/plain', 'The package index is having trouble; try again shortly.\n');
      else res.destroy();
    });
  });
  return {
    server,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pool.end();
    },
  };
}

async function handle(pool: pg.Pool, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://legacy.invalid');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, 'text/plain', `${req.method} is not supported here\n`, { Allow: 'GET, HEAD' });
    return;
  }
  if (url.pathname === '/' || url.pathname === '/pypi') {
    const action = url.searchParams.get(':action');
    const name = url.searchParams.get('name');
    if (action === 'display' && name) return projectPage(pool, res, name);
    return homePage(pool, res);
  }
  const project = /^\/pypi\/([^/]+)\/?$/.exec(url.pathname);
  if (project) return projectPage(pool, res, decodeURIComponent(project[1]!));
  send(res, 404, 'text/html', layout('Not Found', '<p>There is no page here.</p>'));
}

async function homePage(pool: pg.Pool, res: ServerResponse): Promise<void> {
  const { rows } = await pool.query<{ name: string; version: string; summary: string | null }>(
    `SELECT p.name, r.version, r.summary FROM releases r JOIN projects p ON p.id = r.project_id
      ORDER BY r.created_at DESC LIMIT 40`);
  const items = rows.map((r) => `<tr><td><a href="/pypi/${encodeURIComponent(r.name)}">${escapeHtml(r.name)} ${escapeHtml(r.version)}</a></td>` +
    `<td>${escapeHtml(r.summary ?? '')}</td></tr>`);
  send(res, 200, 'text/html', layout('Python Package Index',
    `<h2>Recent updates</h2><table>${items.join('\n')}</table>`));
}

async function projectPage(pool: pg.Pool, res: ServerResponse, name: string): Promise<void> {
  const { rows } = await pool.query<{ name: string; version: string; summary: string | null }>(
    `SELECT p.name, r.version, r.summary FROM projects p LEFT JOIN releases r ON r.project_id = p.id
      WHERE p.normalized_name = lower(regexp_replace($1, '[-_.]+', '-', 'g'))
      ORDER BY r.created_at DESC LIMIT 50`, [name]);
  if (rows.length === 0) {
    send(res, 404, 'text/html', layout('Not Found', `<p>There is no project named ${escapeHtml(name)}.</p>`));
    return;
  }
  const first = rows[0]!;
  const versions = rows.filter((r) => r.version).map((r) => `<li>${escapeHtml(r.version)}</li>`);
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
