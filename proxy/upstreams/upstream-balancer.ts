/**
 * Which endpoint of an upstream takes a request: pure functions of the
 * endpoints, the time and (for least-request) a random source, so tests pick
 * deterministically. They run on every request, so each is a few passes over
 * the endpoint array with plain loops: no closures, arrays or objects per pick.
 */

/** What the balancer reads of an endpoint. */
export interface Balanced {
  readonly url: string;
  /** Requests sent to it that have not finished. */
  readonly inFlight: number;
  /** Whether it may take a request now. */
  available(now: number): boolean;
  /** Its share of traffic relative to the others, in (0, 1]. */
  weight(now: number): number;
}

/** The lowest weight of slow start: an endpoint that just came back gets a tenth of its share. */
export const SLOW_START_FLOOR = 0.1;

/** The weight of an endpoint `ageMs` after it joined or came back: from a tenth to all of it, linearly over `slowStartMs`. */
export function slowStartWeight(ageMs: number, slowStartMs: number): number {
  if (!(ageMs < slowStartMs)) return 1;
  if (ageMs <= 0) return SLOW_START_FLOOR;
  return SLOW_START_FLOOR + ((1 - SLOW_START_FLOOR) * ageMs) / slowStartMs;
}

/**
 * Least request, as power of two choices: two distinct endpoints chosen at
 * random in proportion to their weights, and of those the one with fewer
 * requests in flight per unit of weight. Unlike "the least busy of all", it
 * does not send every new proxy's first burst to the same idle endpoint.
 */
export function pickLeastRequest<E extends Balanced>(
  endpoints: readonly E[],
  now: number,
  random: () => number,
  exclude?: E,
): E | undefined {
  let total = 0;
  let count = 0;
  let only: E | undefined;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i]!;
    if (e === exclude || !e.available(now)) continue;
    total += e.weight(now);
    count++;
    only = e;
  }
  if (count <= 1) return only;
  const first = weightedAt(endpoints, now, exclude, undefined, random() * total);
  const firstWeight = first.weight(now);
  const second = weightedAt(endpoints, now, exclude, first, random() * (total - firstWeight));
  return (second.inFlight + 1) / second.weight(now) < (first.inFlight + 1) / firstWeight ? second : first;
}

/** The eligible endpoint (neither `exclude` nor `skip`) at `target` along their summed weights; at least one is eligible. */
function weightedAt<E extends Balanced>(
  endpoints: readonly E[],
  now: number,
  exclude: E | undefined,
  skip: E | undefined,
  target: number,
): E {
  let last: E | undefined;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i]!;
    if (e === exclude || e === skip || !e.available(now)) continue;
    target -= e.weight(now);
    if (target < 0) return e;
    last = e;
  }
  // Rounding can leave a sliver of the total past the last endpoint.
  return last!;
}

/**
 * Smooth weighted round robin (nginx's): every pick adds each available
 * endpoint's weight to its running score and takes the highest, which then
 * gives back the total. Weights 5:1:1 give a a b a c a a, not a a a a a b c.
 * `current` holds the running scores, one per endpoint, kept by the caller
 * between picks (zeros when the endpoints change).
 */
export function pickRoundRobin<E extends Balanced>(
  endpoints: readonly E[],
  current: Float64Array,
  now: number,
  exclude?: E,
): E | undefined {
  let total = 0;
  let best = -1;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i]!;
    if (e === exclude || !e.available(now)) continue;
    const w = e.weight(now);
    current[i] = current[i]! + w;
    total += w;
    if (best < 0 || current[i]! > current[best]!) best = i;
  }
  if (best < 0) return undefined;
  current[best] = current[best]! - total;
  return endpoints[best];
}

/**
 * Rendezvous (highest random weight) hashing: each available endpoint scores
 * a hash of the session key with its URL, and the highest wins. A session
 * stays on its endpoint while that is available; when it is not, only its
 * sessions move, each to its next-highest. Weights are ignored on purpose:
 * slow start changing them would move sessions.
 */
export function pickBySession<E extends Balanced>(endpoints: readonly E[], sessionKey: string, now: number, exclude?: E): E | undefined {
  const seed = fnv1a(0x811c9dc5, sessionKey);
  let best: E | undefined;
  let bestScore = -1;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i]!;
    if (e === exclude || !e.available(now)) continue;
    const score = avalanche(fnv1a(seed, e.url));
    if (score > bestScore) {
      best = e;
      bestScore = score;
    }
  }
  return best;
}

function fnv1a(hash: number, text: string): number {
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash;
}

/** murmur3's finaliser: FNV alone barely changes its high bits for URLs that differ only in their last characters. */
function avalanche(hash: number): number {
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}
