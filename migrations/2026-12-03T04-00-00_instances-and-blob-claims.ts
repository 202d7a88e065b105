import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // Every running process (service or worker) that writes to the store. It is live while it holds
  // the session advisory lock (space 0x696e73, lock_key) on its own connection: PostgreSQL drops
  // that lock the moment the process dies, even by SIGKILL. Staging keys carry the writer's id.
  await db.schema
    .createTable('service_instances')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('lock_key', 'integer', (c) => c.notNull().unique().generatedAlwaysAsIdentity())
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('pid', 'integer', (c) => c.notNull())
    .addColumn('started_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('seen_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  // A blob being promoted by a request of a live instance, before its item row commits. The
  // item's transaction deletes the claim; a claim left by a request that failed, or by an instance
  // that died, tells the reconciler which blob may have no row (and must go).
  await db.schema
    .createTable('blob_claims')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('instance_id', 'uuid', (c) => c.notNull())
    .addColumn('sha256', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex('blob_claims_sha256_idx')
    .on('blob_claims')
    .column('sha256')
    .execute();
  await db.schema
    .createIndex('blob_claims_instance_idx')
    .on('blob_claims')
    .column('instance_id')
    .execute();
  // The reconciler asks whether an unarchived resumable upload holds a digest's bytes.
  await db.schema
    .createIndex('resumable_uploads_sha256_idx')
    .on('resumable_uploads')
    .column('sha256')
    .execute();

  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert, update, delete on service_instances, blob_claims to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('resumable_uploads_sha256_idx').execute();
  await db.schema.dropTable('blob_claims').execute();
  await db.schema.dropTable('service_instances').execute();
}
