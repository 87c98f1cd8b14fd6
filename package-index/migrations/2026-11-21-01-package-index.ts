import { sql } from 'kysely';
import type { UntypedDb } from '../../migrations/untyped.js';

/** The package index: accounts, tokens, projects, releases, files and the change journal. */
export async function up(db: UntypedDb): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('username', 'text', (c) => c.notNull().unique())
    .addColumn('password_hash', 'text')
    .addColumn('email', 'text')
    .addColumn('is_active', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('api_tokens')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('user_id', 'bigint', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
    // Only a SHA-256 of the token is kept: a leaked table leaks no usable token.
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_used_at', 'timestamptz')
    .execute();
  await db.schema.createIndex('api_tokens_user_id_idx').on('api_tokens').column('user_id').execute();

  await db.schema
    .createTable('projects')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('normalized_name', 'text', (c) =>
      c
        .notNull()
        .unique()
        .check(sql`normalized_name ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'`),
    )
    .addColumn('last_serial', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema
    .createTable('project_roles')
    .addColumn('project_id', 'bigint', (c) => c.notNull().references('projects.id').onDelete('cascade'))
    .addColumn('user_id', 'bigint', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('role', 'text', (c) => c.notNull().check(sql`role IN ('Owner', 'Maintainer')`))
    .addPrimaryKeyConstraint('project_roles_pk', ['project_id', 'user_id'])
    .execute();
  await db.schema.createIndex('project_roles_user_id_idx').on('project_roles').column('user_id').execute();

  await db.schema
    .createTable('releases')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('project_id', 'bigint', (c) => c.notNull().references('projects.id').onDelete('cascade'))
    .addColumn('version', 'text', (c) => c.notNull())
    .addColumn('canonical_version', 'text', (c) => c.notNull())
    .addColumn('summary', 'text')
    .addColumn('requires_python', 'text')
    .addColumn('metadata', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('yanked', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('yanked_reason', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('releases_project_version_key', ['project_id', 'canonical_version'])
    .execute();
  // Listings page through a project's releases newest first; never load them all.
  await db.schema.createIndex('releases_project_created_idx').on('releases').columns(['project_id', 'created_at desc']).execute();

  await db.schema
    .createTable('files')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('release_id', 'bigint', (c) => c.notNull().references('releases.id').onDelete('cascade'))
    .addColumn('filename', 'text', (c) => c.notNull().unique())
    .addColumn('packagetype', 'text', (c) => c.notNull().check(sql`packagetype IN ('sdist', 'bdist_wheel')`))
    .addColumn('python_version', 'text', (c) => c.notNull())
    .addColumn('requires_python', 'text')
    .addColumn('size', 'bigint', (c) => c.notNull().check(sql`size >= 0`))
    .addColumn('sha256_digest', 'text', (c) => c.notNull().check(sql`sha256_digest ~ '^[0-9a-f]{64}$'`))
    .addColumn('path', 'text', (c) => c.notNull())
    .addColumn('upload_time', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('files_release_id_idx').on('files').column('release_id').execute();
  await db.schema.createIndex('files_sha256_idx').on('files').column('sha256_digest').execute();

  // The journal's id is the serial that mirrors and `last_serial` follow.
  await db.schema
    .createTable('journal')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('project_name', 'text', (c) => c.notNull())
    .addColumn('version', 'text')
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('submitted_by', 'text')
    .addColumn('submitted_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('journal_project_name_idx').on('journal').column('project_name').execute();
}

export async function down(db: UntypedDb): Promise<void> {
  for (const table of ['journal', 'files', 'releases', 'project_roles', 'projects', 'api_tokens', 'users']) {
    await db.schema.dropTable(table).execute();
  }
}
