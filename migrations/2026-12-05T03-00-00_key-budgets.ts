import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // Per-key budgets for expensive work, shared by every instance: what a key used in a window
  // (verification bytes per hour, audit pages per minute) ...
  await db.schema
    .createTable('key_budget_usage')
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('budget', 'text', (c) => c.notNull())
    .addColumn('window_start', 'timestamptz', (c) => c.notNull())
    .addColumn('used', 'bigint', (c) => c.notNull())
    .addColumn('refused', 'integer', (c) => c.notNull().defaultTo(0))
    .addPrimaryKeyConstraint('key_budget_usage_pkey', ['key_id', 'budget', 'window_start'])
    .execute();
  // ... and the work a key has in flight (bundle builds), each a lease that ends with the work or,
  // for an instance that died mid-build, when it expires.
  await db.schema
    .createTable('key_budget_leases')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('budget', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute();
  await sql`create index key_budget_leases_key on key_budget_leases (key_id, budget)`.execute(db);

  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert, update, delete on key_budget_usage, key_budget_leases to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('key_budget_leases').execute();
  await db.schema.dropTable('key_budget_usage').execute();
}
