import { createHash } from 'node:crypto';
import busboy from 'busboy';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Kysely } from 'kysely';
import { journal, lockProject } from '../lib/write-announcer.js';
import type { Database } from '../lib/schema.js';
import { authenticate, type Account } from '../lib/accounts.js';
import { createProject, uploadRefusal } from '../lib/ownership.js';
import { dropBody } from '../lib/form-body.js';
import { isValidName, normalizeName } from '../lib/names.js';
import { canonicalVersion, isPrerelease, normalizeVersion, parseVersion, sortKey } from '../lib/pep440.js';
import { parseFilename } from './platform.js';
import { ArchiveError, DEFAULT_ARCHIVE_LIMITS, readSdist, readWheel, type ArchiveLimits } from './archive.js';
import { isKnownClassifier, METADATA_VERSIONS, parseCoreMetadata, platformTagProblem, requirementProblem, specifierProblem } from './core-metadata.js';
import { storagePath, type FileStore, type Incoming } from '../lib/file-store.js';

/** Why an upload was refused: the `reason` label of upload failure metrics (each series starts at 0). */
export const UPLOAD_FAILURES = [
  'auth-missing', 'auth-invalid', 'forbidden', 'bad-form', 'bad-action', 'bad-protocol', 'bad-name',
  'bad-version', 'bad-filetype', 'bad-digest', 'digest-mismatch', 'bad-filename', 'too-large', 'file-exists', 'token-scope', 'rate-limited',
  'bad-archive', 'archive-too-large', 'no-metadata', 'metadata-mismatch', 'bad-metadata-version', 'bad-classifier', 'bad-requires-dist',
  'bad-requires-python', 'bad-platform-tag', 'second-sdist',
] as const;
export type UploadFailure = (typeof UPLOAD_FAILURES)[number];

/** Status lines carry the message, as Warehouse's do (twine prints them); they must be plain ASCII. */
export function reasonPhrase(message: string): string {
  return message.replace(/[^\x20-\x7e]/g, '?').slice(0, 500);
}

/** A refused upload: the HTTP status, Warehouse's message (also the status line's reason) and a reason code. */
export class UploadError extends Error {
  constructor(readonly status: number, message: string, readonly reason: UploadFailure) {
    super(message);
  }
}

const HELP = 'See https://packaging.python.org/specifications/core-metadata for more information.';

/** Metadata fields a release keeps (the multipart form twine sends, PEP 345/566/643 names). */
const LIST_FIELDS = ['classifiers', 'requires_dist', 'provides_dist', 'obsoletes_dist', 'requires_external', 'project_urls',
  'platform', 'supported_platform', 'dynamic', 'provides_extra', 'license_file'];
const TEXT_FIELDS = ['summary', 'description', 'description_content_type', 'keywords', 'home_page', 'download_url', 'author',
  'author_email', 'maintainer', 'maintainer_email', 'license', 'license_expression', 'requires_python', 'metadata_version'];

/** Limits of the upload form: a field's size (metadata such as the description) and the number of fields. */
const FIELD_BYTES = 4 * 1024 * 1024;
const FIELD_COUNT = 500;

export interface ParsedUpload {
  readonly fields: Map<string, string[]>;
  /** The `content` file, received into storage's incoming folder. */
  readonly content: (Incoming & { filename: string }) | undefined;
}

/**
 * Reads twine's multipart form: fields into a map (repeated fields kept in
 * order), the `content` file streamed to storage. Other files (signatures,
 * attestations) are read and dropped.
 */
