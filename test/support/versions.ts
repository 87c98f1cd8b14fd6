import { sortKey, type Version } from '../../package-index/pep440.js';

/** PEP 440 order as the index stores it (`sort_key`): negative, zero (equal under PEP 440) or positive. */
export function byVersion(a: Version, b: Version): number {
  const ka = sortKey(a);
  const kb = sortKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
