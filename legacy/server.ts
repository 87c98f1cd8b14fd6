import type { IndexDatabase } from '../package-index/schema.js';
import { quoted } from '../lib/quoted.js';
import { createServer, type Server } from 'node:http';
import { authenticate } from '../package-index/accounts.js';
import { LoginThrottle, loginAddress, throttledMessage } from '../lib/login-throttle.js';
import { createProject, creationRefusal } from '../package-index/ownership.js';
import { DEFAULT_MAX_UPLOAD, DEFAULT_PROJECTS_PER_HOUR, type ReadSettings } from '../lib/config.js';
import { httpStatusOf } from '../lib/errors.js';
import { FileStore } from '../lib/file-store.js';
import { readFields } from '../lib/form-body.js';
import { escapeHtml } from '../lib/html.js';
import { isValidName, normalizeName } from '../package-index/names.js';
import { CacheGenerations, lockProject, WriteAnnouncer } from '../package-index/write-announcer.js';
import { isConnectionError } from '../lib/database.js';
import { inRequestScope, watchingRequests } from '../lib/request-scope.js';
import { dbForRequest, DbRouter, FenceStore, readReporter, type RequestDb } from '../routing/reads/index.js';
import { servePackage } from './files.js';
import { layout, notFound, send, statusText, type LegacyRequest } from './http.js';
import { jsonApi } from './json-api.js';
import { homePage, projectPage, redirect, rss, simpleDetail, simpleIndex } from './pages.js';
import { oldUpload, type LegacyUploadOptions } from './upload.js';
import { xmlRpc } from './xmlrpc-api.js';

export interface LegacyOptions {
  readonly primaryUrl: string;
  readonly replicaUrls: readonly string[];
  readonly reads?: ReadSettings | undefined;
  /** The file store it shares with the new app (same content-addressed layout). */
  readonly storageDir: string;
  /** Redis: resource fences, and the cache generations the new app's pages live under. */
  readonly redisUrl?: string | undefined;
  readonly maxUploadBytes?: number | undefined;
  readonly projectsPerHour?: number | undefined;
}

/** The legacy backend as a node:http server, with what it opened. */
export interface LegacyServer {
  readonly server: Server;
  start(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The old package index: plain node:http and raw SQL, the way the old system
 * was built, and none of the new app's code. It serves every public route the
 * new app serves, in its own era's way (PEP 503 HTML only, the old JSON API,
 * old pages), from the same database and file store. Like the new app it
 * honours the proxy's `X-Banyan-Min-LSN` and every project's resource fence,
 * and announces its writes, so either backend shows a write at once.
 */
export function createLegacyServer(options: LegacyOptions): LegacyServer {
  const router = new DbRouter<IndexDatabase>({
    primaryUrl: options.primaryUrl,
    replicaUrls: options.replicaUrls,
    poolSize: 5,
    name: 'banyan-legacy',
    ...options.reads,
  });
  const fences = new FenceStore({ redisUrl: options.redisUrl });
  const generations = new CacheGenerations(options.redisUrl);
  const store = new FileStore(options.storageDir);
  const upload: LegacyUploadOptions = {
    store,
    announcer: new WriteAnnouncer(router, fences, generations),
    maxUploadBytes: options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD,
    projectsPerHour: options.projectsPerHour ?? DEFAULT_PROJECTS_PER_HOUR,
    logins: new LoginThrottle(options.redisUrl),
  };
  const server = createServer((req, res) => {
    let chosen: Promise<RequestDb<IndexDatabase>> | undefined;
    const request: LegacyRequest = {
      req,
      res,
      url: new URL(req.url ?? '/', 'http://legacy.invalid'),
      db: (resources = []) =>
        (chosen ??= (async () => {
          const db = await dbForRequest(
            { router, fences },
            req.headers,
            resources,
            readReporter(req.headers, (headers) => {
              if (!res.headersSent) for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
            }),
          );
          if (!res.headersSent) res.setHeader('X-Legacy-Read-From', db.readTarget);
          return db;
        })()),
    };
    const serve = () => route(request, store, upload).catch((err: Error) => failed(request, err));
    if (watchingRequests()) void inRequestScope(req, res, () => request.handler, serve);
    else void serve();
  });
  return {
    server,
    start: async () => {
      await store.init();
      await router.start();
    },
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fences.close();
      generations.close();
      upload.logins?.close();
      await router.close();
    },
  };
}

function failed(r: LegacyRequest, err: Error): void {
  if (r.res.headersSent) {
    r.res.destroy();
    return;
  }
  r.req.resume();
  const status = httpStatusOf(err);
  if (status !== undefined && status < 500) {
    send(r.res, status, 'text/plain', `Error: ${err.message}\n`);
    return;
  }
  if (isConnectionError(err)) {
    send(r.res, 503, 'text/plain', 'The database is unavailable: nothing was changed. Try again in a few seconds.\n', {
      'Retry-After': '5',
    });
    return;
  }
  console.error(`legacy: ${r.req.method} ${quoted(r.req.url ?? '/')}: ${err.stack ?? err.message}`);
  send(r.res, 500, 'text/plain', 'The package index is having trouble; try again shortly.\n');
}

const decode = (segment: string) => {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
};

