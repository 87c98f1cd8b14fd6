import type { IndexDatabase } from '../package-index/schema.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { escapeHtml } from '../lib/html.js';
import type { RequestDb } from '../routing/reads/index.js';

/** One request as the old index's handlers see it. */
export interface LegacyRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  /**
   * The request's database handle, chosen on first use: writes on the
   * primary, reads on a replica that has replayed both the session's pin and
   * the fences of `resources` (`project:<name>`), as the new app does.
   */
  db(resources?: readonly string[]): Promise<RequestDb<IndexDatabase>>;
  /** The handler the URL map chose (`legacy.simple.detail`), for spans and the query log. */
  handler?: string;
}

/** Sends a whole answer; HEAD gets the headers only. */
export function send(res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  const charset = typeof body === 'string' ? '; charset=utf-8' : '';
  res.writeHead(status, { 'Content-Type': `${type}${charset}`, 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** The old index's page frame: a table layout and a header bar, as 2000s PyPI had. */
export function layout(title: string, body: string): string {
  return (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">\n' +
    `<html><head><title>${escapeHtml(title)}</title></head>\n` +
    `<body><div id="header">Legacy Package Index</div>\n<div id="content">\n${body}\n</div></body></html>\n`
  );
}

export function notFound(res: ServerResponse, what = 'There is no page here.'): void {
  send(res, 404, 'text/html', layout('Not Found', `<h1>Not Found</h1><p>${escapeHtml(what)}</p>`));
}

/** Status lines carry the message, as the old index's did (distutils and twine print them); plain ASCII only. */
export function statusText(message: string): string {
  return message.replace(/[^\x20-\x7e]/g, '?').slice(0, 500);
}
