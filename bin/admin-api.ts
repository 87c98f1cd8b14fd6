import { loadSettings, required } from '../lib/config.js';
import { BanyanError } from '../lib/errors.js';

/** GET `path` from the running proxy's admin API (BANYAN_ADMIN_URL, BANYAN_ADMIN_TOKEN, or the local stack's), as JSON. */
export async function askAdmin(path: string): Promise<Record<string, unknown>> {
  const settings = loadSettings();
  const admin = required(settings.adminUrl, 'BANYAN_ADMIN_URL', 'to ask the proxy');
  const token = required(settings.adminToken, 'BANYAN_ADMIN_TOKEN', 'to use the admin API');
  let res: Response;
  try {
    res = await fetch(`${admin}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5_000) });
  } catch (err) {
    throw new BanyanError(
      'proxy-unreachable',
      `cannot reach the proxy's admin API at ${admin}: ${(err as Error).message}`,
      'is the proxy running? check BANYAN_ADMIN_URL',
    );
  }
  const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (!res.ok) {
    throw new BanyanError(
      res.status === 404 ? 'not-found' : 'admin-refused',
      `the admin API answered ${res.status}: ${String(body['message'] ?? '')}`,
      typeof body['hint'] === 'string' ? body['hint'] : undefined,
    );
  }
  return body;
}
