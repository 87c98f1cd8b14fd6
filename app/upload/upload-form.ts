/** Twine's multipart upload form: fields and the `content` file, read within limits. */

import busboy from 'busboy';
import type { IncomingMessage } from 'node:http';
import { pipeline, Transform } from 'node:stream';
import type { FileStore, Incoming } from '../../lib/file-store.js';
import { UploadError } from './upload-errors.js';

/** Limits of the upload form: a field's size (metadata such as the description) and the number of fields. */
const FIELD_BYTES = 4 * 1024 * 1024;

const FIELD_COUNT = 500;

/**
 * Everything in the form but its files, together: counted on the bytes as they are read (chunked
 * or not, whatever Content-Length says), so one request holds at most this much besides the file.
 */
export const FORM_FIELDS_BYTES = 8 * 1024 * 1024;

/** Values one repeated field (classifiers, requires_dist) may have. */
export const LIST_VALUES = 256;

/** What the parser may hold of a file part while storage catches up, beyond the fields' budget. */
const FILE_SLACK = 1024 * 1024;

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
      parser = busboy({
        headers: req.headers,
        limits: { fields: FIELD_COUNT, fieldSize: FIELD_BYTES, files: 10, parts: FIELD_COUNT + 100 },
      });
    } catch (err) {
      reject(new UploadError(400, `Invalid upload form: ${(err as Error).message}. Send multipart/form-data as twine does.`, 'bad-form'));
      return;
    }
    // Over-limit fields are refused, never truncated or dropped: what is stored is what was sent.
    let overLimit: string | undefined;
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) overLimit ??= `the field ${name.slice(0, 64)} is over the limit of ${FIELD_BYTES / (1024 * 1024)} MiB`;
      const list = fields.get(name) ?? [];
      if (list.length === LIST_VALUES) {
        overLimit ??= `the field ${name.slice(0, 64)} is repeated more than ${LIST_VALUES} times`;
        return;
      }
      list.push(value);
      fields.set(name, list);
    });
    // Bytes read minus bytes of file parts: what the fields (and part headers) cost, as it arrives.
    let read = 0;
    let fileBytes = 0;
    let settled = false;
    const countRead = (chunk: Buffer) => {
      read += chunk.length;
      if (read - fileBytes <= FORM_FIELDS_BYTES + FILE_SLACK) return;
      settled = true;
      req.off('data', countRead);
      req.unpipe(parser);
      parser.destroy();
      void content?.then(
        (c) => store.discard(c),
        () => {},
      );
      reject(
        new UploadError(
          413,
          `Invalid upload form: its fields are over ${FORM_FIELDS_BYTES / (1024 * 1024)} MiB in all. Nothing was stored.`,
          'too-large',
        ),
      );
    };
    req.on('data', countRead);
    parser.on('fieldsLimit', () => {
      overLimit ??= `the form has more than ${FIELD_COUNT} fields`;
    });
    parser.on('file', (name, stream, info) => {
      if (name !== 'content' || content) {
        stream.on('data', (chunk: Buffer) => {
          fileBytes += chunk.length;
        });
        return;
      }
      const counted = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          fileBytes += chunk.length;
          done(null, chunk);
        },
      });
      pipeline(stream, counted, () => {});
      content = store.receive(counted, limit).then((incoming) => ({ ...incoming, filename: info.filename ?? '' }));
      // Surface a storage failure when the form ends, not as an unhandled rejection now.
      content.catch(() => {});
    });
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      req.off('data', countRead);
      req.unpipe(parser);
      req.resume();
      void content?.then(
        (c) => store.discard(c),
        () => {},
      );
      reject(new UploadError(400, `Invalid upload form: ${err.message}.`, 'bad-form'));
    };
    parser.on('error', fail);
    parser.on('partsLimit', () => fail(new Error('too many parts')));
    parser.on('close', () => {
      if (settled) return;
      settled = true;
      req.off('data', countRead);
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

export function one(fields: Map<string, string[]>, name: string): string | undefined {
  const value = fields.get(name)?.[0];
  return value === undefined || value.trim() === '' || value === 'UNKNOWN' ? undefined : value;
}
