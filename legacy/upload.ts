import busboy from 'busboy';
import { dropBody } from '../lib/form-body.js';
import { sql } from 'kysely';
import { authenticate, type Account } from '../package-index/accounts.js';
import { loginAddress, throttledMessage, type LoginThrottle } from '../lib/login-throttle.js';
import { createProject, uploadRefusal } from '../package-index/ownership.js';
import { storagePath, type FileStore, type Incoming } from '../lib/file-store.js';
import { isValidName, normalizeName } from '../package-index/names.js';
import { canonicalVersion, isPrerelease, normalizeVersion, parseVersion, sortKey } from '../package-index/pep440.js';
import { journal, lockProject, type WriteAnnouncer } from '../package-index/write-announcer.js';
import { send, statusText, type LegacyRequest } from './http.js';

/** What the old upload needs from the server. */
export interface LegacyUploadOptions {
  readonly store: FileStore;
  readonly announcer: WriteAnnouncer;
  readonly maxUploadBytes: number;
  /** New projects one account may create in an hour (BANYAN_PROJECTS_PER_HOUR). */
  readonly projectsPerHour: number;
  /** Password logins' throttle, shared with the new app through Redis. */
  readonly logins?: LoginThrottle | undefined;
}

class Refused extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Fields the old index kept from the form, beyond name and version. */
const KEPT = [
  'summary',
  'description',
  'author',
  'author_email',
  'license',
  'home_page',
  'keywords',
  'requires_python',
  'metadata_version',
];
const KEPT_LISTS = ['classifiers', 'requires_dist'];
const FIELD_LIMIT = 1024 * 1024;
const FIELD_COUNT = 300;

/**
 * The old upload, `:action=file_upload`, as distutils' `upload` command and
 * twine send it (at `/pypi` and `/legacy/`). The old index's checks: a known
 * user who owns the project, a valid name and version, a file named for
 * both, and a digest that matches. Success is `200 OK`; a refusal carries its
 * message in the status line, where twine shows it.
 */
export async function oldUpload(r: LegacyRequest, options: LegacyUploadOptions): Promise<void> {
  try {
    const db = await r.db();
    // Credentials first: an anonymous or wrong upload is refused before its file is read.
    const account = await authenticate(db.writer, r.req.headers.authorization, { throttle: options.logins, address: loginAddress(r.req) });
    if (account === 'missing' || account === 'malformed') {
      throw new Refused(401, 'Authentication required: send your username and password, or __token__ and an API token.', {
        'WWW-Authenticate': 'Basic realm="pypi"',
      });
    }
    if (account === 'invalid') throw new Refused(403, 'Invalid or non-existent authentication information.');
    if ('retryAfterSeconds' in account)
      throw new Refused(429, throttledMessage(account), { 'Retry-After': String(account.retryAfterSeconds) });
    const form = await readForm(r, options);
    try {
      const stored = await store(r, options, account, form);
      if (stored) await options.announcer.announce([stored.project], stored.created);
    } finally {
      if (form.content) await options.store.discard(form.content);
    }
    send(r.res, 200, 'text/plain', 'OK\n');
  } catch (err) {
    if (!(err instanceof Refused)) throw err;
    dropBody(r.req, r.res, { maxBytes: options.maxUploadBytes + 16 * 1024 * 1024 });
    r.res.statusMessage = statusText(err.message);
    send(r.res, err.status, 'text/plain', `Error: ${err.message}\n`, err.headers);
  }
}

interface Form {
  readonly fields: Map<string, string[]>;
  readonly content: (Incoming & { filename: string }) | undefined;
}

function readForm(r: LegacyRequest, options: LegacyUploadOptions): Promise<Form> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: r.req.headers,
        limits: { fields: FIELD_COUNT, fieldSize: FIELD_LIMIT, files: 5, parts: FIELD_COUNT + 5 },
      });
    } catch {
      reject(new Refused(400, 'The upload must be a multipart/form-data form.'));
      return;
    }
    const fields = new Map<string, string[]>();
    let content: Promise<Incoming & { filename: string }> | undefined;
    let refused: Refused | undefined;
    const refuse = (message: string) => {
      refused ??= new Refused(400, message);
    };
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) refuse(`The field ${name} is over ${FIELD_LIMIT} bytes.`);
      fields.set(name, [...(fields.get(name) ?? []), value]);
    });
    parser.on('fieldsLimit', () => refuse(`The form has more than ${FIELD_COUNT} fields.`));
    parser.on('partsLimit', () => refuse(`The form has more than ${FIELD_COUNT + 5} parts.`));
    parser.on('file', (name, stream, info) => {
      if (name !== 'content' || content) return stream.resume();
      content = options.store.receive(stream, options.maxUploadBytes).then((c) => ({ ...c, filename: info.filename ?? '' }));
      content.catch(() => {});
    });
    parser.on('error', (err: Error) => reject(new Refused(400, `The form could not be read: ${err.message}.`)));
    parser.on('close', () => {
      const done = (c: (Incoming & { filename: string }) | undefined) => {
        if (!refused) return resolve({ fields, content: c });
        if (c) void options.store.discard(c);
        reject(refused);
      };
      if (!content) return done(undefined);
      content.then(done, reject);
    });
    r.req.on('aborted', () => parser.destroy(new Error('the client went away')));
    r.req.pipe(parser);
  });
}

function field(form: Form, name: string): string {
  return (form.fields.get(name)?.[0] ?? '').trim();
}

