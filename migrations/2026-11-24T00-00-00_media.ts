import { sql, type Kysely } from 'kysely';

const HEX64 = sql`~ '^[0-9a-f]{64}$'`;

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // What the media pipeline knows about an item: its probe and where processing stands. A row is
  // written with the item at ingest ('pending'), so finding unprocessed items is an index scan.
  await db.schema
    .createTable('item_media')
    .addColumn('item_id', 'uuid', (c) => c.primaryKey().references('evidence_items.id'))
    .addColumn('source_sha256', 'text', (c) => c.notNull().check(sql`source_sha256 ${HEX64}`))
    .addColumn('status', 'text', (c) =>
      c
        .notNull()
        .check(
          sql`status in ('pending', 'processing', 'done', 'partial', 'failed', 'unavailable')`,
        ),
    )
    .addColumn('probe', 'jsonb')
    .addColumn('detail', 'text')
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index item_media_open_idx on item_media (updated_at)
    where status in ('pending', 'processing', 'unavailable')`.execute(db);

  // Derivatives: content-addressed blobs (under derived/ in the store) made from an original,
  // each naming the hash of the original it was made from. The originals are never touched.
  await db.schema
    .createTable('derivatives')
    .addColumn('item_id', 'uuid', (c) => c.notNull().references('evidence_items.id'))
    .addColumn('kind', 'text', (c) =>
      c
        .notNull()
        .check(sql`kind in ('poster', 'contact_sheet', 'waveform', 'preview', 'thumbnail')`),
    )
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sql`status in ('ready', 'failed', 'not_applicable', 'purged')`),
    )
    .addColumn('source_sha256', 'text', (c) => c.notNull().check(sql`source_sha256 ${HEX64}`))
    .addColumn('sha256', 'text', (c) => c.check(sql`sha256 ${HEX64}`))
    .addColumn('size_bytes', 'bigint')
    .addColumn('content_type', 'text')
    .addColumn('blob_key', 'text')
    .addColumn('width', 'integer')
    .addColumn('height', 'integer')
    .addColumn('detail', 'text')
    .addColumn('params', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('derivatives_pk', ['item_id', 'kind'])
    .addCheckConstraint(
      'derivatives_ready_complete',
      sql`status <> 'ready' or (sha256 is not null and size_bytes is not null
        and content_type is not null and blob_key is not null)`,
    )
    .execute();
  await sql`create index derivatives_sha256_idx on derivatives (sha256) where status = 'ready'`.execute(
    db,
  );

  // A derivative or probe always belongs to the bytes the item was archived with, and nothing is
  // stored as derived from an item that was deleted meanwhile.
  await sql`create function check_media_source() returns trigger language plpgsql as $$
    declare
      item record;
    begin
      select sha256, deleted_at into item from evidence_items where id = new.item_id;
      if new.source_sha256 is distinct from item.sha256 then
        raise exception 'media of item % must be made from its archived bytes', new.item_id
          using errcode = 'check_violation';
      end if;
      if tg_table_name = 'derivatives' and new.status = 'ready' and item.deleted_at is not null then
        raise exception 'item % is deleted; nothing is derived from it', new.item_id
          using errcode = 'check_violation';
      end if;
      return new;
    end $$`.execute(db);
  for (const table of ['item_media', 'derivatives']) {
    await sql`create trigger ${sql.raw(`${table}_source`)} before insert or update on ${sql.table(table)}
      for each row execute function check_media_source()`.execute(db);
  }

  // Items archived before this migration are processed too.
  await sql`insert into item_media (item_id, source_sha256, status)
    select id, sha256, 'pending' from evidence_items where deleted_at is null`.execute(db);

  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert, update on item_media, derivatives to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('derivatives').execute();
  await db.schema.dropTable('item_media').execute();
  await sql`drop function check_media_source()`.execute(db);
}
