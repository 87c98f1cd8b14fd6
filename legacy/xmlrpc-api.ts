import type { IndexDatabase } from '../package-index/schema.js';
import type { IncomingMessage } from 'node:http';
import { sql } from 'kysely';
import { readUpTo } from '../lib/form-body.js';
import { normalizeName } from '../package-index/names.js';
import { INDEX_RESOURCE, projectResource } from '../package-index/write-announcer.js';
import type { RequestDb } from '../routing/reads/index.js';
import {
  faultResponse,
  INVALID_PARAMS,
  METHOD_NOT_FOUND,
  methodResponse,
  parseMethodCall,
  PARSE_ERROR,
  XmlRpcFault,
  type XmlRpcValue,
} from './xmlrpc.js';

const MAX_BODY = 1024 * 1024;

/** Each term is one ILIKE over every project: a search of thousands would hold a connection for minutes. */
const MAX_SEARCH_TERMS = 20;
const MAX_TERM_LENGTH = 200;

/** Opens the call's database handle; reads of a project declare it, so they wait for its fence. */
type OpenDb = (resources: readonly string[]) => Promise<RequestDb<IndexDatabase>>;
type Method = (open: OpenDb, params: XmlRpcValue[]) => Promise<XmlRpcValue>;

function str(params: XmlRpcValue[], i: number, what: string): string {
  const v = params[i];
  if (typeof v !== 'string') throw new XmlRpcFault(INVALID_PARAMS, `parameter ${i + 1} (${what}) must be a string`);
  return v;
}

function arity(params: XmlRpcValue[], min: number, max: number, signature: string): void {
  if (params.length < min || params.length > max) {
    throw new XmlRpcFault(
      INVALID_PARAMS,
      `wrong number of parameters: ${signature} takes ${min === max ? min : `${min} to ${max}`}, got ${params.length}`,
    );
  }
}

/** The project named by parameter `i`, normalized, and the handle that has seen every write to it. */
async function forProject(open: OpenDb, params: XmlRpcValue[], i: number): Promise<{ db: RequestDb<IndexDatabase>; name: string }> {
  const name = normalizeName(str(params, i, 'name'));
  return { db: await open([projectResource(name)]), name };
}

