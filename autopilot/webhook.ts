/**
 * Posting the autopilot's events to a webhook. Each body is signed, as
 * Stripe and GitHub sign theirs, so a receiver can tell the autopilot from
 * anyone who learnt its URL: `Banyan-Signature: t=<unix seconds>,v1=<hex
 * HMAC-SHA256 of "<t>.<body>" keyed with BANYAN_SECRET>` (the newest secret
 * of the list). Redirects are not followed (a receiver that moved must be
 * configured anew, not followed somewhere else with the plan's events), and
 * the URL is logged without its query string, where tokens usually are.
 */

import { createHmac } from 'node:crypto';

export const SIGNATURE_HEADER = 'banyan-signature';

/** The Banyan-Signature value for `body` sent at `unixSeconds`. */
export function signWebhook(body: string, secret: string, unixSeconds: number): string {
  return `t=${unixSeconds},v1=${createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex')}`;
}

/** A webhook URL as logs may show it: scheme, host and path, no credentials, query or fragment. */
export function loggableUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(a malformed URL)';
  }
}

/** Posts `event` as JSON to `url`; failures are logged, never thrown, and nothing waits for the receiver. */
export function postEvent(
  url: string,
  event: unknown,
  options: { secret?: string | undefined; log: (line: string) => void; what: string },
): Promise<void> {
  const body = JSON.stringify(event);
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'banyan-autopilot' };
  if (options.secret) headers[SIGNATURE_HEADER] = signWebhook(body, options.secret, Math.floor(Date.now() / 1000));
  const shown = loggableUrl(url);
  return fetch(url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(5_000) }).then(
    (res) => {
      if (res.status >= 300 && res.status < 400)
        options.log(`autopilot: webhook ${shown} answered ${res.status} (a redirect, not followed) to ${options.what}`);
      else if (!res.ok) options.log(`autopilot: webhook ${shown} answered ${res.status} to ${options.what}`);
    },
    (err: Error) => {
      options.log(`autopilot: webhook ${shown} failed for ${options.what}: ${err.message.replaceAll(url, shown)}`);
    },
  );
}
