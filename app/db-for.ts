import type { IndexDatabase } from '../package-index/schema.js';
import type Koa from 'koa';
import type { RequestDb } from '../routing/reads/index.js';

/**
 * A request's DB handle, chosen on first use: reads declaring resources
 * (`project:<name>`) also wait for those resources' fences. The app
 * (`app.ts`) makes it; every route module takes it.
 */
export type DbFor = (ctx: Koa.Context, resources?: readonly string[]) => Promise<RequestDb<IndexDatabase>>;
