/**
 * The HTTP route table: what a route is and how a table is validated
 * (`route-table.ts`), compiled and matched, and how a request is decided;
 * the feature extractors a route declares (`route-features.ts`); one route's
 * change (`route-change.ts`); versions in PostgreSQL (`route-store.ts`),
 * followed by every proxy (`route-sync.ts`); and routes files (`route-file.ts`).
 */
export * from './route-table.js';
export * from './upstreams.js';
export * from './upstream-validation.js';
export * from './route-validation.js';
export * from './route-features.js';
export * from './route-change.js';
export * from './route-store.js';
export * from './route-sync.js';
export * from './route-file.js';
