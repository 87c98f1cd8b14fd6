/**
 * `banyan/db`: read-your-writes for your own backend. Reads go to PostgreSQL
 * streaming replicas that have replayed what the request must see (the
 * proxy's `X-Banyan-Min-LSN`, and resource fences), writes to the primary;
 * docs/protocol.md states the contract.
 *
 * ```js
 * import { DbRouter, readYourWrites } from 'banyan/db';
 * const router = new DbRouter({ primaryUrl, replicaUrls: [replicaUrl] });
 * await router.start();
 * app.use(readYourWrites({ router }));   // ctx.state.banyan.db(), ctx.state.banyan.wrote()
 *
 * // A background job reads what the request that queued it wrote:
 * await queue.push({ upload: id, position: await positionForJob(ctx) });
 * const db = await dbForJob(router, job.position);   // a replica that has it, else the primary
 * ```
 */
export {
  DbRouter,
  fenceFromHeader,
  isRecoveryConflict,
  type DbRouterOptions,
  type ReadFence,
  type ReadReason,
  type ReplicaState,
  type RequestDb,
} from '../routing/reads/index.js';
export { FenceStore, requestFence, type FenceStoreOptions, type FencesWhenDown } from '../routing/reads/index.js';
export {
  dbForRequest,
  readReporter,
  readYourWrites,
  reportWrite,
  type ReadObserver,
  type ReadYourWritesOptions,
  type ReadYourWritesState,
} from '../routing/reads/index.js';
export { dbForJob, jobFence, jobPosition, positionForJob, type JobPosition } from '../routing/reads/index.js';
export { connect } from '../lib/database.js';
export { formatLsn, parseLsn } from '../lib/lsn.js';
