import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // Recordings a provider told us about (Twilio's recording callback): one row per recording,
  // so a callback delivered five times is fetched once, and what happened to each is on record.
  await db.schema
    .createTable('provider_recordings')
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('recording_sid', 'text', (c) => c.notNull())
    .addColumn('call_sid', 'text')
    .addColumn('account_sid', 'text')
    .addColumn('media_url', 'text', (c) => c.notNull())
    .addColumn('duration_seconds', 'integer')
    .addColumn('channels', 'integer')
    .addColumn('recording_source', 'text')
    .addColumn('started_at', 'timestamptz')
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sql`status in ('queued', 'archived', 'failed')`),
    )
    .addColumn('item_id', 'uuid', (c) => c.references('evidence_items.id'))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('last_error', 'text')
    .addColumn('received_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('provider_recordings_pk', ['provider', 'recording_sid'])
    .execute();

  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert, update on provider_recordings to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('provider_recordings').execute();
}
