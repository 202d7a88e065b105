import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // A call id is unique per key and phone system, not per phone system alone: otherwise any
  // ingest key could push junk first under another system's (predictable) call ids and make the
  // real recording bounce.
  await sql`drop index evidence_items_call_key`.execute(db);
  await sql`create unique index evidence_items_call_key
    on evidence_items (created_by_key_id, coalesce(source, ''), call_id)
    where call_id is not null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index evidence_items_call_key`.execute(db);
  await sql`create unique index evidence_items_call_key
    on evidence_items (coalesce(source, ''), call_id) where call_id is not null`.execute(db);
}
