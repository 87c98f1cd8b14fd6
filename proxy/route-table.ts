/** Which backend answers a request. */
export type Backend = 'legacy' | 'new';

/** A route of the walking skeleton: a path prefix and the backend that serves it. */
export interface StaticRoute {
  readonly name: string;
  readonly prefix: string;
  readonly backend: Backend;
}

/** The result of matching a request: the route's stable name and its backend. */
export interface RouteDecision {
  readonly route: string;
  readonly backend: Backend;
}

/** The skeleton's table: the simple API is rewritten, everything else stays on legacy. */
export const DEFAULT_ROUTES: readonly StaticRoute[] = Object.freeze([
  { name: 'simple', prefix: '/simple/', backend: 'new' },
]);

/** Longest matching prefix wins; anything unmatched goes to legacy as `legacy.other`. */
export function decide(routes: readonly StaticRoute[], path: string): RouteDecision {
  let best: StaticRoute | undefined;
  for (const route of routes) {
    const matches = path === route.prefix || path.startsWith(route.prefix) || `${path}/` === route.prefix;
    if (matches && (!best || route.prefix.length > best.prefix.length)) best = route;
  }
  return best ? { route: best.name, backend: best.backend } : { route: 'legacy.other', backend: 'legacy' };
}
