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
  // Existing rows are numbered in the order they were received (an identity added in one step
  // would number them in their physical order, which updates shuffle); new rows continue after.
  await sql`alter table provider_recordings add column seq bigint`.execute(db);
  await sql`update provider_recordings p set seq = o.n
    from (select provider, recording_sid,
            row_number() over (order by received_at, provider, recording_sid) as n
          from provider_recordings) o
    where p.provider = o.provider and p.recording_sid = o.recording_sid`.execute(db);
  await sql`alter table provider_recordings alter column seq set not null`.execute(db);
  await sql`alter table provider_recordings alter column seq add generated always as identity`.execute(
    db,
  );
  await sql`select setval(pg_get_serial_sequence('provider_recordings', 'seq'),
    coalesce(max(seq), 0) + 1, false) from provider_recordings`.execute(db);
  await sql`create unique index provider_recordings_status_seq on provider_recordings (status, seq)`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  // The schema before this migration cannot hold an `absent` recording (it has no media URL):
  // going back would have to delete the record of a gap, so it is refused until someone decides.
  const { rows } = await sql<{
    n: string;
  }>`select count(*) as n from provider_recordings where status = 'absent'`.execute(db);
  const absent = Number(rows[0]?.n ?? 0);
  if (absent > 0) {
    throw new Error(
      `Refusing to undo 2026-12-04T02-00-00_provider-recording-gaps: provider_recordings holds ${absent} recording(s) with status 'absent' (the provider made no recording), which the older schema cannot hold. Export them (GET /v1/integrations/recordings?status=absent) and delete them yourself first if you really mean to lose that record.`,
    );
  }
  await sql`drop index if exists provider_recordings_status_seq`.execute(db);
  await sql`alter table provider_recordings drop column if exists seq`.execute(db);
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
