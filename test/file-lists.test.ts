import type { IndexDatabase } from '../package-index/schema.js';
import { expect } from 'chai';
import { sql } from 'kysely';
import { releaseFileList, releaseParts } from '../app/file-lists.js';
import { releaseFiles, type FileRow } from '../app/queries.js';
import { seedIndex } from '../app/seed.js';
import { connect } from '../lib/database.js';
import { escapeHtml } from '../lib/html.js';
import { services } from './support/services.js';

// What the pages were built from before PostgreSQL rendered them: a file row turned into an object and
// stringified, or into an escaped anchor. The SQL must give these bytes exactly.
const simpleJson = (f: FileRow) =>
  JSON.stringify({
    filename: f.filename,
    url: `/packages/${f.path}`,
    hashes: { sha256: f.sha256_digest },
    'requires-python': f.requires_python,
    yanked: f.yanked ? f.yanked_reason || true : false,
    'core-metadata': f.metadata_sha256 ? { sha256: f.metadata_sha256 } : false,
    'dist-info-metadata': f.metadata_sha256 ? { sha256: f.metadata_sha256 } : false,
    size: Number(f.size),
    'upload-time': f.upload_time.toISOString(),
  });
const htmlLink = (f: FileRow) => {
  const attrs = [`href="${escapeHtml(`/packages/${f.path}`)}#sha256=${f.sha256_digest}"`];
  if (f.requires_python) attrs.push(`data-requires-python="${escapeHtml(f.requires_python)}"`);
  if (f.metadata_sha256)
    attrs.push(`data-core-metadata="sha256=${f.metadata_sha256}"`, `data-dist-info-metadata="sha256=${f.metadata_sha256}"`);
  if (f.yanked) attrs.push(`data-yanked="${escapeHtml(f.yanked_reason ?? '')}"`);
  return `    <a ${attrs.join(' ')}>${escapeHtml(f.filename)}</a><br/>\n`;
};
const jsonApi = (f: FileRow, base: string) => {
  const iso = f.upload_time.toISOString();
  return JSON.stringify({
    filename: f.filename,
    packagetype: f.packagetype,
    python_version: f.python_version,
    requires_python: f.requires_python,
    size: Number(f.size),
    digests: {
      ...(f.blake2_256_digest ? { blake2b_256: f.blake2_256_digest } : {}),
      ...(f.md5_digest ? { md5: f.md5_digest } : {}),
      sha256: f.sha256_digest,
    },
    md5_digest: f.md5_digest,
    url: `${base}/packages/${f.path}`,
    upload_time: iso.slice(0, 19),
    upload_time_iso_8601: iso,
    yanked: f.yanked,
    yanked_reason: f.yanked_reason,
    has_sig: false,
    comment_text: '',
  });
};

