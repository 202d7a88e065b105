import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // A dispute bundle: a ZIP of a complaint's evidence with a signed manifest, its audit excerpt and
  // instructions. Everything that is not evidence bytes is kept here, as written at creation, so
  // every download gives the very same ZIP bytes.
  await db.schema
    .createTable('bundles')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('complaint_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('created_by_key_id', 'text', (c) => c.notNull().references('api_keys.id'))
    .addColumn('created_by_role', 'text', (c) => c.notNull())
    .addColumn('created_by_name', 'text', (c) => c.notNull())
    // Every item whose bytes (or whose segment's cut) are in the bundle.
    .addColumn('item_ids', sql`text[]`, (c) => c.notNull())
    .addColumn('file_count', 'integer', (c) => c.notNull().check(sql`file_count > 0`))
    .addColumn('total_bytes', 'bigint', (c) => c.notNull().check(sql`total_bytes >= 0`))
    .addColumn('zip_bytes', 'bigint', (c) => c.notNull().check(sql`zip_bytes > 0`))
    .addColumn('manifest', 'text', (c) => c.notNull())
    .addColumn('manifest_sha256', 'text', (c) =>
      c.notNull().check(sql`manifest_sha256 ~ '^[0-9a-f]{64}$'`),
    )
    .addColumn('key_fingerprint', 'text', (c) => c.notNull())
    .addColumn('checkpoint_seq', 'bigint', (c) => c.notNull())
    // The other small files of the ZIP (name -> text, signatures base64), and the evidence entries
    // in ZIP order: [{ path, blobKey, size, sha256 }].
    .addColumn('texts', 'jsonb', (c) => c.notNull())
    .addColumn('entries', 'jsonb', (c) => c.notNull())
    .execute();
  await sql`create index bundles_complaint_idx on bundles (complaint_id, created_at)`.execute(db);

  // A bundle handed to a third party is a record: it is never changed or removed.
  await sql`create function refuse_bundle_change() returns trigger language plpgsql as $$
    begin
      raise exception 'dispute bundles are never changed or deleted'
        using errcode = 'insufficient_privilege';
    end $$`.execute(db);
  await sql`create trigger bundles_frozen before update or delete on bundles
    for each row execute function refuse_bundle_change()`.execute(db);

  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert on bundles to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('bundles').execute();
  await sql`drop function refuse_bundle_change()`.execute(db);
}
