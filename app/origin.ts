import type Koa from 'koa';

/**
 * Where this index is, as the client reached it: behind the proxy, from the X-Forwarded-Proto and
 * X-Forwarded-Host it sets (it drops any a client sends); else from the request itself. File URLs
 * in the JSON API are absolute, as Warehouse's are, so `requests.get(url)` works as it is.
 */
export function origin(ctx: Koa.Context): string {
  const proto = ctx.get('X-Forwarded-Proto').split(',')[0]!.trim() || ctx.protocol;
  const host = ctx.get('X-Forwarded-Host').split(',')[0]!.trim() || ctx.host;
  const safe = /^(https?)$/.test(proto) && /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(host);
  return safe ? `${proto}://${host}` : '';
}
