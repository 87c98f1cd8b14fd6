import type { Route } from '../routing/table/index.js';

/** Signs the pin cookie every benchmark request carries, so Banyan's pin check runs on each. */
export const BENCH_SECRET = 'bench-secret-0123456789abcdef';

/** The path every contestant is asked for: a legacy project page, matched by a parameterized route. */
export const BENCH_PATH = '/pypi/project-500/json';

/**
 * A realistic table of `count` routes (at least 10): literal, parameterized,
 * wildcard, method- and query-conditioned routes across many prefixes, with
 * the benchmarked route among them.
 */
export function benchRoutes(count: number): Route[] {
  const routes: Route[] = [
    {
      name: 'legacy.project_json',
      match: { path: '/pypi/:project/json' },
      mode: 'legacy',
      features: [{ query: ':action', known: ['display'] }],
    },
    { name: 'simple.index', match: { path: '/simple/' }, mode: 'new', fallback: true },
    { name: 'simple.detail', match: { path: '/simple/:project/' }, mode: 'new', fallback: true },
    {
      name: 'legacy.rss',
      match: { path: '/pypi', query: { ':action': 'rss' } },
      mode: 'retired',
      retired: { status: 410, message: 'gone' },
    },
    { name: 'legacy.xmlrpc', match: { path: '/pypi', methods: ['POST'] }, mode: 'shadow' },
    { name: 'legacy.pypi', match: { path: '/pypi' }, mode: 'legacy' },
    { name: 'legacy.project', match: { path: '/pypi/:project' }, mode: 'legacy' },
    { name: 'packages', match: { path: '/packages/*' }, mode: 'canary', percent: 10 },
    { name: 'legacy.home', match: { path: '/' }, mode: 'legacy' },
    { name: 'legacy.search', match: { path: '/search' }, mode: 'legacy' },
  ];
  for (let i = 0; routes.length < count; i++) {
    const shape = i % 5;
    const path =
      shape === 0
        ? `/feature${i}/:id`
        : shape === 1
          ? `/area${i % 40}/section${i}/*`
          : shape === 2
            ? `/pypi/:project/extra${i}`
            : shape === 3
              ? `/api/v${i % 7}/items${i}/:item/detail`
              : `/static/r${i}/:file`;
    routes.push({ name: `bench.r${i}`, match: { path, ...(i % 3 === 0 ? { methods: ['GET'] } : {}) }, mode: i % 2 ? 'legacy' : 'new' });
  }
  return routes.slice(0, Math.max(count, 10));
}