/** Checks the form and stores file and rows in one transaction; undefined when the identical file was already there. */
async function store(
  r: LegacyRequest,
  options: LegacyUploadOptions,
  account: Account,
  form: Form,
): Promise<{ project: string; created: boolean } | undefined> {
  if (field(form, ':action') !== 'file_upload') throw new Refused(400, 'Unknown :action; use file_upload.');
  const name = field(form, 'name');
  if (!isValidName(name)) throw new Refused(400, `Invalid project name '${name}'.`);
  const version = parseVersion(field(form, 'version'));
  if (!version || version.local) throw new Refused(400, `Invalid version '${field(form, 'version')}': use a PEP 440 version.`);
  const filetype = field(form, 'filetype');
  if (filetype !== 'sdist' && filetype !== 'bdist_wheel')
    throw new Refused(400, `Invalid filetype '${filetype}': use sdist or bdist_wheel.`);
  const content = form.content;
  if (!content) throw new Refused(400, 'No file was uploaded (the content field is missing).');
  if (content.tooLarge) throw new Refused(400, `The file is over the limit of ${options.maxUploadBytes} bytes.`);
  const digest = field(form, 'sha256_digest').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(digest)) throw new Refused(400, 'A sha256_digest (64 hex digits) is required.');
  if (digest !== content.sha256) throw new Refused(400, 'The sha256_digest does not match the uploaded file.');
  const normalized = normalizeName(name);
  checkFilename(content.filename, normalized, filetype, canonicalVersion(version));
  const metadata: Record<string, unknown> = {};
  for (const key of KEPT) if (field(form, key) && field(form, key) !== 'UNKNOWN') metadata[key] = field(form, key);
  for (const key of KEPT_LISTS) {
    const values = (form.fields.get(key) ?? []).filter((v) => v.trim());
    if (values.length) metadata[key] = values;
  }
  const requiresPython = field(form, 'requires_python') || null;
  const path = storagePath(content.sha256, content.filename);
  const db = await r.db();
  let placed = false;
  try {
    return await db.writer.transaction().execute(async (trx) => {
      await lockProject(trx, normalized);
      const {
        rows: [project],
      } = await sql<{ id: string; name: string }>`SELECT id, name FROM projects WHERE normalized_name = ${normalized}`.execute(trx);
      const refusal = await uploadRefusal(trx, account, project, options.projectsPerHour);
      // The old index's words for a user without a role; the newer refusals keep theirs.
      if (refusal)
        throw new Refused(
          refusal.status,
          refusal.reason === 'forbidden' ? `You are not allowed to edit '${project!.name}' package information.` : refusal.message,
        );
      const created = !project;
      const projectId = project?.id ?? (await createProject(trx, account, name))!.id;
      const {
        rows: [existing],
      } = await sql<{ sha256_digest: string }>`SELECT sha256_digest FROM files WHERE filename = ${content.filename}`.execute(trx);
      if (existing) {
        if (existing.sha256_digest === content.sha256) return undefined;
        throw new Refused(400, 'File already exists. Use a new version number.');
      }
      let {
        rows: [release],
      } = await sql<{ id: string }>`
        SELECT id FROM releases WHERE project_id = ${projectId} AND canonical_version = ${canonicalVersion(version)}`.execute(trx);
      if (!release) {
        release = (
          await sql<{ id: string }>`
          INSERT INTO releases (project_id, version, canonical_version, sort_key, is_prerelease, summary, requires_python, metadata)
          VALUES (${projectId}, ${normalizeVersion(version)}, ${canonicalVersion(version)}, ${sortKey(version)}, ${isPrerelease(version)},
                  ${(metadata['summary'] as string | undefined) ?? null}, ${requiresPython}, ${JSON.stringify(metadata)})
          RETURNING id`.execute(trx)
        ).rows[0]!;
        await journal(trx, projectId, normalized, normalizeVersion(version), 'new release', account.username);
      }
      const pyversion = field(form, 'pyversion') || (filetype === 'sdist' ? 'source' : 'py3');
      await sql`INSERT INTO files (release_id, filename, packagetype, python_version, requires_python, size, sha256_digest, path, md5_digest, blake2_256_digest)
        VALUES (${release.id}, ${content.filename}, ${filetype}, ${pyversion}, ${requiresPython}, ${String(content.size)}, ${content.sha256}, ${path},
                ${content.md5}, ${content.blake2b256})`.execute(trx);
      await journal(trx, projectId, normalized, normalizeVersion(version), `add ${pyversion} file ${content.filename}`, account.username);
      await options.store.commit(content, path);
      placed = true;
      return { project: normalized, created };
    });
  } catch (err) {
    if (placed) await options.store.remove(path);
    throw err;
  }
}

/** The old index's filename rule: the project's name, its version, and a known extension. */
function checkFilename(filename: string, normalized: string, filetype: string, canonical: string): void {
  const wheel = filename.endsWith('.whl');
  if (!/^[A-Za-z0-9][A-Za-z0-9._+!-]*$/.test(filename) || filename.length > 255 || !(wheel || /\.(tar\.gz|zip)$/.test(filename))) {
    throw new Refused(400, `Invalid file name '${statusText(filename)}': use a .tar.gz, .zip or .whl file.`);
  }
  if (wheel !== (filetype === 'bdist_wheel')) throw new Refused(400, `'${filename}' is not a ${filetype} file.`);
  const stem = wheel ? filename.split('-').slice(0, 2) : splitSdist(filename);
  const fileVersion = stem[1] === undefined ? undefined : parseVersion(stem[1]);
  if (normalizeName(stem[0] ?? '') !== normalized || !fileVersion || canonicalVersion(fileVersion) !== canonical) {
    throw new Refused(400, `The file name '${filename}' does not match the project name and version.`);
  }
}

function splitSdist(filename: string): [string, string | undefined] {
  const base = filename.replace(/\.(tar\.gz|zip)$/, '');
  const dash = base.lastIndexOf('-');
  return dash < 0 ? [base, undefined] : [base.slice(0, dash), base.slice(dash + 1)];
}