/** The old index's XML-RPC methods, as PyPI documented them. */
const METHODS: Record<string, Method> = {
  async list_packages(open, params) {
    arity(params, 0, 0, 'list_packages()');
    const db = await open([INDEX_RESOURCE]);
    const { rows } = await db.read((r) => sql<{ name: string }>`SELECT name FROM projects ORDER BY normalized_name`.execute(r));
    return rows.map((row) => row.name);
  },

  async package_releases(open, params) {
    arity(params, 1, 2, 'package_releases(name, show_hidden=False)');
    const { db, name } = await forProject(open, params, 0);
    const showHidden = params[1] === true;
    const { rows } = await db.read((r) =>
      sql<{ version: string }>`
      SELECT r.version FROM releases r JOIN projects p ON p.id = r.project_id
       WHERE p.normalized_name = ${name} AND (${showHidden} OR NOT r.yanked)
       ORDER BY r.sort_key DESC ${showHidden ? sql.raw('') : sql.raw('LIMIT 1')}`.execute(r),
    );
    return rows.map((row) => row.version);
  },

  async release_urls(open, params) {
    arity(params, 2, 2, 'release_urls(name, version)');
    const { db, name } = await forProject(open, params, 0);
    const { rows } = await db.read((r) =>
      sql<{
        filename: string;
        packagetype: string;
        python_version: string;
        size: string;
        sha256_digest: string;
        path: string;
        upload_time: Date;
        requires_python: string | null;
      }>`
      SELECT f.filename, f.packagetype, f.python_version, f.size, f.sha256_digest, f.path, f.upload_time, f.requires_python
        FROM files f JOIN releases r ON r.id = f.release_id JOIN projects p ON p.id = r.project_id
       WHERE p.normalized_name = ${name} AND r.version = ${str(params, 1, 'version')}
       ORDER BY f.filename`.execute(r),
    );
    return rows.map((f) => ({
      filename: f.filename,
      packagetype: f.packagetype,
      python_version: f.python_version,
      size: Number(f.size),
      digests: { sha256: f.sha256_digest },
      sha256_digest: f.sha256_digest,
      url: `/packages/${f.path}`,
      upload_time: f.upload_time,
      has_sig: false,
      comment_text: '',
      requires_python: f.requires_python ?? '',
    }));
  },

  async release_data(open, params) {
    arity(params, 2, 2, 'release_data(name, version)');
    const { db, name } = await forProject(open, params, 0);
    const { rows } = await db.read((r) =>
      sql<{ name: string; version: string; summary: string | null; requires_python: string | null; metadata: Record<string, unknown> }>`
      SELECT p.name, r.version, r.summary, r.requires_python, r.metadata
        FROM releases r JOIN projects p ON p.id = r.project_id
       WHERE p.normalized_name = ${name} AND r.version = ${str(params, 1, 'version')}`.execute(r),
    );
    const row = rows[0];
    // The old API answered an unknown release with an empty struct, not a fault.
    if (!row) return {} as Record<string, XmlRpcValue>;
    const m = row.metadata;
    const text = (k: string) => (typeof m[k] === 'string' ? m[k] : '');
    const list = (k: string) => (Array.isArray(m[k]) ? (m[k] as string[]) : []);
    return {
      name: row.name,
      version: row.version,
      summary: row.summary ?? '',
      requires_python: row.requires_python ?? '',
      author: text('author'),
      author_email: text('author_email'),
      license: text('license'),
      home_page: text('home_page'),
      keywords: text('keywords'),
      description: text('description'),
      classifiers: list('classifiers'),
      requires_dist: list('requires_dist'),
      package_url: `/pypi/${row.name}`,
      release_url: `/pypi/${row.name}/${row.version}`,
    };
  },

  async search(open, params) {
    arity(params, 1, 2, "search(spec, operator='and')");
    const spec = params[0];
    if (!spec || typeof spec !== 'object' || Array.isArray(spec) || spec instanceof Date) {
      throw new XmlRpcFault(INVALID_PARAMS, "search's spec must be a struct such as {'name': 'foo'}");
    }
    const operator = params[1] ?? 'and';
    if (operator !== 'and' && operator !== 'or')
      throw new XmlRpcFault(INVALID_PARAMS, `operator must be 'and' or 'or', not ${JSON.stringify(operator)}`);
    const conditions = [];
    for (const [field, value] of Object.entries(spec)) {
      if (field !== 'name' && field !== 'summary') throw new XmlRpcFault(INVALID_PARAMS, `search can match name or summary, not ${field}`);
      const terms = (Array.isArray(value) ? value : [value]).map(String);
      for (const term of terms) {
        if (conditions.length === MAX_SEARCH_TERMS) {
          throw new XmlRpcFault(INVALID_PARAMS, `search takes at most ${MAX_SEARCH_TERMS} terms in all`);
        }
        if (term.length > MAX_TERM_LENGTH)
          throw new XmlRpcFault(INVALID_PARAMS, `a search term may be at most ${MAX_TERM_LENGTH} characters`);
        const pattern = `%${term.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
        conditions.push(field === 'name' ? sql`p.name ILIKE ${pattern}` : sql`r.summary ILIKE ${pattern}`);
      }
    }
    if (conditions.length === 0) return [];
    const db = await open([INDEX_RESOURCE]);
    const where = sql.join(conditions, operator === 'and' ? sql` AND ` : sql` OR `);
    const { rows } = await db.read((r) =>
      sql<{ name: string; version: string; summary: string | null }>`
      SELECT DISTINCT ON (p.id) p.name, r.version, r.summary FROM projects p JOIN releases r ON r.project_id = p.id
       WHERE ${where} ORDER BY p.id, r.sort_key DESC LIMIT 100`.execute(r),
    );
    return rows.map((row, i) => ({ name: row.name, version: row.version, summary: row.summary ?? '', _pypi_ordering: i }));
  },

  async changelog(open, params) {
    arity(params, 1, 2, 'changelog(since, with_ids=False)');
    const db = await open([INDEX_RESOURCE]);
    const since = params[0];
    if (typeof since !== 'number') throw new XmlRpcFault(INVALID_PARAMS, 'parameter 1 (since) must be an integer Unix time');
    const withIds = params[1] === true;
    const { rows } = await db.read((r) =>
      sql<{ id: string; project_name: string; version: string | null; submitted_at: Date; action: string }>`
      SELECT id, project_name, version, submitted_at, action FROM journal
       WHERE submitted_at >= to_timestamp(${since}) ORDER BY id LIMIT 50000`.execute(r),
    );
    return rows.map((j) => {
      const entry: XmlRpcValue[] = [j.project_name, j.version, Math.floor(j.submitted_at.getTime() / 1000), j.action];
      if (withIds) entry.push(Number(j.id));
      return entry;
    });
  },
};

/** Answers one XML-RPC request body: a methodResponse, or a fault for a bad call. */
export async function xmlRpc(open: OpenDb, req: IncomingMessage): Promise<string> {
  const bytes = await readUpTo(req, MAX_BODY);
  if (!bytes) return faultResponse(new XmlRpcFault(PARSE_ERROR, `request over ${MAX_BODY} bytes`));
  try {
    const call = parseMethodCall(bytes.toString('utf8'));
    const method = Object.hasOwn(METHODS, call.method) ? METHODS[call.method] : undefined;
    if (!method) {
      throw new XmlRpcFault(METHOD_NOT_FOUND, `method "${call.method}" is not supported; try ${Object.keys(METHODS).join(', ')}`);
    }
    return methodResponse(await method(open, call.params));
  } catch (err) {
    if (err instanceof XmlRpcFault) return faultResponse(err);
    throw err;
  }
}
