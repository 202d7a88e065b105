import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // The web app's sign-ins: a support or admin key traded for two random tokens, stored only as
  // SHA-256 hashes (the header token the app sends, the cookie its media elements send). Bound to
  // the key: revoking the key ends them. Rows are kept after they end (who signed in, from where).
  await db.schema
    .createTable('sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('key_id', 'text', (c) => c.notNull().references('api_keys.id').onDelete('restrict'))
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('cookie_hash', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('last_used_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('ended_at', 'timestamptz')
    .addColumn('end_reason', 'text')
    .addColumn('user_agent', 'text')
    .addColumn('client_ip', 'text')
    .addCheckConstraint('sessions_ended_check', sql`(ended_at is null) = (end_reason is null)`)
    .execute();
  await sql`create index sessions_active_by_key on sessions (key_id) where ended_at is null`.execute(
    db,
  );

  // The app opens sessions, marks their use and ends them; it never rewrites who or when.
  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert on sessions to evidence_app;
        grant update (last_used_at, ended_at, end_reason) on sessions to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('sessions').execute();
}
