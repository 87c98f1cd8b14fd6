/**
 * Legacy features, not only paths: a route may declare extractors that name
 * what a request uses. `{"query": ":action"}` turns `?:action=rss` into
 * `action.rss`; `{"xmlrpc": true}` turns an XML-RPC call into
 * `xmlrpc.<methodName>`; `{"form": ":action"}` reads a form field of a POST
 * (urlencoded or multipart). Bodies are only peeked at (at most the first
 * 64 KiB) and then forwarded byte for byte.
 */

/**
 * Where a feature is read from, and optionally the values the route knows
 * (`known`: `["rss", "display"]`, `["search", "list_packages"]`). Known
 * values always keep their own name; other values share a small per-route
 * budget of names, then count as `<kind>.other`, so junk from anonymous
 * callers can never push real features out of the metrics or the ledger.
 */
export type FeatureExtractor = ({ readonly query: string } | { readonly xmlrpc: true } | { readonly form: string }) & {
  readonly known?: readonly string[];
};

/** Distinct unknown feature names a route may add to the metrics and ledger before the rest count as `<kind>.other`. */
export const UNKNOWN_FEATURES_PER_ROUTE = 20;

/**
 * Labels one route's features: known values by name, unknown ones by name
 * until the route's budget is spent, then `<kind>.other`. Built once per
 * route table version.
 */
export class FeatureLabels {
  readonly #known: ReadonlySet<string>;
  readonly #unknown: Set<string>;

  /** `previous`: the same route's labels in the last table version, whose spent budget carries over. */
  constructor(
    readonly extractors: readonly FeatureExtractor[],
    previous?: FeatureLabels,
    readonly budget = UNKNOWN_FEATURES_PER_ROUTE,
  ) {
    this.#unknown = previous ? previous.#unknown : new Set();
    const known = new Set<string>();
    for (const e of extractors) {
      const key = 'query' in e ? e.query : 'form' in e ? e.form : 'xmlrpc';
      for (const value of e.known ?? []) known.add(featureName(key, value));
    }
    this.#known = known;
  }

  label(feature: string): string {
    if (this.#known.has(feature) || this.#unknown.has(feature)) return feature;
    if (this.#unknown.size < this.budget) {
      this.#unknown.add(feature);
      return feature;
    }
    return `${feature.slice(0, feature.indexOf('.'))}.other`;
  }
}

/** How much of a body may be read to find a feature. */
export const PEEK_LIMIT = 64 * 1024;

/** `:action` → `action`; values are lower-cased, limited to [a-z0-9_.-] and 64 characters. */
export function featureName(key: string, value: string): string {
  const clean = (s: string) =>
    s
      .toLowerCase()
      .replace(/^[:_-]+/, '')
      .replace(/[^a-z0-9_.-]/g, '_')
      .slice(0, 64);
  return `${clean(key) || 'feature'}.${clean(value) || 'empty'}`;
}

/** Checks a route's `features` list; returns a problem per bad entry. */
export function checkExtractors(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0) return ['must be a non-empty list such as [{"query": ":action"}, {"xmlrpc": true}]'];
  const problems: string[] = [];
  value.forEach((e: unknown, i) => {
    const keys = e && typeof e === 'object' && !Array.isArray(e) ? Object.keys(e).filter((k) => k !== 'known') : [];
    const x = e as Record<string, unknown>;
    const ok =
      keys.length === 1 &&
      ((keys[0] === 'query' && typeof x['query'] === 'string' && x['query'] !== '') ||
        (keys[0] === 'form' && typeof x['form'] === 'string' && x['form'] !== '') ||
        (keys[0] === 'xmlrpc' && x['xmlrpc'] === true));
    if (!ok) problems.push(`[${i}] must be {"query": "<parameter>"}, {"form": "<field>"} or {"xmlrpc": true}`);
    else if (x['known'] !== undefined && (!Array.isArray(x['known']) || !x['known'].every((v) => typeof v === 'string' && v !== ''))) {
      problems.push(`[${i}].known must be a list of the values this route knows, such as ["rss", "display"]`);
    }
  });
  return problems;
}

/** Features from the query string (no body needed). */
export function queryFeatures(extractors: readonly FeatureExtractor[], query: string): string[] {
  if (!query) return [];
  let params: URLSearchParams | undefined;
  const out: string[] = [];
  for (const e of extractors) {
    if (!('query' in e)) continue;
    params ??= new URLSearchParams(query);
    const value = params.get(e.query);
    if (value !== null) out.push(featureName(e.query, value));
  }
  return out;
}

/** True when some extractor needs to see the body. */
export function readsBody(extractors: readonly FeatureExtractor[]): boolean {
  return extractors.some((e) => 'xmlrpc' in e || 'form' in e);
}

/**
 * Looks for a body feature in the bytes seen so far. `done` says whether
 * reading more could change the answer.
 */
export function bodyFeature(
  extractors: readonly FeatureExtractor[],
  contentType: string,
  seen: Buffer,
  ended: boolean,
): { feature: string | undefined; done: boolean } {
  const text = seen.subarray(0, PEEK_LIMIT).toString('latin1');
  let waiting = false;
  for (const e of extractors) {
    if ('xmlrpc' in e && /xml/i.test(contentType)) {
      const m = /<methodName>\s*([^<\s]{1,128})\s*<\/methodName>/.exec(text);
      if (m) return { feature: featureName('xmlrpc', m[1]!), done: true };
      if (!ended && !text.includes('</methodName>')) waiting = true;
    } else if ('form' in e) {
      if (/^multipart\/form-data/i.test(contentType)) {
        const escaped = e.form.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        const m = new RegExp(`name="${escaped}"\\r\\n(?:[^\\r\\n]+\\r\\n)*\\r\\n([^\\r\\n]{0,128})\\r\\n`).exec(text);
        if (m) return { feature: featureName(e.form, m[1]!), done: true };
        if (!ended) waiting = true;
      } else if (/^application\/x-www-form-urlencoded/i.test(contentType)) {
        // A value is complete once followed by '&' or the end of the body.
        const complete = ended ? text : text.slice(0, text.lastIndexOf('&') + 1);
        const value = new URLSearchParams(complete).get(e.form);
        if (value !== null) return { feature: featureName(e.form, value), done: true };
        if (!ended) waiting = true;
      }
    }
  }
  return { feature: undefined, done: !waiting || seen.length >= PEEK_LIMIT };
}