export function readUploadForm(req: IncomingMessage, store: FileStore, limit: number): Promise<ParsedUpload> {
  return new Promise((resolve, reject) => {
    const fields = new Map<string, string[]>();
    let content: Promise<Incoming & { filename: string }> | undefined;
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: req.headers, limits: { fields: FIELD_COUNT, fieldSize: FIELD_BYTES, files: 10, parts: FIELD_COUNT + 100 } });
    } catch (err) {
      reject(new UploadError(400, `Invalid upload form: ${(err as Error).message}. Send multipart/form-data as twine does.`, 'bad-form'));
      return;
    }
    // Over-limit fields are refused, never truncated or dropped: what is stored is what was sent.
    let overLimit: string | undefined;
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) overLimit ??= `the field ${name.slice(0, 64)} is over the limit of ${FIELD_BYTES / (1024 * 1024)} MiB`;
      const list = fields.get(name) ?? [];
      list.push(value);
      fields.set(name, list);
    });
    parser.on('fieldsLimit', () => { overLimit ??= `the form has more than ${FIELD_COUNT} fields`; });
    parser.on('file', (name, stream, info) => {
      if (name !== 'content' || content) {
        stream.resume();
        return;
      }
      content = store.receive(stream, limit).then((incoming) => ({ ...incoming, filename: info.filename ?? '' }));
      // Surface a storage failure when the form ends, not as an unhandled rejection now.
      content.catch(() => {});
    });
    const fail = (err: Error) => {
      req.unpipe(parser);
      req.resume();
      void content?.then((c) => store.discard(c), () => {});
      reject(new UploadError(400, `Invalid upload form: ${err.message}.`, 'bad-form'));
    };
    parser.on('error', fail);
    parser.on('partsLimit', () => fail(new Error('too many parts')));
    parser.on('close', () => {
      const done = (c: (Incoming & { filename: string }) | undefined) => {
        if (!overLimit) return resolve({ fields, content: c });
        if (c) void store.discard(c);
        reject(new UploadError(400, `Invalid upload form: ${overLimit}. Nothing was stored.`, 'bad-form'));
      };
      if (!content) return done(undefined);
      content.then(done, reject);
    });
    req.on('aborted', () => parser.destroy(new Error('the client went away')));
    req.pipe(parser);
  });
}

export interface UploadContext {
  readonly writer: Kysely<Database>;
  readonly store: FileStore;
  readonly maxUploadBytes: number;
  /** New projects one account may create in an hour (BANYAN_PROJECTS_PER_HOUR). */
  readonly projectsPerHour: number;
  /** What an archive may unpack to (zip bombs); DEFAULT_ARCHIVE_LIMITS when absent. */
  readonly archiveLimits?: ArchiveLimits | undefined;
}

export interface UploadResult {
  /** `stored`: a new file; `exists`: the identical file was already there (nothing changed). */
  readonly outcome: 'stored' | 'exists';
  readonly project: string;
  readonly projectCreated: boolean;
  readonly filename: string;
  readonly account: Account;
}

function one(fields: Map<string, string[]>, name: string): string | undefined {
  const value = fields.get(name)?.[0];
  return value === undefined || value.trim() === '' || value === 'UNKNOWN' ? undefined : value;
}

/**
 * `POST /legacy/` with `:action=file_upload`: authenticates, checks the form
 * the way Warehouse does, then stores the file and its rows. The file is
 * renamed into place inside the database transaction, before COMMIT, and
 * removed again if the commit fails: nothing is served that has no row, and
 * no row points at a missing file.
 */
export async function handleUpload(ctx: UploadContext, req: IncomingMessage, res: ServerResponse): Promise<UploadResult> {
  const auth = await authenticate(ctx.writer, req.headers.authorization);
  if (auth === 'missing' || auth === 'malformed') {
    refuseBody(ctx, req, res);
    throw new UploadError(401, 'Invalid or non-existent authentication information. Use __token__ and an API token, or your username and password.', 'auth-missing');
  }
  if (auth === 'invalid') {
    refuseBody(ctx, req, res);
    throw new UploadError(403, 'Invalid or non-existent authentication information. Check the token or password.', 'auth-invalid');
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > ctx.maxUploadBytes + 16 * 1024 * 1024) {
    refuseBody(ctx, req, res);
    throw new UploadError(400, tooLarge(ctx.maxUploadBytes), 'too-large');
  }
  const form = await readUploadForm(req, ctx.store, ctx.maxUploadBytes);
  try {
    const checked = validate(form, ctx.maxUploadBytes);
    const metadata = await inspectArchive(checked, form.fields, ctx.archiveLimits ?? DEFAULT_ARCHIVE_LIMITS);
    return await store(ctx, auth, { ...checked, coreMetadata: metadata });
  } catch (err) {
    if (form.content) await ctx.store.discard(form.content);
    throw err;
  }
}

/** Refused before the form is read: nothing of the body is parsed, and at most a little more than an upload's worth is read. */
function refuseBody(ctx: UploadContext, req: IncomingMessage, res: ServerResponse): void {
  dropBody(req, res, { maxBytes: ctx.maxUploadBytes + 16 * 1024 * 1024 });
}

function tooLarge(limit: number): string {
  const size = limit >= 1024 * 1024 ? `${+(limit / (1024 * 1024)).toFixed(1)} MiB` : `${+(limit / 1024).toFixed(1)} KiB`;
  return `File too large. Limit for this index is ${size} (BANYAN_MAX_UPLOAD).`;
}

