import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BanyanError } from '../../lib/errors.js';

/** The routes file shipped with Banyan: the package index's upstreams and routes. */
export const DEFAULT_ROUTES_FILE = fileURLToPath(new URL('../../routes.json', import.meta.url));

/** A routes file's text; a missing file is refused with what to do. */
export function routesFileText(path: string): string {
  if (!statSync(path, { throwIfNoEntry: false })?.isFile()) {
    throw new BanyanError(
      'routes-file-missing',
      `routes file ${path} does not exist`,
      'set BANYAN_ROUTES_FILE to a JSON route table: {"upstreams": [...], "routes": [...]}, or a list of routes',
    );
  }
  return readFileSync(path, 'utf8');
}

/**
 * A routes file's JSON, or what is wrong with it. A routes file holds a table: `{"upstreams": [...],
 * "routes": [...]}`, or a bare list of routes (with the upstreams in effect); validateTable checks it.
 */
export function parseRoutesFile(path: string, text: string): { ok: true; value: unknown } | { ok: false; problem: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, problem: `${path} is not valid JSON: ${(err as Error).message}` };
  }
}

/** Reads and parses a routes file, or says what is wrong with it. */
export function readRoutesFile(path: string): unknown {
  const parsed = parseRoutesFile(path, routesFileText(path));
  if (!parsed.ok) throw new BanyanError('routes-file-invalid', `routes file ${parsed.problem}`);
  return parsed.value;
}
