import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
//
// Events are recorded before they are linked. A request's event is inserted here (a write's in
// the write's own transaction, so the change and its record still commit together), with no lock
// on the chain head; a chainer moves the waiting events into `audit_events` a batch at a time,
// under the head's lock, assigning their seq and hashes in `id` order. Appends then scale with
// writers and instances: only the chainer, once per batch, holds the head. A waiting event is
// never changed (UPDATE is refused); it is deleted only as it is linked, in the transaction that
// inserts it into the chain.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table audit_pending (
      id bigint generated always as identity primary key,
      occurred_at timestamptz not null,
      action text not null,
      outcome text not null check (outcome in ('success', 'denied', 'failed')),
      actor_key_id text,
      actor_role text,
      actor_name text,
      item_ids text[] not null default '{}',
      complaint_id text,
      request_id text,
      client_ip text,
      details jsonb not null default '{}',
      durable boolean not null
    )`.execute(db);
  await sql`create trigger audit_pending_immutable before update on audit_pending
    for each row execute function refuse_audit_change()`.execute(db);
  await sql`revoke update, truncate on audit_pending from public`.execute(db);
  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert, delete on audit_pending to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table audit_pending`.execute(db);
}
