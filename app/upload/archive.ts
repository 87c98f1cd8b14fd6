import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import yauzl from 'yauzl';
import { readUpTo } from '../../lib/form-body.js';

/** Limits on what an uploaded archive may unpack to: a small file that expands to gigabytes is refused. */
export interface ArchiveLimits {
  /** Bytes all members add up to, uncompressed (BANYAN_MAX_UNPACKED). */
  readonly maxUnpackedBytes: number;
  readonly maxMembers: number;
}

export const DEFAULT_ARCHIVE_LIMITS: ArchiveLimits = { maxUnpackedBytes: 256 * 1024 * 1024, maxMembers: 20_000 };

/** Why an archive cannot be accepted, in words for the uploader. */
export class ArchiveError extends Error {
  constructor(
    message: string,
    readonly reason: 'bad-archive' | 'archive-too-large' | 'no-metadata',
  ) {
    super(message);
  }
}

/** The core metadata file of a distribution, and what its archive holds. */
export interface ArchiveMetadata {
  /** METADATA of a wheel, PKG-INFO of an sdist, as bytes (served as-is for PEP 658). */
  readonly metadata: Buffer;
  /** The wheel's WHEEL file, when a wheel. */
  readonly wheel?: string | undefined;
  readonly members: number;
  readonly unpackedBytes: number;
}

const METADATA_LIMIT = 8 * 1024 * 1024;

/**
 * Reads a wheel's `<name>-<version>.dist-info/METADATA` and `WHEEL` with yauzl, checking the
 * member count and the sizes the zip declares against the limits, and that `distInfo` exists.
 */
export async function readWheel(path: string, distInfo: string, limits: ArchiveLimits): Promise<ArchiveMetadata> {
  let zip: yauzl.ZipFile;
  try {
    zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
      yauzl.open(path, { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: false }, (err, z) =>
        err ? reject(err) : resolve(z!),
      ),
    );
  } catch (err) {
    throw new ArchiveError(`Invalid distribution file: not a zip archive (${(err as Error).message}).`, 'bad-archive');
  }
  try {
    if (zip.entryCount > limits.maxMembers) {
      throw new ArchiveError(
        `Invalid distribution file: ${zip.entryCount} members, over the limit of ${limits.maxMembers}.`,
        'archive-too-large',
      );
    }
    let unpacked = 0;
    let members = 0;
    let metadata: Buffer | undefined;
    let wheel: string | undefined;
    const wanted = new Map([
      [`${distInfo}/METADATA`, 'metadata'],
      [`${distInfo}/WHEEL`, 'wheel'],
    ]);
    await new Promise<void>((resolve, reject) => {
      zip.on('error', (err: Error) => reject(new ArchiveError(`Invalid distribution file: ${err.message}.`, 'bad-archive')));
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        members++;
        unpacked += entry.uncompressedSize;
        if (unpacked > limits.maxUnpackedBytes) {
          reject(
            new ArchiveError(
              `Invalid distribution file: it unpacks to more than ${mib(limits.maxUnpackedBytes)} (BANYAN_MAX_UNPACKED).`,
              'archive-too-large',
            ),
          );
          return;
        }
        const which = wanted.get(entry.fileName);
        if (!which) {
          zip.readEntry();
          return;
        }
        if (entry.uncompressedSize > METADATA_LIMIT) {
          reject(new ArchiveError(`Invalid distribution file: ${entry.fileName} is over ${mib(METADATA_LIMIT)}.`, 'archive-too-large'));
          return;
        }
        zip.openReadStream(entry, (err, stream) => {
          if (err || !stream) {
            reject(
              new ArchiveError(`Invalid distribution file: cannot read ${entry.fileName} (${err?.message ?? 'no stream'}).`, 'bad-archive'),
            );
            return;
          }
          readAll(stream, METADATA_LIMIT).then(
            (bytes) => {
              if (which === 'metadata') metadata = bytes;
              else wheel = bytes.toString('utf8');
              zip.readEntry();
            },
            (e: Error) =>
              reject(new ArchiveError(`Invalid distribution file: cannot read ${entry.fileName} (${e.message}).`, 'bad-archive')),
          );
        });
      });
      zip.readEntry();
    });
    if (!metadata) throw new ArchiveError(`Invalid distribution file: the wheel has no ${distInfo}/METADATA.`, 'no-metadata');
    if (!wheel) throw new ArchiveError(`Invalid distribution file: the wheel has no ${distInfo}/WHEEL.`, 'no-metadata');
    return { metadata, wheel, members, unpackedBytes: unpacked };
  } finally {
    zip.close();
  }
}

/**
 * Reads an sdist's `<name>-<version>/PKG-INFO` with tar-stream through gunzip, counting every
 * member and every unpacked byte as they stream (a tar declares nothing up front), and stopping
 * at the limits.
 */
export async function readSdist(path: string, topDir: string, limits: ArchiveLimits): Promise<ArchiveMetadata> {
  const tar = extract();
  const gunzip = createGunzip();
  const source = createReadStream(path);
  let members = 0;
  let unpacked = 0;
  let metadata: Buffer | undefined;
  const stop = (err: ArchiveError) => {
    source.destroy();
    gunzip.destroy();
    tar.destroy(err);
  };
  const done = new Promise<void>((resolve, reject) => {
    tar.on('entry', (header, stream, next) => {
      members++;
      unpacked += header.size ?? 0;
      if (members > limits.maxMembers)
        return stop(new ArchiveError(`Invalid distribution file: more than ${limits.maxMembers} members.`, 'archive-too-large'));
      if (unpacked > limits.maxUnpackedBytes) {
        return stop(
          new ArchiveError(
            `Invalid distribution file: it unpacks to more than ${mib(limits.maxUnpackedBytes)} (BANYAN_MAX_UNPACKED).`,
            'archive-too-large',
          ),
        );
      }
      const name = header.name.replace(/^\.\//, '');
      if (name === `${topDir}/PKG-INFO` && header.type === 'file') {
        readAll(stream, METADATA_LIMIT).then(
          (bytes) => {
            metadata = bytes;
            next();
          },
          (e: Error) => stop(new ArchiveError(`Invalid distribution file: ${e.message}.`, 'bad-archive')),
        );
        return undefined;
      }
      stream.on('end', () => next());
      stream.resume();
      return undefined;
    });
    tar.on('finish', () => resolve());
    tar.on('error', (err: Error) =>
      reject(
        err instanceof ArchiveError
          ? err
          : new ArchiveError(`Invalid distribution file: not a gzipped tar archive (${err.message}).`, 'bad-archive'),
      ),
    );
    gunzip.on('error', (err: Error) =>
      reject(new ArchiveError(`Invalid distribution file: not a gzipped tar archive (${err.message}).`, 'bad-archive')),
    );
    source.on('error', (err: Error) => reject(new ArchiveError(`Invalid distribution file: ${err.message}.`, 'bad-archive')));
  });
  source.pipe(gunzip).pipe(tar);
  await done;
  if (!metadata) throw new ArchiveError(`Invalid distribution file: the sdist has no ${topDir}/PKG-INFO.`, 'no-metadata');
  return { metadata, members, unpackedBytes: unpacked };
}

async function readAll(stream: AsyncIterable<unknown>, limit: number): Promise<Buffer> {
  const bytes = await readUpTo(stream, limit);
  if (!bytes) throw new Error(`over ${mib(limit)}`);
  return bytes;
}

function mib(bytes: number): string {
  return `${+(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
