import type { Mode, Route } from './route-table.js';

/** What an operator asks of one route; every field left out keeps its value. */
export interface RouteChange {
  readonly mode?: Mode | undefined;
  readonly percent?: number | undefined;
  /** The upstream that answers on the new side; kept across modes, like fallback. */
  readonly service?: string | undefined;
  /** `true` for legacy, or the name of another upstream. */
  readonly fallback?: boolean | string | undefined;
  readonly retired?: { readonly status?: number | undefined; readonly message?: string | undefined } | undefined;
}

const DEFAULT_RETIRED = { status: 410, message: 'This feature has been retired.' };

/**
 * One route changed the one way, whoever asks (the command line, the admin
 * API, the dashboard). Every field the operator did not mention is kept,
 * `service` and `fallback` included, so a route that goes back to legacy and
 * forward again comes back to the same service with its safety net. Only what the new mode cannot have is dropped: a
 * canary's percent outside canary, a retired answer outside retired (unless
 * brownouts still use it). A canary keeps its old percent unless given one
 * (none at all is refused by validation: no share is chosen silently); a
 * retired route without an answer gets 410. The result is checked with the
 * whole table by `validateTable`, as any change is.
 */
export function changeRoute(route: Route, change: RouteChange): Route {
  const mode = change.mode ?? route.mode;
  const next: Record<string, unknown> = { ...route, mode };
  if (change.service !== undefined) next['service'] = change.service;
  if (change.fallback !== undefined) next['fallback'] = change.fallback;
  const percent = change.percent ?? route.percent;
  if (mode === 'canary' && percent !== undefined) next['percent'] = percent;
  else delete next['percent'];
  if (change.retired || (mode === 'retired' && !route.retired)) {
    next['retired'] = {
      status: change.retired?.status ?? route.retired?.status ?? DEFAULT_RETIRED.status,
      message: change.retired?.message ?? route.retired?.message ?? DEFAULT_RETIRED.message,
    };
  }
  if (mode !== 'retired' && !route.brownouts) delete next['retired'];
  return next as unknown as Route;
}
