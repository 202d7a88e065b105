import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // The background jobs each instance is running now (pg-boss's job rows do not say which
  // process took them): when an instance dies, another sees its lock gone and hands its jobs back
  // to the queue at once, rather than when pg-boss expires them (minutes to hours later).
  await db.schema
    .createTable('job_runs')
    .addColumn('job_id', 'uuid', (c) => c.primaryKey())
    .addColumn('queue', 'text', (c) => c.notNull())
    .addColumn('instance_id', 'uuid', (c) => c.notNull())
    .addColumn('started_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index job_runs_instance on job_runs (instance_id)`.execute(db);
  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert, update, delete on job_runs to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('job_runs').execute();
}
