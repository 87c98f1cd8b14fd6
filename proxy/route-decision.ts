/**
 * Which route a request belongs to and who answers it: the route table's
 * decision, with the canary side of the request's session, and a staff
 * browser's preview of one route on the new app.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { canaryBucket, type CompiledTable, decide, type Decision, DEFAULT_SERVICE } from '../routing/table/index.js';
import { plain } from './answers.js';
import { newSession, SESSION_COOKIE, sessionBucket } from './canary-session.js';
import type { ClientInfo } from './headers.js';
import { cookieValue } from './pin.js';
import { PREVIEW_COOKIE, safeNext, verifyPreview } from './preview.js';

export class RouteDecider {
  readonly #table: { readonly current: CompiledTable };
  readonly #sessionCookie: string | undefined;
  /** BANYAN_SECRET's list: previews are signed with it (none: previews are off). */
  readonly #secrets: readonly string[] | undefined;

  constructor(table: { readonly current: CompiledTable }, sessionCookie: string | undefined, secrets: readonly string[] | undefined) {
    this.#table = table;
    this.#sessionCookie = sessionCookie;
    this.#secrets = secrets;
  }

  /**
   * The route and target of a request; `minted` is a new session id when the request had none and the
   * route needed its canary side. A previewing browser goes to the new app on its route only.
   */
  decide(req: IncomingMessage, client: ClientInfo): Decision & { readonly minted?: string } {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q + 1);
    this.#asking = req;
    this.#client = client;
    this.#minted = undefined;
    let decision: Decision & { minted?: string } = decide(
      this.#table.current,
      req.method ?? 'GET',
      req.headers.host,
      path,
      query,
      req.headers,
      this.#bucket,
      Date.now(),
    );
    this.#asking = undefined;
    if (decision.target !== 'new' && decision.spec && this.#previewedRoute(req) === decision.route) {
      decision = { ...decision, target: 'new', service: decision.spec.service ?? DEFAULT_SERVICE };
    }
    if (this.#minted !== undefined) decision = { ...decision, minted: this.#minted };
    return decision;
  }

  // The request being decided, for #bucket: one function made once, not a closure per request.
  #asking: IncomingMessage | undefined;
  #client: ClientInfo | undefined;
  #minted: string | undefined;
  readonly #bucket = (): number => this.#bucketOf(this.#asking!, this.#client!);

  /**
   * The canary bucket of a request: the one its `banyan_sid` carries, else the
   * configured legacy session cookie's, else the client address's. A request
   * without a session cookie gets one minted with that bucket, so a
   * browser keeps its side for the session's life, through writes and pin
   * expiry; a client that keeps no cookies stays keyed by its address.
   */
  #bucketOf(req: IncomingMessage, client: ClientInfo): number {
    const cookies = req.headers.cookie;
    const sid = cookieValue(cookies, SESSION_COOKIE);
    const carried = sid === undefined ? undefined : sessionBucket(sid, this.#secrets);
    if (carried !== undefined) return carried;
    const legacySession = this.#sessionCookie ? cookieValue(cookies, this.#sessionCookie) : undefined;
    const bucket = canaryBucket(legacySession ?? client.ip);
    this.#minted = newSession(bucket, this.#secrets?.[0]);
    return bucket;
  }

  /**
   * The key that keeps a session together beyond the canary: the `banyan_sid` it carries, else the
   * configured legacy session cookie, else the client address. Sampled shadows and upstreams that keep a
   * session on one endpoint use it; nothing is minted for them.
   */
  sessionKey(req: IncomingMessage, client: ClientInfo): string {
    const cookies = req.headers.cookie;
    const sid = cookieValue(cookies, SESSION_COOKIE);
    // A hand-made banyan_sid is not a session of ours: it chooses no sample and no endpoint.
    if (sid !== undefined && sessionBucket(sid, this.#secrets) !== undefined) return sid;
    return (this.#sessionCookie ? cookieValue(cookies, this.#sessionCookie) : undefined) ?? client.ip;
  }

  #previewedRoute(req: IncomingMessage): string | undefined {
    if (!this.#secrets) return undefined;
    const token = cookieValue(req.headers.cookie, PREVIEW_COOKIE);
    return token ? verifyPreview(token, this.#secrets, Date.now())?.route : undefined;
  }

  /**
   * `GET /_banyan/preview?token=…&next=/path`: the link `banyan routes preview` prints; sets the cookie
   * (`Secure` when the client came over TLS) and goes on, on this site only.
   */
  openPreview(req: IncomingMessage, res: ServerResponse, requestId: string, secure: boolean): void {
    const params = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
    const token = params.get('token') ?? '';
    const preview = this.#secrets ? verifyPreview(token, this.#secrets, Date.now()) : undefined;
    if (!preview) {
      plain(
        res,
        400,
        `400 This preview link is not valid${this.#secrets ? ' or has expired' : ' (BANYAN_SECRET is not set)'}. Ask for a new one: banyan routes preview ROUTE.\nRequest id: ${requestId}\n`,
        requestId,
      );
      return;
    }
    const maxAge = Math.ceil((preview.expires - Date.now()) / 1000);
    res.writeHead(303, {
      location: safeNext(params.get('next') ?? undefined),
      'x-request-id': requestId,
      'content-length': '0',
      'cache-control': 'no-store',
      'set-cookie': `${PREVIEW_COOKIE}=${token}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`,
    });
    res.end();
  }
}
