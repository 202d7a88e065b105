import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // A long station recording covers several orders: each scan event marks the part of the clip
  // that belongs to one order.
  await db.schema
    .createTable('segments')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('item_id', 'uuid', (c) => c.notNull().references('evidence_items.id'))
    .addColumn('order_id', 'text', (c) => c.notNull())
    .addColumn('tracking_number', 'text')
    .addColumn('start_sec', sql`numeric(12, 3)`, (c) => c.notNull().check(sql`start_sec >= 0`))
    .addColumn('end_sec', sql`numeric(12, 3)`, (c) => c.notNull())
    .addColumn('created_by_key_id', 'text', (c) => c.notNull().references('api_keys.id'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('segments_order', sql`end_sec > start_sec`)
    .addUniqueConstraint('segments_unique', ['item_id', 'order_id', 'start_sec', 'end_sec'])
    .execute();
  await sql`create index segments_order_idx on segments (order_id, item_id)`.execute(db);

  // The cut of a segment (ffmpeg stream copy): a derivative like the others, content-addressed
  // under derived/, recording the parent's hash and the offsets it was cut at.
  await db.schema
    .createTable('segment_cuts')
    .addColumn('segment_id', 'uuid', (c) => c.primaryKey().references('segments.id'))
    .addColumn('item_id', 'uuid', (c) => c.notNull().references('evidence_items.id'))
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sql`status in ('ready', 'failed', 'purged')`),
    )
    .addColumn('source_sha256', 'text', (c) =>
      c.notNull().check(sql`source_sha256 ~ '^[0-9a-f]{64}$'`),
    )
    .addColumn('sha256', 'text', (c) => c.check(sql`sha256 ~ '^[0-9a-f]{64}$'`))
    .addColumn('size_bytes', 'bigint')
    .addColumn('content_type', 'text')
    .addColumn('blob_key', 'text')
    .addColumn('detail', 'text')
    .addColumn('params', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint(
      'segment_cuts_ready_complete',
      sql`status <> 'ready' or (sha256 is not null and size_bytes is not null
        and content_type is not null and blob_key is not null)`,
    )
    .execute();
  await sql`create index segment_cuts_sha256_idx on segment_cuts (sha256) where status = 'ready'`.execute(
    db,
  );
  // Same rule as for the other derivatives: made from the archived bytes, never from a deleted item.
  await sql`create or replace function check_media_source() returns trigger language plpgsql as $$
    declare
      item record;
    begin
      select sha256, deleted_at into item from evidence_items where id = new.item_id;
      if new.source_sha256 is distinct from item.sha256 then
        raise exception 'media of item % must be made from its archived bytes', new.item_id
          using errcode = 'check_violation';
      end if;
      if tg_table_name <> 'item_media' and new.status = 'ready' and item.deleted_at is not null then
        raise exception 'item % is deleted; nothing is derived from it', new.item_id
          using errcode = 'check_violation';
      end if;
      return new;
    end $$`.execute(db);
  await sql`create trigger segment_cuts_source before insert or update on segment_cuts
    for each row execute function check_media_source()`.execute(db);

  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert on segments to evidence_app;
        grant select, insert, update on segment_cuts to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('segment_cuts').execute();
  await db.schema.dropTable('segments').execute();
}
