import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // `expired`: the blob was under retention, and the store confirms its retain-until has passed
  // (recorded by the scrub, which revisits items whose recorded retention lapsed).
  await sql`alter table evidence_items drop constraint if exists evidence_items_worm_status_check`.execute(
    db,
  );
  await sql`alter table evidence_items add constraint evidence_items_worm_status_check
    check (worm_status in ('in_force', 'not_in_force', 'expired', 'not_configured'))`.execute(db);
  // The scrub's revisit finds items whose recorded retention lapsed by date.
  await sql`create index evidence_items_worm_in_force_until on evidence_items (worm_retain_until)
    where worm_status = 'in_force'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists evidence_items_worm_in_force_until`.execute(db);
  await sql`update evidence_items set worm_status = 'not_in_force' where worm_status = 'expired'`.execute(
    db,
  );
  await sql`alter table evidence_items drop constraint if exists evidence_items_worm_status_check`.execute(
    db,
  );
  await sql`alter table evidence_items add constraint evidence_items_worm_status_check
    check (worm_status in ('in_force', 'not_in_force', 'not_configured'))`.execute(db);
}
