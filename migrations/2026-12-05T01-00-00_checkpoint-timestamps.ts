import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // The RFC 3161 timestamp of each audit checkpoint, or the attempts to get one: a row with no
  // `gen_time` is still queued (`next_attempt_at`, `attempts`, `last_error`). The token itself is
  // in the custody record store at `object_key`; `token` keeps a copy beside the checkpoint row.
  await db.schema
    .createTable('checkpoint_timestamps')
    .addColumn('seq', 'bigint', (c) =>
      c.primaryKey().references('audit_checkpoints.seq').onDelete('restrict'),
    )
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_error', 'text')
    .addColumn('authority', 'text')
    .addColumn('gen_time', 'timestamptz')
    .addColumn('serial', 'text')
    .addColumn('signer', 'text')
    .addColumn('token', 'bytea')
    .addColumn('object_key', 'text')
    .addCheckConstraint(
      'checkpoint_timestamps_stamped_check',
      sql`(gen_time is null) = (token is null) and (gen_time is null) = (object_key is null)`,
    )
    .execute();
  await sql`create index checkpoint_timestamps_pending on checkpoint_timestamps (next_attempt_at)
    where gen_time is null`.execute(db);
  await sql`create index checkpoint_timestamps_stamped on checkpoint_timestamps (seq)
    where gen_time is not null`.execute(db);

  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert, update on checkpoint_timestamps to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('checkpoint_timestamps').execute();
}
