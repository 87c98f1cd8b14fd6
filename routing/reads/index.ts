/**
 * Database reads with read-your-writes: the replica monitor and read router
 * (`db-router.ts`), resource fences in Redis (`fences.ts`), the Koa
 * middleware and helpers a backend uses (`read-your-writes.ts`), and the
 * positions background jobs carry (`jobs.ts`).
 */
export * from './db-router.js';
export * from './fences.js';
export * from './read-your-writes.js';
export * from './jobs.js';
