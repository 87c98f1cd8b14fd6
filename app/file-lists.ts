import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { IndexDatabase } from '../package-index/schema.js';
import type { Reads } from './queries.js';

/**
 * A project's files as its simple page and JSON API list them, rendered by
 * PostgreSQL. A giant's 50,000 files cost the app about 10 µs each when every
 * row came back as 14 columns (a Date among them) to be built into an object
 * and stringified in JavaScript; rendered in SQL, each release comes back as
 * one string of text already in its final form, and the app only writes it.
 * The text is byte for byte what JSON.stringify and escapeHtml made before:
 * `to_json(text)` escapes as JSON.stringify does, upload times are
 * `toISOString()`'s form in UTC, and keys keep their order.
 */
export type FileForm = 'simple-json' | 'simple-html' | { readonly jsonApiBase: string };

/** Releases per batch: a few thousand files, a megabyte or two of page, two short queries. */
export const RELEASES_PER_BATCH = 500;

/** A JSON string of a text expression (never null: a null is JSON's null). */
const json = (expr: string) => `coalesce(to_json(${expr})::text, 'null')`;
/** escapeHtml's five characters, `&` first, as its one pass does. */
const html = (expr: string) =>
  `replace(replace(replace(replace(replace(${expr}, '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;')`;
const ISO = `to_char(f.upload_time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
const has = (expr: string) => `coalesce(${expr}, '') <> ''`;

/** PEP 691's JSON file entry (simple-api's former simpleJsonFile). */
const SIMPLE_JSON_FILE = `'{"filename":' || ${json('f.filename')} || ',"url":' || ${json(`'/packages/' || f.path`)}
  || ',"hashes":{"sha256":' || ${json('f.sha256_digest')} || '},"requires-python":' || ${json('f.requires_python')}
  || ',"yanked":' || (case when r.yanked then coalesce(to_json(nullif(r.yanked_reason, ''))::text, 'true') else 'false' end)
  || ',"core-metadata":' || (case when ${has('f.metadata_sha256')} then '{"sha256":' || ${json('f.metadata_sha256')} || '}' else 'false' end)
  || ',"dist-info-metadata":' || (case when ${has('f.metadata_sha256')} then '{"sha256":' || ${json('f.metadata_sha256')} || '}' else 'false' end)
  || ',"size":' || f.size::text || ',"upload-time":"' || ${ISO} || '"}'`;

/** PEP 503's anchor, one line (with PEP 592 yanking, PEP 658/714 metadata and requires-python). */
const SIMPLE_HTML_LINK = `'    <a href="' || ${html(`'/packages/' || f.path`)} || '#sha256=' || f.sha256_digest || '"'
  || (case when ${has('f.requires_python')} then ' data-requires-python="' || ${html('f.requires_python')} || '"' else '' end)
  || (case when ${has('f.metadata_sha256')} then ' data-core-metadata="sha256=' || f.metadata_sha256 || '" data-dist-info-metadata="sha256=' || f.metadata_sha256 || '"' else '' end)
  || (case when r.yanked then ' data-yanked="' || ${html(`coalesce(r.yanked_reason, '')`)} || '"' else '' end)
  || '>' || ${html('f.filename')} || '</a><br/>' || chr(10)`;

/** Warehouse's JSON API file entry; its URL absolute on `base` (the first parameter). */
const JSON_API_FILE = `'{"filename":' || ${json('f.filename')} || ',"packagetype":' || ${json('f.packagetype')}
  || ',"python_version":' || ${json('f.python_version')} || ',"requires_python":' || ${json('f.requires_python')}
  || ',"size":' || f.size::text || ',"digests":{'
  || (case when ${has('f.blake2_256_digest')} then '"blake2b_256":' || ${json('f.blake2_256_digest')} || ',' else '' end)
  || (case when ${has('f.md5_digest')} then '"md5":' || ${json('f.md5_digest')} || ',' else '' end)
  || '"sha256":' || ${json('f.sha256_digest')} || '},"md5_digest":' || ${json('f.md5_digest')}
  || ',"url":' || to_json($BASE::text || '/packages/' || f.path)::text
  || ',"upload_time":"' || to_char(f.upload_time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') || '","upload_time_iso_8601":"' || ${ISO} || '"'
  || ',"yanked":' || (case when r.yanked then 'true' else 'false' end) || ',"yanked_reason":' || ${json('r.yanked_reason')}
  || ',"has_sig":false,"comment_text":""}'`;

/** JSON_API_FILE with `base` bound as a parameter where it says $BASE. */
function jsonApiFile(base: string): RawBuilder<string> {
  const [before, after] = JSON_API_FILE.split('$BASE');
  return sql<string>`${sql.raw(before!)}${base}${sql.raw(after!)}`;
}

/** One release's part of the list: its files in name order, as the form joins them. */
function releasePart(form: FileForm): RawBuilder<string> {
  if (form === 'simple-json') return sql.raw(`string_agg(${SIMPLE_JSON_FILE}, ',' order by f.filename)`);
  if (form === 'simple-html') return sql.raw(`string_agg(${SIMPLE_HTML_LINK}, '' order by f.filename)`);
  return sql<string>`to_json(r.version)::text || ':[' || string_agg(${jsonApiFile(form.jsonApiBase)}, ',' order by f.filename) || ']'`;
}

/**
 * Every release's part, in PEP 440 order of the releases (then by id, so equal keys keep one order), a
 * batch of releases at a time: a keyset cursor on (sort_key, id) through the release order index, so a
 * giant's files are never in memory at once and no connection is held while a slow client reads.
 * Releases without files have no part. Simple forms join parts with `,` (JSON) or nothing (HTML); the
 * JSON API's parts are `"<version>":[…]` entries of its `releases` object.
 */
export async function* releaseParts(
  read: Reads,
  projectId: string,
  form: FileForm,
  releasesPerBatch = RELEASES_PER_BATCH,
): AsyncGenerator<string[]> {
  let after: { sortKey: string; id: string } | undefined;
  const part = releasePart(form);
  for (;;) {
    const from = after;
    const releases = await read((db) =>
      db
        .selectFrom('releases')
        .select(['id', 'sort_key'])
        .where('project_id', '=', projectId)
        .$if(from !== undefined, (q) =>
          q.where((eb) =>
            eb.or([eb('sort_key', '>', from!.sortKey), eb.and([eb('sort_key', '=', from!.sortKey), eb('id', '>', from!.id)])]),
          ),
        )
        .orderBy('sort_key')
        .orderBy('id')
        .limit(releasesPerBatch)
        .execute(),
    );
    if (releases.length === 0) return;
    const ids = releases.map((r) => r.id);
    const rows = await read((db) =>
      sql<{ part: string }>`select ${part} as part from releases r join files f on f.release_id = r.id
      where r.id = any(${ids}::bigint[]) group by r.id order by r.sort_key, r.id`.execute(db),
    );
    if (rows.rows.length > 0) yield rows.rows.map((r) => r.part);
    if (releases.length < releasesPerBatch) return;
    const last = releases[releases.length - 1]!;
    after = { sortKey: last.sort_key, id: last.id };
  }
}

/** One release's files as a JSON API array (`[…]`), in name order, URLs absolute on `base`. */
export async function releaseFileList(db: Kysely<IndexDatabase>, releaseId: string, base: string): Promise<string> {
  const row = await sql<{ list: string | null }>`select '[' || string_agg(${jsonApiFile(base)}, ',' order by f.filename) || ']' as list
    from files f join releases r on r.id = f.release_id where f.release_id = ${releaseId}`.execute(db);
  return row.rows[0]?.list ?? '[]';
}
