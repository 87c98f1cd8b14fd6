/**
 * `banyan/proxy`: create and run the strangler proxy. `startFileProxyRuntime`
 * runs it from a routes file alone (no database); `startProxyRuntime` with
 * its route table, pins and usage ledger in PostgreSQL; `createProxy` is the
 * Koa application itself, for embedding.
 */
export { createProxy, type Proxy, type ProxyOptions } from '../proxy/proxy.js';
export { startProxyRuntime, type ProxyRuntime, type ProxyRuntimeOptions } from '../proxy/runtime.js';
export { readRoutesFile, DEFAULT_ROUTES_FILE } from '../routing/table/index.js';
export { startFileProxyRuntime, FileRoutes, type FileProxyOptions, type FileProxyRuntime } from '../proxy/file-runtime.js';
export { createProxyMetrics, type ProxyMetrics } from '../metrics/catalog.js';