interface CheckedUpload {
  readonly name: string;
  readonly normalized: string;
  readonly version: string;
  readonly canonical: string;
  readonly sortKey: string;
  readonly prerelease: boolean;
  readonly filetype: 'sdist' | 'bdist_wheel';
  readonly pyversion: string;
  readonly requiresPython: string | null;
  readonly metadata: Record<string, unknown>;
  readonly content: Incoming & { filename: string };
  /** The archive's METADATA / PKG-INFO, once the archive has been inspected. */
  readonly coreMetadata?: Buffer | undefined;
}

function validate(form: ParsedUpload, limit: number): CheckedUpload {
  const f = form.fields;
  const action = one(f, ':action');
  if (action !== 'file_upload') throw new UploadError(400, `Invalid value for :action: ${action === undefined ? 'missing' : `'${action}'`}. Use 'file_upload'.`, 'bad-action');
  const protocol = one(f, 'protocol_version') ?? '1';
  if (protocol !== '1') throw new UploadError(400, 'Unknown protocol version.', 'bad-protocol');
  const name = (one(f, 'name') ?? '').trim();
  if (!isValidName(name)) {
    throw new UploadError(400, `'${name}' is an invalid value for Name. Error: Start and end with a letter or numeral containing only ASCII numeric and '.', '_' and '-'. ${HELP}`, 'bad-name');
  }
  const rawVersion = (one(f, 'version') ?? '').trim();
  const parsed = parseVersion(rawVersion);
  if (!parsed || parsed.local) {
    throw new UploadError(400, `'${rawVersion}' is an invalid value for Version. Error: Use a version number that's valid under PEP 440 (local versions are not allowed). ${HELP}`, 'bad-version');
  }
  const filetype = one(f, 'filetype');
  if (filetype !== 'sdist' && filetype !== 'bdist_wheel') {
    throw new UploadError(400, `Invalid value for filetype. Error: Use a known file type ('sdist' or 'bdist_wheel'), not '${filetype ?? ''}'.`, 'bad-filetype');
  }
  const content = form.content;
  if (!content) throw new UploadError(400, 'Upload payload does not have a file.', 'bad-form');
  if (content.tooLarge) throw new UploadError(400, tooLarge(limit), 'too-large');
  const digest = one(f, 'sha256_digest');
  if (digest === undefined) throw new UploadError(400, 'Include at least one message digest (sha256_digest).', 'bad-digest');
  if (!/^[0-9a-fA-F]{64}$/.test(digest)) {
    throw new UploadError(400, 'Invalid value for sha256_digest. Error: Use a valid, hex-encoded, SHA256 message digest.', 'bad-digest');
  }
  if (digest.toLowerCase() !== content.sha256) {
    throw new UploadError(400, 'The digest supplied does not match a digest calculated from the uploaded file.', 'digest-mismatch');
  }
  checkFilename(content.filename, name, parsed, filetype);
  const pyversion = one(f, 'pyversion') ?? (filetype === 'sdist' ? 'source' : '');
  if (filetype === 'sdist' && pyversion !== 'source') {
    throw new UploadError(400, "Invalid value for pyversion. Error: Use 'source' as Python version for an sdist.", 'bad-filetype');
  }
  if (filetype === 'bdist_wheel' && !/^[A-Za-z0-9._]+$/.test(pyversion)) {
    throw new UploadError(400, 'Invalid value for pyversion. Error: Use a Python version tag such as py3 or cp311 for a wheel.', 'bad-filetype');
  }
  const requiresPython = one(f, 'requires_python') ?? null;
  if (requiresPython !== null) checkRequiresPython(requiresPython);
  const metadataVersion = one(f, 'metadata_version');
  if (metadataVersion !== undefined) checkMetadataVersion(metadataVersion);
  const metadata: Record<string, unknown> = {};
  for (const key of TEXT_FIELDS) {
    const value = one(f, key);
    if (value !== undefined) metadata[key] = value;
  }
  for (const key of LIST_FIELDS) {
    const values = (f.get(key) ?? []).filter((v) => v.trim() !== '');
    if (values.length > 0) metadata[key] = values;
  }
  return {
    name, normalized: normalizeName(name), version: normalizeVersion(parsed), canonical: canonicalVersion(parsed),
    sortKey: sortKey(parsed), prerelease: isPrerelease(parsed), filetype, pyversion, requiresPython, metadata, content,
  };
}

