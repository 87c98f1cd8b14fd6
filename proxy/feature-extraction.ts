/**
 * A legacy route's features (an `:action` parameter, an XML-RPC method, a
 * form field) read from each request, for the usage evidence. Query features
 * cost a scan of the query string; body features peek at the first bytes of
 * the body, which is then replayed to the backend whole.
 */

import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { type Decision, type FeatureExtractor, FeatureLabels, queryFeatures, readsBody } from '../routing/table/index.js';
import { hasBody, isSafe } from './headers.js';
import { peekFeature } from './peek.js';

const NO_FEATURES: readonly string[] = [];

export interface Extracted {
  readonly features: readonly string[];
  /** The body to forward instead of the request, when it was peeked at. */
  readonly body: Readable | Buffer | undefined;
}

const NOTHING: Extracted = { features: NO_FEATURES, body: undefined };

export class FeatureExtraction {
  // Per route: one route's junk cannot crowd out another's features. A new table version brings new
  // extractor objects (perhaps new known values); the route's spent budget carries over.
  readonly #labels = new Map<string, FeatureLabels>();

  /**
   * The request's features, labelled within the route's budget. A promise only when the body must be
   * peeked at (undefined when the client went away meanwhile): the usual request costs no await.
   */
  extract(req: IncomingMessage, decision: Decision, method: string, body?: Readable | Buffer): Extracted | Promise<Extracted | undefined> {
    const extractors = decision.spec?.features;
    if (!extractors) return NOTHING;
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const features = q < 0 ? NO_FEATURES : queryFeatures(extractors, url.slice(q + 1));
    if (readsBody(extractors) && !isSafe(method) && hasBody(req)) return this.#peek(req, decision.route, extractors, features, body);
    return this.#labelled(decision.route, extractors, features, undefined);
  }

  async #peek(
    req: IncomingMessage,
    route: string,
    extractors: readonly FeatureExtractor[],
    features: readonly string[],
    body: Readable | Buffer | undefined,
  ): Promise<Extracted | undefined> {
    try {
      const peeked = await peekFeature(req, extractors, body);
      return this.#labelled(route, extractors, peeked.feature ? [...features, peeked.feature] : features, peeked.body);
    } catch {
      return undefined;
    }
  }

  #labelled(
    route: string,
    extractors: readonly FeatureExtractor[],
    features: readonly string[],
    body: Readable | Buffer | undefined,
  ): Extracted {
    if (features.length) {
      const labels = this.#labelsFor(route, extractors);
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
