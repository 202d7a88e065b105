import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // A search by phone number reads the calls from it and the calls to it each in the search's
  // (captured_at, id) order and stops after a page: the number's calls in that order, id included,
  // so neither side sorts (a shop's own line is on millions of calls) and a page's cursor is part
  // of the index condition. They replace the (number, captured_at) indexes.
  await sql`create index evidence_items_from_order_idx
    on evidence_items (from_number_e164, captured_at, id) where from_number_e164 is not null`.execute(
    db,
  );
  await sql`create index evidence_items_to_order_idx
    on evidence_items (to_number_e164, captured_at, id) where to_number_e164 is not null`.execute(
    db,
  );
  await sql`drop index evidence_items_from_idx`.execute(db);
  await sql`drop index evidence_items_to_idx`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`create index evidence_items_from_idx on evidence_items (from_number_e164, captured_at)
    where from_number_e164 is not null`.execute(db);
  await sql`create index evidence_items_to_idx on evidence_items (to_number_e164, captured_at)
    where to_number_e164 is not null`.execute(db);
  await sql`drop index evidence_items_to_order_idx`.execute(db);
  await sql`drop index evidence_items_from_order_idx`.execute(db);
}
