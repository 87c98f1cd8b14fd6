import type { IndexDatabase } from '../package-index/schema.js';
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import Router from '@koa/router';
import Koa from 'koa';
import { sql } from 'kysely';
import { listen, type Listening } from '../lib/http-server.js';
import type { ProxyRuntime } from '../proxy/runtime.js';
import { DbRouter, readYourWrites, type ReadYourWritesState } from '../routing/reads/index.js';
import { freePort } from '../stack/ports.js';
import { setRoutes, startTestProxy } from './support/proxy.js';
import { services, waitForReplay, withClient } from './support/services.js';
import { waitUntil } from './support/wait.js';

const PYTHON_BACKEND = fileURLToPath(new URL('../examples/python-backend/app.py', import.meta.url));
/** Debian's Python, which has python3-psycopg2 (.ci/run installs it). */
const PYTHON = process.env['BANYAN_SYSTEM_PYTHON'] ?? '/usr/bin/python3';

/**
 * docs/protocol.md, proven from two languages: a Node app using
 * `readYourWrites` and the plain-Python backend of examples/python-backend,
 * behind the proxy, over a replica 2 s behind. A write through either is seen
 * by the same session's next read through the other, and not (yet) by a
 * session without the pin: the contract, not luck, makes the difference.
 */
describe('the read-your-writes protocol across a Node app and a plain-Python backend', function () {
  this.timeout(60_000);
  let router: DbRouter<IndexDatabase>;
  let node: Listening;
  let python: ChildProcess;
  let proxy: ProxyRuntime;

  before(async () => {
    const s = await services();
    await withClient(s.primaryUrl, (c) => c.query('CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)'));
    await waitForReplay(s);
    router = new DbRouter<IndexDatabase>({ primaryUrl: s.primaryUrl, replicaUrls: s.replicaUrls, name: 'protocol-test' });
    await router.start();
    const app = new Koa();
    const routes = new Router();
    routes.post('/node/notes', async (ctx) => {
      const banyan = ctx.state['banyan'] as ReadYourWritesState;
      let body = '';
      for await (const chunk of ctx.req) body += chunk;
      const row = (await (
        await banyan.db()
      ).writer
        .insertInto('notes' as never)
        .values({ body } as never)
        .returning('id' as never)
        .executeTakeFirstOrThrow()) as { id: number };
      await banyan.wrote();
      ctx.status = 201;
      ctx.body = { id: row.id };
    });
    routes.get('/node/notes/:id', async (ctx) => {
      const db = await (ctx.state['banyan'] as ReadYourWritesState).db();
      const r = await db.read((k) => sql<{ body: string }>`SELECT body FROM notes WHERE id = ${Number(ctx.params['id'])}`.execute(k));
      ctx.status = r.rows[0] ? 200 : 404;
      ctx.body = r.rows[0] ?? { error: 'no such note' };
    });
    app.use(readYourWrites({ router }));
    app.use(routes.routes());
    node = await listen(app.callback(), 0, '127.0.0.1', 'test');

    const port = await freePort();
    python = spawn(PYTHON, [PYTHON_BACKEND], {
      env: { ...process.env, DATABASE_URL: s.primaryUrl, DATABASE_REPLICA_URL: s.replicaUrls[0]!, PORT: String(port) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let errors = '';
    python.stderr!.on('data', (d) => {
      errors += d;
    });
    const pythonUrl = `http://127.0.0.1:${port}`;
    await waitUntil(
      `the Python backend answers (${errors})`,
      async () =>
        fetch(`${pythonUrl}/`).then(
          () => true,
          () => false,
        ),
      15_000,
    );
    await setRoutes(
      s,
      [
        { name: 'py.notes', match: { path: '/py/*' }, mode: 'legacy' },
        { name: 'node.notes', match: { path: '/node/*' }, mode: 'new' },
      ],
      'protocol: a Python legacy and a Node app',
    );
    proxy = await startTestProxy(s, pythonUrl, node.url, { redisUrl: null });
    await s.cluster.setReplicaDelay(2_000);
  });

  after(async () => {
    const s = await services();
    await s.cluster.setReplicaDelay(0);
    await waitForReplay(s, 10_000);
    await proxy?.stop();
    python?.kill('SIGTERM');
    await node?.close();
    await router?.close();
    await withClient(s.primaryUrl, (c) => c.query('DROP TABLE IF EXISTS notes'));
  });

  /** Writes through one backend; returns the note's id and the session's pin cookie. */
  async function write(via: 'node' | 'py', text: string): Promise<{ id: number; cookie: string }> {
    const res = await fetch(`${proxy.url}/${via}/notes`, { method: 'POST', body: text });
    expect(res.status).to.equal(201);
    expect(res.headers.get('x-banyan-write-lsn'), 'the write LSN is for the proxy only').to.equal(null);
    const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0]!;
    // The Node app reports the timeline with the LSN (a v2 pin); the Python backend, the LSN alone (v1), as before timelines.
    expect(cookie).to.match(via === 'node' ? /^banyan_pin=v2\./ : /^banyan_pin=v1\./);
    return { id: ((await res.json()) as { id: number }).id, cookie };
  }

  async function read(via: 'node' | 'py', id: number, cookie?: string): Promise<number> {
    const res = await fetch(`${proxy.url}/${via}/notes/${id}`, { headers: cookie ? { cookie } : {} });
    await res.text();
    return res.status;
  }

  it('a note written through the Node app is read back at once through the Python backend, by that session', async () => {
    const { id, cookie } = await write('node', 'from node');
    expect(await read('py', id), 'another session: the replica is 2 s behind').to.equal(404);
    expect(await read('py', id, cookie), "the writer's session: Python honours X-Banyan-Min-LSN").to.equal(200);
  });

  it('a note written through the Python backend is read back at once through the Node app, by that session', async () => {
    const { id, cookie } = await write('py', 'from python');
    expect(await read('node', id), 'another session: the replica is 2 s behind').to.equal(404);
    expect(await read('node', id, cookie), "the writer's session: Python reported X-Banyan-Write-LSN").to.equal(200);
  });
});
