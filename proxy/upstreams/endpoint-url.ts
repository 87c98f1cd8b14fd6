/**
 * Endpoint URLs as operators write them: an origin (scheme, host, port) and
 * nothing else, because the proxy forwards each request's own path and query
 * to it. Pure, no I/O, so the route-table validator can use it too.
 */

/** What is wrong with `url` as an endpoint, in words an operator can act on; undefined when nothing is. */
export function endpointUrlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `${JSON.stringify(url)} is not a URL`;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return `${url} must start with http:// or https://`;
  if (parsed.hostname === '') return `${url} has no host`;
  if (parsed.username !== '' || parsed.password !== '') return `${url} must not carry credentials`;
  if (parsed.pathname !== '/') return `${url} must not have a path (the proxy forwards each request's own)`;
  if (parsed.search !== '' || parsed.hash !== '' || url.includes('?') || url.includes('#'))
    return `${url} must not have a query or fragment`;
  return undefined;
}

/**
 * The endpoints of a list, each as its origin (`http://127.0.0.1:8081`), so a
 * URL written with or without a trailing slash or a default port is one
 * endpoint; a list with any bad entry is refused whole.
 */
export function parseEndpoints(list: readonly string[]): { readonly urls: readonly string[] } | { readonly problem: string } {
  const urls: string[] = [];
  for (let i = 0; i < list.length; i++) {
    const problem = endpointUrlProblem(list[i]!);
    if (problem !== undefined) return { problem: list.length > 1 ? `entry ${i + 1}: ${problem}` : problem };
    const origin = new URL(list[i]!).origin;
    if (!urls.includes(origin)) urls.push(origin);
  }
  return urls.length === 0 ? { problem: 'it names no endpoint URL' } : { urls };
}

/** The endpoints of a comma list of URLs (what `APP_URL` holds), blanks around commas allowed. */
export function parseEndpointList(text: string): { readonly urls: readonly string[] } | { readonly problem: string } {
  return parseEndpoints(
    text
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  );
}
