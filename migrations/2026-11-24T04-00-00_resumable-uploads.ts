import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // tus uploads in progress. The row is the upload's truth: `upload_offset` counts only bytes that
  // are durable in the store, and `hash_state` is the SHA-256 state over exactly those bytes, so
  // any instance can resume the upload (after a crash too) without reading it again.
  await db.schema
    .createTable('resumable_uploads')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('created_by_key_id', 'text', (c) => c.notNull().references('api_keys.id'))
    .addColumn('actor', 'jsonb', (c) => c.notNull())
    .addColumn('fields', 'jsonb', (c) => c.notNull())
    .addColumn('metadata', 'jsonb', (c) => c.notNull())
    .addColumn('filename', 'text')
    .addColumn('upload_length', 'bigint', (c) => c.notNull().check(sql`upload_length > 0`))
    .addColumn('upload_offset', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('storage_key', 'text', (c) => c.notNull().unique())
    .addColumn('storage_state', 'jsonb', (c) => c.notNull())
    .addColumn('hash_state', 'bytea')
    .addColumn('head', 'bytea', (c) => c.notNull().defaultTo(sql`'\\x'::bytea`))
    .addColumn('content_type', 'text')
    .addColumn('item_id', 'uuid', (c) => c.references('evidence_items.id'))
    .addColumn('result', 'jsonb')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addCheckConstraint(
      'resumable_uploads_offset_check',
      sql`upload_offset >= 0 and upload_offset <= upload_length`,
    )
    .execute();
  await db.schema
    .createIndex('resumable_uploads_expires_idx')
    .on('resumable_uploads')
    .column('expires_at')
    .execute();

  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert, update, delete on resumable_uploads to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('resumable_uploads').execute();
}
