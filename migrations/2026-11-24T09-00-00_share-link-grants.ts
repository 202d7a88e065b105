import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // The service changes a share link only to revoke it and to count its uses: it may not
  // lengthen a link's life, point it elsewhere, swap its token or un-revoke it.
  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        revoke update on share_links from evidence_app;
        grant update (revoked_at, revoked_by_key_id, use_count, last_used_at)
          on share_links to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant update on share_links to evidence_app;
      end if;
    end $$`.execute(db);
}
