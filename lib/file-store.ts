import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { blake2b } from '@noble/hashes/blake2.js';
import { isAlive } from './processes.js';

/** A file received into the store's incoming folder, not yet visible anywhere. */
export interface Incoming {
  readonly tempPath: string;
  readonly sha256: string;
  /** The other digests Warehouse gives (hex): MD5 and BLAKE2b with a 256-bit digest. */
  readonly md5: string;
  readonly blake2b256: string;
  readonly size: number;
  /** True when the stream was longer than the limit (the temp file is already gone). */
  readonly tooLarge: boolean;
}

/** `ab/cd/<rest of the sha256>/<filename>`: where a file lives, under the store's root and under `/packages/`. */
export function storagePath(sha256: string, filename: string): string {
  return `${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256.slice(4)}/${filename}`;
}

const STORED_PATH = /^[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{60}\/[A-Za-z0-9][A-Za-z0-9._+!-]*$/;

/**
 * Content-addressed file storage on local disk. Uploads stream into
 * `.incoming/` while their SHA-256 is computed, are fsynced, and are renamed
 * into place only when the caller commits them, so a failed or interrupted
 * upload leaves nothing where files are served from.
 */
export class FileStore {
  readonly root: string;
  readonly #incoming: string;

  constructor(root: string) {
    this.root = root;
    this.#incoming = join(root, '.incoming');
  }

  /**
   * Creates the folders, and removes temp files that crashed processes left
   * behind: those of processes on this host that no longer run, and any not
   * written to for an hour. Other live processes sharing the store (the app
   * and the legacy upload, several app instances) keep theirs.
   */
  async init(): Promise<void> {
    await mkdir(this.#incoming, { recursive: true });
    const host = hostname();
    for (const name of await readdir(this.#incoming)) {
      const path = join(this.#incoming, name);
      const owner = /^(\d+)@([^~]+)~/.exec(name);
      const orphaned = owner ? owner[2] === host && (Number(owner[1]) === process.pid || !isAlive(Number(owner[1]))) : true;
      const stale = await stat(path).then(
        (st) => Date.now() - st.mtimeMs > 3_600_000,
        () => false,
      );
      if (orphaned || stale) await rm(path, { force: true });
    }
  }

  /** Streams `body` to a temp file, hashing as it goes; stops writing past `limit` bytes. */
  async receive(body: Readable, limit: number): Promise<Incoming> {
    // Named after the process writing it, so a restart can tell its own dead uploads from live ones.
    const tempPath = join(this.#incoming, `${process.pid}@${hostname()}~${Date.now()}-${randomBytes(8).toString('hex')}`);
    const hash = createHash('sha256');
    const md5 = createHash('md5');
    const blake = blake2b.create({ dkLen: 32 });
    const file = await open(tempPath, 'wx', 0o644);
    let size = 0;
    let tooLarge = false;
    try {
      for await (const chunk of body) {
        const data = chunk as Buffer;
        size += data.length;
        if (size > limit) tooLarge = true;
        // Past the limit, keep reading (the client is still sending) but write nothing.
        if (tooLarge) continue;
        hash.update(data);
        md5.update(data);
        blake.update(data);
        await file.write(data);
      }
      if (!tooLarge) await file.sync();
    } catch (err) {
      await file.close();
      await rm(tempPath, { force: true });
      throw err;
    }
    await file.close();
    if (tooLarge) await rm(tempPath, { force: true });
    return {
      tempPath,
      sha256: hash.digest('hex'),
      md5: md5.digest('hex'),
      blake2b256: Buffer.from(blake.digest()).toString('hex'),
      size,
      tooLarge,
    };
  }

  /** Moves a received file to its content address; durable when this returns. */
  async commit(incoming: Incoming, path: string): Promise<void> {
    const target = join(this.root, path);
    await mkdir(dirname(target), { recursive: true });
    await rename(incoming.tempPath, target);
    const dir = await open(dirname(target), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  /**
   * Writes a small file beside a stored one (`<path><suffix>`, such as a wheel's `.metadata`),
   * atomically: it is there whole or not at all.
   */
  async writeBeside(path: string, suffix: string, bytes: Buffer): Promise<void> {
    const target = join(this.root, `${path}${suffix}`);
    await mkdir(dirname(target), { recursive: true });
    const temp = `${target}.${process.pid}.tmp`;
    await writeFile(temp, bytes);
    await rename(temp, target);
  }

  /** Drops a received file that will not be stored. */
  async discard(incoming: Incoming): Promise<void> {
    await rm(incoming.tempPath, { force: true });
  }

  /** Removes a stored file and what was written beside it (a commit whose database row did not make it). */
  async remove(path: string): Promise<void> {
    const absolute = this.resolve(path);
    if (absolute) await Promise.all([rm(absolute, { force: true }), rm(`${absolute}.metadata`, { force: true })]);
  }

  /** The absolute path of a stored file, or undefined for anything that is not a stored path (no `..`). */
  resolve(path: string): string | undefined {
    return STORED_PATH.test(path) ? join(this.root, path) : undefined;
  }

  /** Size of a stored file, or undefined when it is not there. */
  async size(path: string): Promise<number | undefined> {
    const absolute = this.resolve(path);
    if (!absolute) return undefined;
    try {
      const s = await stat(absolute);
      return s.isFile() ? s.size : undefined;
    } catch {
      return undefined;
    }
  }
}

/** The MD5 and BLAKE2b-256 digests of a stored file, read from disk (for files stored before they were kept). */
export async function digestsOf(path: string): Promise<{ md5: string; blake2b256: string }> {
  const md5 = createHash('md5');
  const blake = blake2b.create({ dkLen: 32 });
  for await (const chunk of createReadStream(path)) {
    md5.update(chunk as Buffer);
    blake.update(chunk as Buffer);
  }
  return { md5: md5.digest('hex'), blake2b256: Buffer.from(blake.digest()).toString('hex') };
}
