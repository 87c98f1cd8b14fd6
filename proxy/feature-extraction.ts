/**
 * A legacy route's features (an `:action` parameter, an XML-RPC method, a
 * form field) read from each request, for the usage evidence. Query features
 * cost a scan of the query string; body features peek at the first bytes of
 * the body, which is then replayed to the backend whole.
 */

import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { FeatureLabels, queryFeatures, readsBody, type FeatureExtractor } from '../routing/route-features.js';
import type { Decision } from '../routing/route-table.js';
import { hasBody } from './answers.js';
import { peekFeature } from './peek.js';

const NO_FEATURES: readonly string[] = [];
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface Extracted {
  readonly features: readonly string[];
  /** The body to forward instead of the request, when it was peeked at. */
  readonly body: Readable | undefined;
}

const NOTHING: Extracted = { features: NO_FEATURES, body: undefined };

export class FeatureExtraction {
  // Per route: one route's junk cannot crowd out another's features. A new table version brings new
  // extractor objects (perhaps new known values); the route's spent budget carries over.
  readonly #labels = new Map<string, FeatureLabels>();

  /** The request's features, labelled within the route's budget; undefined when the client went away while its body was peeked at. */
  async extract(req: IncomingMessage, decision: Decision, method: string): Promise<Extracted | undefined> {
    const extractors = decision.spec?.features;
    if (!extractors) return NOTHING;
    const url = req.url ?? '';
    const q = url.indexOf('?');
    let features = q < 0 ? NO_FEATURES : queryFeatures(extractors, url.slice(q + 1));
    let body: Readable | undefined;
    if (readsBody(extractors) && !SAFE.has(method) && hasBody(req)) {
      try {
        const peeked = await peekFeature(req, extractors);
        body = peeked.body;
        if (peeked.feature) features = [...features, peeked.feature];
      } catch {
        return undefined;
      }
    }
    if (features.length) {
      const labels = this.#labelsFor(decision.route, extractors);
      features = features.map((f) => labels.label(f));
    }
    return features.length || body ? { features, body } : NOTHING;
  }

  #labelsFor(route: string, extractors: readonly FeatureExtractor[]): FeatureLabels {
    let labels = this.#labels.get(route);
    if (labels?.extractors !== extractors) this.#labels.set(route, (labels = new FeatureLabels(extractors, labels)));
    return labels;
  }
}
