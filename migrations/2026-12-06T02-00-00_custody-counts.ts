import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // The custody status and the metrics report how many items are archived and deleted without
  // counting ten million rows on every scrape. Each statement that archives or tombstones items
  // appends its delta here (an insert never waits for another transaction, so concurrent ingest
  // on any number of instances never queues on a counter row); the total is the sum of the rows,
  // exact in every transaction's snapshot. Readers fold the rows into one when they pile up.
  // The key is only a replica identity (logical replication of the folds' deletes): the rows are
  // only ever summed, and folded (deleted and re-inserted as one).
  await db.schema
    .createTable('evidence_item_counts')
    .addColumn('id', 'bigint', (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn('archived', 'bigint', (c) => c.notNull())
    .addColumn('deleted', 'bigint', (c) => c.notNull())
    .execute();

  await sql`create function count_archived_items() returns trigger language plpgsql as $$
    declare
      a bigint;
      d bigint;
    begin
      select count(*) filter (where deleted_at is null), count(*) filter (where deleted_at is not null)
        into a, d from inserted;
      -- ON CONFLICT DO NOTHING (a duplicate upload) inserts nothing: no row for it.
      if a + d > 0 then
        insert into evidence_item_counts (archived, deleted) values (a, d);
      end if;
      return null;
    end $$`.execute(db);
  await sql`create trigger evidence_items_count_inserts after insert on evidence_items
    referencing new table as inserted
    for each statement execute function count_archived_items()`.execute(db);

  // Tombstones are never undone (guard_evidence_items): a deletion moves one item across.
  await sql`create function count_deleted_item() returns trigger language plpgsql as $$
    begin
      insert into evidence_item_counts (archived, deleted) values (-1, 1);
      return null;
    end $$`.execute(db);
  await sql`create trigger evidence_items_count_deletion after update of deleted_at on evidence_items
    for each row when (old.deleted_at is null and new.deleted_at is not null)
    execute function count_deleted_item()`.execute(db);

  // Rows are never deleted (the guard refuses), but an owner can truncate: the counts follow.
  await sql`create function count_truncated_items() returns trigger language plpgsql as $$
    begin
      delete from evidence_item_counts;
      return null;
    end $$`.execute(db);
  await sql`create trigger evidence_items_count_truncate after truncate on evidence_items
    for each statement execute function count_truncated_items()`.execute(db);

  // What is archived already, counted once. The triggers above exist from here on and creating
  // them locked out writers until this migration commits, so nothing is counted twice or missed.
  await sql`insert into evidence_item_counts (archived, deleted)
    select count(*) filter (where deleted_at is null), count(*) filter (where deleted_at is not null)
    from evidence_items`.execute(db);

  // The small custody sets are counted exactly, each from a partial index of its own rows:
  // failing verifications (also listed newest first, and counted by status, on the status page),
  // damaged live items, active holds. Never-verified items and unpurged tombstones already have
  // theirs (evidence_items_verify_idx, evidence_items_unpurged_idx).
  await sql`create index evidence_items_failing_idx on evidence_items (verified_at desc)
    include (verify_status) where deleted_at is null and verify_status <> 'ok'`.execute(db);
  await sql`create index evidence_items_damaged_live_idx on evidence_items (damaged_at)
    where damaged_at is not null and deleted_at is null`.execute(db);
  await sql`create index legal_holds_active_idx on legal_holds (placed_at) where released_at is null`.execute(
    db,
  );

  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert, delete on evidence_item_counts to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index legal_holds_active_idx`.execute(db);
  await sql`drop index evidence_items_damaged_live_idx`.execute(db);
  await sql`drop index evidence_items_failing_idx`.execute(db);
  await sql`drop trigger evidence_items_count_truncate on evidence_items`.execute(db);
  await sql`drop trigger evidence_items_count_deletion on evidence_items`.execute(db);
  await sql`drop trigger evidence_items_count_inserts on evidence_items`.execute(db);
  await sql`drop function count_truncated_items()`.execute(db);
  await sql`drop function count_deleted_item()`.execute(db);
  await sql`drop function count_archived_items()`.execute(db);
  await db.schema.dropTable('evidence_item_counts').execute();
}