function checkFilename(filename: string, name: string, version: NonNullable<ReturnType<typeof parseVersion>>, filetype: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._+!-]*$/.test(filename) || filename.length > 255) {
    throw new UploadError(400, `Invalid distribution file name '${reasonPhrase(filename)}'.`, 'bad-filename');
  }
  const dist = parseFilename(filename);
  if (!dist) {
    throw new UploadError(400, 'Invalid file extension: Use .tar.gz, .whl or .zip extension. See https://peps.python.org/pep-0527 for more information.', 'bad-filename');
  }
  if ((dist.kind === 'wheel') !== (filetype === 'bdist_wheel')) {
    throw new UploadError(400, `Invalid value for filetype. Error: '${filename}' is ${dist.kind === 'wheel' ? 'a wheel' : 'an sdist'}, not ${filetype}.`, 'bad-filetype');
  }
  if (normalizeName(dist.name) !== normalizeName(name)) {
    const prefix = name.replace(/[-_.]+/g, '_').toLowerCase();
    throw new UploadError(400, `Start filename for project '${name}' with '${prefix}'.`, 'bad-filename');
  }
  const fileVersion = parseVersion(dist.version);
  if (!fileVersion || canonicalVersion(fileVersion) !== canonicalVersion(version)) {
    throw new UploadError(400, `Version in filename should be '${normalizeVersion(version)}' not '${dist.version}'.`, 'bad-filename');
  }
}

async function store(ctx: UploadContext, account: Account, u: CheckedUpload): Promise<UploadResult> {
  const path = storagePath(u.content.sha256, u.content.filename);
  let placed = false;
  try {
    return await ctx.writer.transaction().execute(async (trx) => {
      // One upload per project at a time: the checks below and the inserts see one consistent state.
      await lockProject(trx, u.normalized);
      let project = await trx.selectFrom('projects').select(['id', 'name']).where('normalized_name', '=', u.normalized).executeTakeFirst();
      const refusal = await uploadRefusal(trx, account, project, ctx.projectsPerHour);
      if (refusal) throw new UploadError(refusal.status, refusal.message, refusal.reason);
      let projectCreated = false;
      if (!project) {
        const created = (await createProject(trx, account, u.name))!;
        project = { id: created.id, name: u.name };
        projectCreated = true;
      }
      const existing = await trx.selectFrom('files').innerJoin('releases', 'releases.id', 'files.release_id')
        .select(['files.sha256_digest', 'releases.project_id']).where('files.filename', '=', u.content.filename).executeTakeFirst();
      if (existing) {
        if (existing.sha256_digest === u.content.sha256 && existing.project_id === project.id) {
          return { outcome: 'exists' as const, project: u.normalized, projectCreated, filename: u.content.filename, account };
        }
        throw new UploadError(400, `File already exists ('${u.content.filename}', with sha256 hash ${existing.sha256_digest}). Use a new version number; a file name can never be reused.`, 'file-exists');
      }
      let release = await trx.selectFrom('releases').select('id')
        .where('project_id', '=', project.id).where('canonical_version', '=', u.canonical).executeTakeFirst();
      if (release && u.filetype === 'sdist') {
        const sdist = await trx.selectFrom('files').select('filename').where('release_id', '=', release.id).where('packagetype', '=', 'sdist').executeTakeFirst();
        if (sdist) throw new UploadError(400, `Only one sdist may be uploaded per release: ${sdist.filename} is already there.`, 'second-sdist');
      }
      if (!release) {
        release = await trx.insertInto('releases').values({
          project_id: project.id, version: u.version, canonical_version: u.canonical, sort_key: u.sortKey, is_prerelease: u.prerelease,
          summary: (u.metadata['summary'] as string | undefined) ?? null, requires_python: u.requiresPython, metadata: JSON.stringify(u.metadata) as never,
        }).returning('id').executeTakeFirstOrThrow();
        await journal(trx, project.id, u.normalized, u.version, 'new release', account.username);
      }
      // A wheel's METADATA is served beside it (PEP 658), so pip need not download the wheel to resolve.
      const coreMetadata = u.filetype === 'bdist_wheel' ? u.coreMetadata : undefined;
      await trx.insertInto('files').values({
        release_id: release.id, filename: u.content.filename, packagetype: u.filetype, python_version: u.pyversion,
        requires_python: u.requiresPython, size: String(u.content.size), sha256_digest: u.content.sha256, path,
        metadata_sha256: coreMetadata ? createHash('sha256').update(coreMetadata).digest('hex') : null,
        md5_digest: u.content.md5, blake2_256_digest: u.content.blake2b256,
      }).execute();
      await journal(trx, project.id, u.normalized, u.version, `add ${u.pyversion} file ${u.content.filename}`, account.username);
      await ctx.store.commit(u.content, path);
      placed = true;
      if (coreMetadata) await ctx.store.writeBeside(path, '.metadata', coreMetadata);
      return { outcome: 'stored' as const, project: u.normalized, projectCreated, filename: u.content.filename, account };
    });
  } catch (err) {
    // The rename happened but the commit did not: take the file back out.
    if (placed) await ctx.store.remove(path);
    throw err;
  } finally {
    if (!placed) await ctx.store.discard(u.content);
  }
}