describe('file lists rendered by PostgreSQL: the same bytes JSON.stringify and escapeHtml gave', function () {
  this.timeout(60_000);

  it('renders every kind of file and release (yanked with and without a reason, no metadata, text that needs escaping) exactly', async () => {
    const s = await services();
    const db = connect<IndexDatabase>(s.primaryUrl, { max: 2 });
    try {
      const summary = await seedIndex(db, { projects: 0, giants: 1, giantReleases: 40, seed: 5, prefix: `fl${process.pid}` });
      const project = await db
        .selectFrom('projects')
        .select('id')
        .where('normalized_name', '=', summary.giants[0]!)
        .executeTakeFirstOrThrow();
      const releases = await db.selectFrom('releases').select('id').where('project_id', '=', project.id).orderBy('sort_key').execute();
      const awkward = `<b> & "quotes" 'apostrophe' \\ back\nline\ttab \u0001 control é 😀 \u2028`;
      // Make the rows as awkward as the columns allow.
      await db.updateTable('releases').set({ yanked: true, yanked_reason: awkward }).where('id', '=', releases[1]!.id).execute();
      await db.updateTable('releases').set({ yanked: true, yanked_reason: '' }).where('id', '=', releases[2]!.id).execute();
      await db.updateTable('releases').set({ yanked: true, yanked_reason: null }).where('id', '=', releases[3]!.id).execute();
      const someFiles = await db
        .selectFrom('files')
        .select('id')
        .where(
          'release_id',
          'in',
          releases.slice(0, 6).map((r) => r.id),
        )
        .orderBy('id')
        .execute();
      const ids = someFiles.map((f) => f.id);
      await db
        .updateTable('files')
        .set({ requires_python: `>=3.8, <4 ${awkward}`, metadata_sha256: null, md5_digest: null, blake2_256_digest: null })
        .where('id', '=', ids[0]!)
        .execute();
      await db.updateTable('files').set({ requires_python: '' }).where('id', '=', ids[1]!).execute();
      await db.updateTable('files').set({ requires_python: null }).where('id', '=', ids[2]!).execute();
      await db
        .updateTable('files')
        .set({ path: `a/b/${awkward}.whl` })
        .where('id', '=', ids[3]!)
        .execute();
      await sql`update files set upload_time = '2024-02-29 23:59:59.999999+00' where id = ${ids[4]}`.execute(db);
      await sql`update files set upload_time = '1999-12-31 23:00:00.5+05' where id = ${ids[5]}`.execute(db);

      const read = <T>(fn: (d: typeof db) => Promise<T>) => fn(db);
      const rows: FileRow[][] = [];
      for (const r of releases) rows.push(await releaseFiles(db, r.id));
      const withFiles = rows.filter((files) => files.length > 0);
      const collect = async (form: Parameters<typeof releaseParts>[2]) => {
        const out: string[] = [];
        // Batches of 7 releases: several batches, a last one short.
        for await (const batch of releaseParts(read, project.id, form, 7)) out.push(...batch);
        return out;
      };
      const base = 'https://pypi.example.org';
      expect(await collect('simple-json')).to.deep.equal(withFiles.map((files) => files.map(simpleJson).join(',')));
      expect(await collect('simple-html')).to.deep.equal(withFiles.map((files) => files.map(htmlLink).join('')));
      expect(await collect({ jsonApiBase: base })).to.deep.equal(
        withFiles.map((files) => `${JSON.stringify(files[0]!.version)}:[${files.map((f) => jsonApi(f, base)).join(',')}]`),
      );
      expect(await releaseFileList(db, releases[0]!.id, base)).to.equal(`[${rows[0]!.map((f) => jsonApi(f, base)).join(',')}]`);
      // The awkward values did reach the rendering.
      expect((await collect('simple-html')).join('')).to.contain('&lt;b&gt; &amp; &quot;quotes&quot; &#39;apostrophe&#39;');
      expect(JSON.parse(`[${(await collect('simple-json')).join(',')}]`).some((f: { yanked: unknown }) => f.yanked === awkward)).to.equal(
        true,
      );
    } finally {
      await db.destroy();
    }
  });

  it("gives an empty list for a release without files, and no part for it in a project's lists", async () => {
    const s = await services();
    const db = connect<IndexDatabase>(s.primaryUrl, { max: 1 });
    try {
      const summary = await seedIndex(db, { projects: 0, giants: 1, giantReleases: 3, seed: 6, prefix: `fe${process.pid}` });
      const project = await db
        .selectFrom('projects')
        .select('id')
        .where('normalized_name', '=', summary.giants[0]!)
        .executeTakeFirstOrThrow();
      const releases = await db.selectFrom('releases').select('id').where('project_id', '=', project.id).orderBy('sort_key').execute();
      await db.deleteFrom('files').where('release_id', '=', releases[1]!.id).execute();
      expect(await releaseFileList(db, releases[1]!.id, '')).to.equal('[]');
      const parts: string[] = [];
      for await (const batch of releaseParts((fn) => fn(db), project.id, 'simple-json')) parts.push(...batch);
      expect(parts.length).to.equal(2);
    } finally {
      await db.destroy();
    }
  });
});