/** The old index's URL map; the handler it chose is named on `r.handler`. */
async function route(r: LegacyRequest, store: FileStore, upload: LegacyUploadOptions): Promise<void> {
  const path = r.url.pathname;
  const method = r.req.method ?? 'GET';
  const as = <T>(handler: string, serve: () => T): T => {
    r.handler = `legacy.${handler}`;
    return serve();
  };
  if (method === 'POST') {
    if (path === '/legacy/') return as('upload', () => oldUpload(r, upload));
    if (path === '/pypi' || path === '/pypi/') return as('pypi.post', () => postPypi(r, upload));
    if (path === '/manage/projects') return as('manage.projects', async () => register(r, upload, await readFields(r.req)));
  }
  if (method !== 'GET' && method !== 'HEAD') {
    r.req.resume();
    return send(r.res, 405, 'text/plain', `${method} is not supported here\n`, { Allow: 'GET, HEAD' });
  }
  if (path === '/' || path === '/pypi' || path === '/pypi/') {
    const action = r.url.searchParams.get(':action');
    const name = r.url.searchParams.get('name');
    if (action === 'display' && name)
      return as('project.display', () => projectPage(r, name, r.url.searchParams.get('version') ?? undefined));
    if (action === 'rss') return as('rss', () => rss(r));
    return as('home', () => homePage(r));
  }
  if (path === '/simple/') return as('simple.index', () => simpleIndex(r));
  let m = /^\/simple\/([^/]+)(\/?)$/.exec(path);
  if (m) {
    const [, project, slash] = m;
    return as('simple.detail', () => (slash ? simpleDetail(r, decode(project!)) : redirect(r, `${path}/`)));
  }
  if (path.startsWith('/packages/')) return as('packages', () => servePackage(r, store, path.slice('/packages/'.length)));
  m = /^\/pypi\/([^/]+)\/(?:([^/]+)\/)?json\/?$/.exec(path);
  if (m) {
    const [, project, version] = m;
    return as('json', () => jsonApi(r, decode(project!), version === undefined ? undefined : decode(version)));
  }
  m = /^\/(?:pypi|project)\/([^/]+)(?:\/([^/]+))?\/?$/.exec(path);
  if (m) {
    const [, project, version] = m;
    return as('project', () => projectPage(r, decode(project!), version === undefined ? undefined : decode(version)));
  }
  notFound(r.res);
}

/** `POST /pypi`: XML-RPC, the old upload form, or `:action=submit`. */
async function postPypi(r: LegacyRequest, upload: LegacyUploadOptions): Promise<void> {
  const type = (r.req.headers['content-type'] ?? '').toLowerCase();
  if (type.startsWith('multipart/form-data')) return oldUpload(r, upload);
  if (type.startsWith('text/xml') || type.startsWith('application/xml')) {
    return send(r.res, 200, 'text/xml', await xmlRpc((resources) => r.db(resources), r.req));
  }
  const fields = await readFields(r.req);
  if (fields[':action'] !== 'submit')
    return send(
      r.res,
      400,
      'text/plain',
      `Unknown :action ${JSON.stringify(fields[':action'] ?? '')}; use submit, file_upload or XML-RPC\n`,
    );
  return register(r, upload, fields);
}

/**
 * The old `:action=submit` (and `/manage/projects`): registers a project for
 * the logged-in user, who becomes its owner. Anonymous callers are refused.
 */
async function register(r: LegacyRequest, upload: LegacyUploadOptions, fields: Record<string, string>): Promise<void> {
  const db = await r.db();
  const account = await authenticate(db.writer, r.req.headers.authorization, { throttle: upload.logins, address: loginAddress(r.req) });
  if (typeof account === 'object' && 'retryAfterSeconds' in account) {
    r.res.statusMessage = statusText(throttledMessage(account));
    return send(r.res, 429, 'text/plain', `Error: ${throttledMessage(account)}\n`, { 'Retry-After': String(account.retryAfterSeconds) });
  }
  if (typeof account === 'string') {
    r.res.statusMessage = statusText('Log in to register a project');
    return send(
      r.res,
      401,
      'text/plain',
      'Error: log in to register a project (HTTP Basic: your username and password, or __token__ and a token)\n',
      { 'WWW-Authenticate': 'Basic realm="pypi"' },
    );
  }
  const name = (fields['name'] ?? '').trim();
  if (!isValidName(name)) return send(r.res, 400, 'text/plain', 'Error: invalid project name\n');
  const normalized = normalizeName(name);
  const created = await db.writer.transaction().execute(async (trx) => {
    await lockProject(trx, normalized);
    const refusal = await creationRefusal(trx, account, upload.projectsPerHour);
    if (refusal) return refusal;
    return (await createProject(trx, account, name)) !== undefined;
  });
  if (created === false) return send(r.res, 409, 'text/plain', `Error: a project named ${normalized} already exists\n`);
  if (created !== true) {
    r.res.statusMessage = statusText(created.message);
    return send(
      r.res,
      created.status,
      'text/plain',
      `Error: ${created.message}\n`,
      created.status === 429 ? { 'Retry-After': '3600' } : {},
    );
  }
  await upload.announcer.announce([normalized], true);
  send(r.res, 200, 'text/html', layout('Submitted', `<p>Project ${escapeHtml(name)} registered.</p>`));
}
