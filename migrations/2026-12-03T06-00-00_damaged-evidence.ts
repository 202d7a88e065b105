import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // Bytes found not to hash to the archived SHA-256 (by a verification, the scrub or a full
  // download) are marked damaged and never served until the genuine bytes repair them.
  // repaired_at lets a check that read the old bytes before a repair not mark the item again.
  await db.schema
    .alterTable('evidence_items')
    .addColumn('damaged_at', 'timestamptz')
    .addColumn('damage_detail', 'jsonb')
    .addColumn('repaired_at', 'timestamptz')
    .execute();
  // What the integrity records already hold: a verification whose bytes hashed to something else
  // (or whose blob had the wrong size) found damage before this column existed.
  await sql`update evidence_items
    set damaged_at = verified_at, damage_detail = verify_detail
    where deleted_at is null and (
      verify_status = 'size_mismatch'
      or (verify_status = 'mismatch'
        and verify_detail->'computed'->>'sha256' is not null
        and (verify_detail->'computed'->>'sha256' <> sha256
          or verify_detail->'computed'->>'size' <> size_bytes::text)))`.execute(db);
  await sql`create index evidence_items_damaged_idx on evidence_items (damaged_at)
    where damaged_at is not null`.execute(db);
  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant update (damaged_at, damage_detail, repaired_at) on evidence_items to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index evidence_items_damaged_idx`.execute(db);
  await db.schema
    .alterTable('evidence_items')
    .dropColumn('damaged_at')
    .dropColumn('damage_detail')
    .dropColumn('repaired_at')
    .execute();
}
