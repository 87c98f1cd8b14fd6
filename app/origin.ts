import type Koa from 'koa';

/** Where absolute URLs point: BANYAN_PUBLIC_URL, and whether X-Forwarded-Host is believed without it. */
export interface OriginSettings {
  readonly publicUrl?: string | undefined;
  readonly trustForwardedHost?: boolean | undefined;
}

/**
 * Where this index is, for the absolute file URLs of the JSON API (Warehouse's are absolute, so
 * `requests.get(url)` works as it is): BANYAN_PUBLIC_URL when set. Otherwise the Host the client
 * used (X-Forwarded-Host only when BANYAN_TRUST_FORWARDED_HOST says so), and the answer varies on
 * it: a cache never gives one client's Host to another. The scheme is X-Forwarded-Proto's (the
 * proxy sets it), else the request's.
 */
export function origin(ctx: Koa.Context): string {
  const settings = (ctx.state['origin'] ?? {}) as OriginSettings;
  if (settings.publicUrl) return settings.publicUrl;
  ctx.vary('Host');
  const forwarded = settings.trustForwardedHost ? ctx.get('X-Forwarded-Host').split(',')[0]!.trim() : '';
  if (settings.trustForwardedHost) ctx.vary('X-Forwarded-Host');
  const proto = ctx.get('X-Forwarded-Proto').split(',')[0]!.trim() || ctx.protocol;
  // Not ctx.host: with app.proxy on, Koa takes X-Forwarded-Host from anyone.
  const host = forwarded || ctx.get('Host');
  const safe = /^(https?)$/.test(proto) && /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host);
  return safe ? `${proto}://${host}` : '';
}
