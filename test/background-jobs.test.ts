import type { IndexDatabase } from '../package-index/schema.js';
import { expect } from 'chai';
import Router from '@koa/router';
import { Redis } from 'ioredis';
import Koa from 'koa';
import { sql } from 'kysely';
import { dbForJob, DbRouter, jobFence, positionForJob, readYourWrites, type JobPosition, type ReadYourWritesState } from '../api/db.js';
import { listen, type Listening } from '../lib/http-server.js';
import { services, waitForReplay, withClient } from './support/services.js';
import { waitUntil } from './support/wait.js';

const DELAY_MS = 2_000;

/**
 * banyan/db's background jobs, as GitLab's wal_locations: an upload queues a job in Redis with the
 * request's position, and a worker (its own router, as in another process) reads the upload with
 * `dbForJob`, on a replica 2 s behind.
 */
describe('background jobs read what the request that queued them wrote', function () {
  this.timeout(60_000);
  let web: DbRouter<IndexDatabase>;
  let worker: DbRouter<IndexDatabase>;
  let server: Listening;
  let queue: Redis;
  const name = `jobs:${process.pid}`;

  before(async () => {
    const s = await services();
    await withClient(s.primaryUrl, (c) => c.query('CREATE TABLE IF NOT EXISTS job_uploads (id serial PRIMARY KEY, body text NOT NULL)'));
    await waitForReplay(s);
    web = new DbRouter<IndexDatabase>({ primaryUrl: s.primaryUrl, replicaUrls: s.replicaUrls, name: 'jobs-web' });
    worker = new DbRouter<IndexDatabase>({ primaryUrl: s.primaryUrl, replicaUrls: s.replicaUrls, name: 'jobs-worker' });
    await web.start();
    await worker.start();
    queue = new Redis(s.redisUrl!);
    const routes = new Router();
    routes.post('/uploads', async (ctx) => {
      let body = '';
      for await (const chunk of ctx.req) body += chunk;
      const banyan = ctx.state['banyan'] as ReadYourWritesState;
      const row = (await (
        await banyan.db()
      ).writer
        .insertInto('job_uploads' as never)
        .values({ body } as never)
        .returning('id' as never)
        .executeTakeFirstOrThrow()) as { id: number };
      await banyan.wrote();
      // What crosses the queue is plain JSON: the upload's id and the request's position.
      await queue.lpush(name, JSON.stringify({ upload: row.id, position: await positionForJob(ctx) }));
      ctx.status = 201;
      ctx.body = { id: row.id };
    });
    const app = new Koa();
    app.use(readYourWrites({ router: web }));
    app.use(routes.routes());
    server = await listen(app.callback(), 0, '127.0.0.1', 'test');
    await s.cluster.setReplicaDelay(DELAY_MS);
  });

  after(async () => {
    const s = await services();
    await s.cluster.setReplicaDelay(0);
    await waitForReplay(s, 10_000);
    await server?.close();
    queue?.disconnect();
    await web?.close();
    await worker?.close();
    await withClient(s.primaryUrl, (c) => c.query('DROP TABLE IF EXISTS job_uploads'));
  });

  async function upload(text: string): Promise<number> {
    const res = await fetch(`${server.url}/uploads`, { method: 'POST', body: text });
    expect(res.status).to.equal(201);
    return ((await res.json()) as { id: number }).id;
  }

  /** The worker: takes the next job and reads its upload as `dbForJob` (or, to compare, an unfenced read) says. */
  async function work(honour = true): Promise<{ found: string | undefined; from: string; position: JobPosition }> {
    const taken = await queue.brpop(name, 5);
    expect(taken, 'a job was queued').to.not.equal(null);
    const job = JSON.parse(taken![1]) as { upload: number; position: JobPosition };
    const db = honour ? await dbForJob(worker, job.position) : await worker.forRequest();
    const r = await db.read((k) => sql<{ body: string }>`SELECT body FROM job_uploads WHERE id = ${job.upload}`.execute(k));
    return { found: r.rows[0]?.body, from: db.readTarget, position: job.position };
  }

  it('a job run at once after the upload reads it, from the primary while the replica has not replayed it', async () => {
    await upload('at once');
    const job = await work();
    expect(job.position.lsn).to.match(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(job.position.timeline).to.be.a('number');
    expect(job).to.deep.include({ found: 'at once', from: 'primary' });
  });

  it('the same job without its position reads the replica, which does not have the upload yet', async () => {
    await upload('unfenced');
    expect(await work(false)).to.deep.include({ found: undefined, from: 'replica-1' });
  });

  it('a job run once the replica has replayed the upload reads it there', async () => {
    await upload('later');
    await waitForReplay(await services(), 10_000);
    // The worker's monitor sees the replica's new position within its interval; the job waits for nothing else.
    await waitUntil(
      'the worker sees the replica caught up',
      async () => (await worker.forRequest({ minLsn: (await worker.currentLsn()) - 1n })).readTarget === 'replica-1',
      5_000,
    );
    expect(await work()).to.deep.include({ found: 'later', from: 'replica-1' });
  });

  it('a position that is not one is refused with what is wrong, never read as no position', () => {
    expect(() => jobFence({ lsn: 'yesterday' })).to.throw(/"lsn" is a WAL position like 0\/16B3748, not "yesterday"/);
    expect(() => jobFence({ lsn: '0/16B3748', timeline: -1 })).to.throw(/"timeline" is a positive whole number, not -1/);
    expect(() => jobFence('0/16B3748')).to.throw(/a job's position is \{ "lsn"/);
    expect(jobFence({ lsn: '0/16B3748', timeline: 2 })).to.deep.equal({ minLsn: 0x16b3748n, timeline: 2 });
  });
});
