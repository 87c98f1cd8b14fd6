import { reachable } from '../proxy/readiness.js';
import type { Route } from '../routing/table/index.js';

/** Where the backends are, as the command line knows them (APP_URL, LEGACY_URL, or the local stack's). */
export interface PreflightTargets {
  /** An endpoint of the service the route's new side goes to. */
  readonly appUrl: string | undefined;
  /** That service's name, for the warnings (default app: "the new app"). */
  readonly service?: string | undefined;
  readonly legacyUrl: string | undefined;
  /** A path to try on the backends, instead of one made from the route's pattern. */
  readonly sample?: string | undefined;
}

/** Which backends answer users on a route in a mode (`legacy` for a fallback too). */
function answering(route: Route): Set<'new' | 'legacy'> {
  switch (route.mode) {
    case 'new':
      return new Set(route.fallback ? ['new', 'legacy'] : ['new']);
    case 'canary':
      return new Set(['new', 'legacy']);
    case 'legacy':
    case 'shadow':
      return new Set(['legacy']);
    case 'retired':
      return new Set();
  }
}

/** A path the route's pattern matches, when it has no parameters; otherwise only `sample` can tell. */
function samplePath(route: Route, sample: string | undefined): string | undefined {
  if (sample) return sample;
  return /[:*]/.test(route.match.path) ? undefined : route.match.path;
}

async function statusOf(base: string, path: string): Promise<number | string> {
  try {
    const res = await fetch(new URL(path, base), { redirect: 'manual', signal: AbortSignal.timeout(5_000) });
    await res.arrayBuffer();
    return res.status;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * What could go wrong for users if `after` replaced `before`: a backend the
 * route would send users to (or fall back to) that is down, and a sample
 * path that the newly used backend answers with 404 (or an error) where the
 * backend used now answers it. Empty when nothing was found.
 */
export async function preflight(before: Route, after: Route, targets: PreflightTargets): Promise<string[]> {
  const warnings: string[] = [];
  const now = answering(before);
  const next = answering(after);
  const url = { new: targets.appUrl, legacy: targets.legacyUrl };
  const label = { new: !targets.service || targets.service === 'app' ? 'the new app' : `the ${targets.service} service`, legacy: 'legacy' };
  for (const backend of next) {
    const where = url[backend];
    if (!where) continue;
    const seen = await reachable(where, 2_000);
    if (!seen.ok) {
      const role = backend === 'legacy' && after.mode !== 'legacy' && after.mode !== 'shadow' ? 'falls back to' : 'sends users to';
      warnings.push(`${after.name} ${role} ${label[backend]}, which is down (${seen.detail})`);
    }
  }
  const path = samplePath(after, targets.sample);
  const gets = !after.match.methods || after.match.methods.includes('GET');
  const added = [...next].filter((b) => !now.has(b));
  const current = [...now][0];
  if (path && gets && added.length && current && url[current]) {
    const was = await statusOf(url[current]!, path);
    for (const backend of added) {
      if (!url[backend]) continue;
      const will = await statusOf(url[backend]!, path);
      const broken = typeof will === 'string' || will === 404 || will >= 500;
      if (broken && typeof was === 'number' && was < 400) {
        warnings.push(`${label[backend]} answers GET ${path} with ${will}, where ${label[current]} answers ${was}`);
      }
    }
  }
  return warnings;
}
