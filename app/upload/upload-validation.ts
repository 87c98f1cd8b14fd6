/** The checks Warehouse makes on an upload: the form's fields, the filename, and the archive's own metadata. */

import { isValidName, normalizeName } from '../../package-index/names.js';
import { canonicalVersion, isPrerelease, normalizeVersion, parseVersion, sortKey } from '../../package-index/pep440.js';
import { parseFilename } from '../platform.js';
import { ArchiveError, readSdist, readWheel, type ArchiveLimits } from './archive.js';
import {
  isKnownClassifier,
  METADATA_VERSIONS,
  parseCoreMetadata,
  platformTagProblem,
  requirementProblem,
  specifierProblem,
} from './core-metadata.js';
import type { Incoming } from '../../lib/file-store.js';
import { UploadError, reasonPhrase, tooLarge } from './upload-errors.js';
import { one, type ParsedUpload } from './upload-form.js';

const HELP = 'See https://packaging.python.org/specifications/core-metadata for more information.';

/** Metadata fields a release keeps (the multipart form twine sends, PEP 345/566/643 names). */
const LIST_FIELDS = [
  'classifiers',
  'requires_dist',
  'provides_dist',
  'obsoletes_dist',
  'requires_external',
  'project_urls',
  'platform',
  'supported_platform',
  'dynamic',
  'provides_extra',
  'license_file',
];

const TEXT_FIELDS = [
  'summary',
  'description',
  'description_content_type',
  'keywords',
  'home_page',
  'download_url',
  'author',
  'author_email',
  'maintainer',
  'maintainer_email',
  'license',
  'license_expression',
  'requires_python',
  'metadata_version',
];

export interface CheckedUpload {
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

export function validate(form: ParsedUpload, limit: number): CheckedUpload {
  const f = form.fields;
  const action = one(f, ':action');
  if (action !== 'file_upload')
    throw new UploadError(
      400,
      `Invalid value for :action: ${action === undefined ? 'missing' : `'${action}'`}. Use 'file_upload'.`,
      'bad-action',
    );
  const protocol = one(f, 'protocol_version') ?? '1';
  if (protocol !== '1') throw new UploadError(400, 'Unknown protocol version.', 'bad-protocol');
  const name = (one(f, 'name') ?? '').trim();
  if (!isValidName(name)) {
    throw new UploadError(
      400,
      `'${name}' is an invalid value for Name. Error: Start and end with a letter or numeral containing only ASCII numeric and '.', '_' and '-'. ${HELP}`,
      'bad-name',
    );
  }
  const rawVersion = (one(f, 'version') ?? '').trim();
  const parsed = parseVersion(rawVersion);
  if (!parsed || parsed.local) {
    throw new UploadError(
      400,
      `'${rawVersion}' is an invalid value for Version. Error: Use a version number that's valid under PEP 440 (local versions are not allowed). ${HELP}`,
      'bad-version',
    );
  }
  const filetype = one(f, 'filetype');
  if (filetype !== 'sdist' && filetype !== 'bdist_wheel') {
    throw new UploadError(
      400,
      `Invalid value for filetype. Error: Use a known file type ('sdist' or 'bdist_wheel'), not '${filetype ?? ''}'.`,
      'bad-filetype',
    );
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
    throw new UploadError(
      400,
      'Invalid value for pyversion. Error: Use a Python version tag such as py3 or cp311 for a wheel.',
      'bad-filetype',
    );
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
    name,
    normalized: normalizeName(name),
    version: normalizeVersion(parsed),
    canonical: canonicalVersion(parsed),
    sortKey: sortKey(parsed),
    prerelease: isPrerelease(parsed),
    filetype,
    pyversion,
    requiresPython,
    metadata,
    content,
  };
}

function checkFilename(filename: string, name: string, version: NonNullable<ReturnType<typeof parseVersion>>, filetype: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._+!-]*$/.test(filename) || filename.length > 255) {
    throw new UploadError(400, `Invalid distribution file name '${reasonPhrase(filename)}'.`, 'bad-filename');
  }
  const dist = parseFilename(filename);
  if (!dist) {
    throw new UploadError(
      400,
      'Invalid file extension: Use .tar.gz, .whl or .zip extension. See https://peps.python.org/pep-0527 for more information.',
      'bad-filename',
    );
  }
  if ((dist.kind === 'wheel') !== (filetype === 'bdist_wheel')) {
    throw new UploadError(
      400,
      `Invalid value for filetype. Error: '${filename}' is ${dist.kind === 'wheel' ? 'a wheel' : 'an sdist'}, not ${filetype}.`,
      'bad-filetype',
    );
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

function checkRequiresPython(value: string): void {
  const problem = specifierProblem(value);
  if (problem)
    throw new UploadError(
      400,
      `'${value}' is an invalid value for Requires-Python. Error: ${problem}; use a version specifier such as >=3.8. ${HELP}`,
      'bad-requires-python',
    );
}

function checkMetadataVersion(value: string): void {
  if (!(METADATA_VERSIONS as readonly string[]).includes(value)) {
    throw new UploadError(
      400,
      `'${value}' is an invalid value for Metadata-Version. Error: Use a known metadata version (${METADATA_VERSIONS.join(', ')}). ${HELP}`,
      'bad-metadata-version',
    );
  }
}

/**
 * Opens the archive and checks it the way Warehouse does: its metadata file exists and says the
 * same name and version as the form and the file name; the metadata version is a known one;
 * every classifier is known; every Requires-Dist and Requires-Python parses (the form's and the
 * file's); a wheel's platform tags are installable ones; and it unpacks within the limits.
 * Returns the metadata file's bytes (a wheel's METADATA is served for PEP 658).
 */
export async function inspectArchive(u: CheckedUpload, fields: Map<string, string[]>, limits: ArchiveLimits): Promise<Buffer> {
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
  if (version === undefined)
    throw new UploadError(400, 'Invalid distribution file: its metadata has no Metadata-Version.', 'bad-metadata-version');
  checkMetadataVersion(version);
  const name = meta.first('name') ?? '';
  if (normalizeName(name) !== u.normalized) {
    throw new UploadError(400, `Invalid distribution file: its metadata says Name '${name}', not '${u.name}'.`, 'metadata-mismatch');
  }
  const metaVersion = parseVersion(meta.first('version') ?? '');
  if (!metaVersion || canonicalVersion(metaVersion) !== u.canonical) {
    throw new UploadError(
      400,
      `Invalid distribution file: its metadata says Version '${meta.first('version') ?? ''}', not '${u.version}'.`,
      'metadata-mismatch',
    );
  }
  for (const classifier of [...(fields.get('classifiers') ?? []), ...meta.all('classifier')]) {
    if (classifier.trim() !== '' && !isKnownClassifier(classifier.trim())) {
      throw new UploadError(
        400,
        `Invalid value for classifiers. Error: Classifier '${classifier.trim()}' is not a valid classifier. ${HELP}`,
        'bad-classifier',
      );
    }
  }
  for (const requirement of [...(fields.get('requires_dist') ?? []), ...meta.all('requires-dist')]) {
    if (requirement.trim() === '') continue;
    const problem = requirementProblem(requirement);
    if (problem)
      throw new UploadError(
        400,
        `Invalid value for requires_dist. Error: Can't parse '${requirement}': ${problem}. ${HELP}`,
        'bad-requires-dist',
      );
  }
  const requiresPython = meta.first('requires-python');
  if (requiresPython !== undefined) checkRequiresPython(requiresPython);
  return bytes;
}
