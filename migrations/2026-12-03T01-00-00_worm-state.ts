import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // WORM protection of each item's blob as read back from the store after promotion (null for
  // items archived before the service checked it).
  await db.schema
    .alterTable('evidence_items')
    .addColumn('worm_status', 'text', (c) =>
      c.check(sql`worm_status in ('in_force', 'not_in_force', 'not_configured')`),
    )
    .addColumn('worm_mode', 'text', (c) => c.check(sql`worm_mode in ('GOVERNANCE', 'COMPLIANCE')`))
    .addColumn('worm_retain_until', 'timestamptz')
    .execute();
  // /readyz counts the items without it: a partial index keeps that cheap.
  await sql`create index evidence_items_worm_not_in_force on evidence_items (id)
    where worm_status = 'not_in_force'`.execute(db);
  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant update (worm_status, worm_mode, worm_retain_until) on evidence_items to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists evidence_items_worm_not_in_force`.execute(db);
  await db.schema
    .alterTable('evidence_items')
    .dropColumn('worm_status')
    .dropColumn('worm_mode')
    .dropColumn('worm_retain_until')
    .execute();
}