function checkRequiresPython(value: string): void {
  const problem = specifierProblem(value);
  if (problem) throw new UploadError(400, `'${value}' is an invalid value for Requires-Python. Error: ${problem}; use a version specifier such as >=3.8. ${HELP}`, 'bad-requires-python');
}

function checkMetadataVersion(value: string): void {
  if (!(METADATA_VERSIONS as readonly string[]).includes(value)) {
    throw new UploadError(400, `'${value}' is an invalid value for Metadata-Version. Error: Use a known metadata version (${METADATA_VERSIONS.join(', ')}). ${HELP}`, 'bad-metadata-version');
  }
}

/**
 * Opens the archive and checks it the way Warehouse does: its metadata file exists and says the
 * same name and version as the form and the file name; the metadata version is a known one;
 * every classifier is known; every Requires-Dist and Requires-Python parses (the form's and the
 * file's); a wheel's platform tags are installable ones; and it unpacks within the limits.
 * Returns the metadata file's bytes (a wheel's METADATA is served for PEP 658).
 */
async function inspectArchive(u: CheckedUpload, fields: Map<string, string[]>, limits: ArchiveLimits): Promise<Buffer> {
  const dist = parseFilename(u.content.filename)!;
  let bytes: Buffer;
  try {
    if (dist.kind === 'wheel') {
      for (const tag of dist.platforms) {
        const problem = platformTagProblem(tag);
        if (problem) throw new UploadError(400, problem, 'bad-platform-tag');
      }
      bytes = (await readWheel(u.content.tempPath, `${dist.name}-${dist.version}.dist-info`, limits)).metadata;
    } else {
      if (!u.content.filename.endsWith('.tar.gz')) {
        throw new UploadError(400, 'Invalid distribution file: an sdist must be a .tar.gz (PEP 625).', 'bad-filename');
      }
      bytes = (await readSdist(u.content.tempPath, u.content.filename.slice(0, -'.tar.gz'.length), limits)).metadata;
    }
  } catch (err) {
    if (err instanceof ArchiveError) throw new UploadError(400, err.message, err.reason);
    throw err;
  }
  const meta = parseCoreMetadata(bytes);
  const version = meta.first('metadata-version');
  if (version === undefined) throw new UploadError(400, 'Invalid distribution file: its metadata has no Metadata-Version.', 'bad-metadata-version');
  checkMetadataVersion(version);
  const name = meta.first('name') ?? '';
  if (normalizeName(name) !== u.normalized) {
    throw new UploadError(400, `Invalid distribution file: its metadata says Name '${name}', not '${u.name}'.`, 'metadata-mismatch');
  }
  const metaVersion = parseVersion(meta.first('version') ?? '');
  if (!metaVersion || canonicalVersion(metaVersion) !== u.canonical) {
    throw new UploadError(400, `Invalid distribution file: its metadata says Version '${meta.first('version') ?? ''}', not '${u.version}'.`, 'metadata-mismatch');
  }
  for (const classifier of [...(fields.get('classifiers') ?? []), ...meta.all('classifier')]) {
    if (classifier.trim() !== '' && !isKnownClassifier(classifier.trim())) {
      throw new UploadError(400, `Invalid value for classifiers. Error: Classifier '${classifier.trim()}' is not a valid classifier. ${HELP}`, 'bad-classifier');
    }
  }
  for (const requirement of [...(fields.get('requires_dist') ?? []), ...meta.all('requires-dist')]) {
    if (requirement.trim() === '') continue;
    const problem = requirementProblem(requirement);
    if (problem) throw new UploadError(400, `Invalid value for requires_dist. Error: Can't parse '${requirement}': ${problem}. ${HELP}`, 'bad-requires-dist');
  }
  const requiresPython = meta.first('requires-python');
  if (requiresPython !== undefined) checkRequiresPython(requiresPython);
  return bytes;
}
