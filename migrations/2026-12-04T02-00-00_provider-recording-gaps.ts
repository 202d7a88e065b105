import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // `absent`: the provider says the call has no recording (Twilio's RecordingStatus=absent, no
  // audio, no media URL). Kept as a known gap, so its absence is on record and never a loss of ours.
  await sql`alter table provider_recordings drop constraint if exists provider_recordings_status_check`.execute(
    db,
  );
  await sql`alter table provider_recordings add constraint provider_recordings_status_check
    check (status in ('queued', 'archived', 'failed', 'absent'))`.execute(db);
  await sql`alter table provider_recordings alter column media_url drop not null`.execute(db);
  await sql`alter table provider_recordings add constraint provider_recordings_media_url_check
    check (media_url is not null or status = 'absent')`.execute(db);
  // Announcement order, for listing recordings a page at a time (the cursor is this number).
  await sql`alter table provider_recordings add column seq bigint generated always as identity`.execute(
    db,
  );
  await sql`create unique index provider_recordings_status_seq on provider_recordings (status, seq)`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists provider_recordings_status_seq`.execute(db);
  await sql`alter table provider_recordings drop column if exists seq`.execute(db);
  await sql`delete from provider_recordings where status = 'absent'`.execute(db);
  await sql`alter table provider_recordings drop constraint if exists provider_recordings_media_url_check`.execute(
    db,
  );
  await sql`alter table provider_recordings alter column media_url set not null`.execute(db);
  await sql`alter table provider_recordings drop constraint if exists provider_recordings_status_check`.execute(
    db,
  );
  await sql`alter table provider_recordings add constraint provider_recordings_status_check
    check (status in ('queued', 'archived', 'failed'))`.execute(db);
}
