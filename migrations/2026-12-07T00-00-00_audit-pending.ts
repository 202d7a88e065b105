import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
//
// Events are recorded before they are linked. A request's event is inserted here (a write's in
// the write's own transaction, so the change and its record still commit together), with no lock
// on the chain head; a chainer moves the waiting events into `audit_events` a batch at a time,
// under the head's lock, assigning their seq and hashes in `id` order. Appends then scale with
// writers and instances: only the chainer, once per batch, holds the head.
//
// A waiting event is never changed (UPDATE is refused, to the owner too) and the service's role
// cannot delete one: it leaves the table only through `audit_link_events`, which takes it out in
// the same statement that inserts the very same event into the chain. So SQL reaching the
// service's connection cannot make a recorded event vanish before it is linked; it could only
// link it out of place, which breaks the chain where verify-audit looks.
export async function up(db: Kysely<any>): Promise<void> {
  // The item ids are checked here as the chain's item index would (no NULL, no repeat): an event
  // the chain could not take must be refused when it is recorded, not stop the linking of every
  // event after it.
  await sql`create function audit_item_ids_valid(ids text[]) returns boolean
      language sql immutable
      return array_position(ids, null) is null
        and cardinality(ids) = (select count(distinct i) from unnest(ids) i)`.execute(db);
  await sql`create table audit_pending (
      id bigint generated always as identity primary key,
      occurred_at timestamptz not null,
      action text not null,
      outcome text not null check (outcome in ('success', 'denied', 'failed')),
      actor_key_id text,
      actor_role text,
      actor_name text,
      item_ids text[] not null default '{}' check (audit_item_ids_valid(item_ids)),
      complaint_id text,
      request_id text,
      client_ip text,
      details jsonb not null default '{}',
      durable boolean not null
    )`.execute(db);
  // A queue: every row is inserted and soon deleted. Vacuumed after every 10,000 dead rows rather
  // than a fraction of a table that is nearly always empty, so the chainer's `order by id` reads
  // do not wade through dead index entries.
  await sql`alter table audit_pending set (autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000, autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000)`.execute(db);
  await sql`create trigger audit_pending_immutable before update on audit_pending
    for each row execute function refuse_audit_change()`.execute(db);
  await sql`revoke update, delete, truncate on audit_pending from public`.execute(db);

  // Links a batch: `events` are the chained rows (seq, hashes) of waiting events, each naming the
  // waiting row it came from (`pending_id`). Every one of those rows is taken out of the table,
  // and only if it holds exactly that event; the events and their item index rows are inserted in
  // the same statement. Anything else (a row gone, or different) fails the whole batch.
  await sql`do $do$ begin
      execute format($f$
        create function audit_link_events(events jsonb) returns integer
          language plpgsql security definer
          set search_path = %I, pg_temp
        as $body$
        declare
          wanted integer := jsonb_array_length(events);
          taken integer;
        begin
          with e as (
            select * from jsonb_to_recordset(events) as e(pending_id bigint, seq bigint,
              occurred_at timestamptz, action text, outcome text, actor_key_id text,
              actor_role text, actor_name text, item_ids text[], complaint_id text,
              request_id text, client_ip text, details jsonb, prev_hash text, hash text)
          ), gone as (
            delete from audit_pending p using e
             where p.id = e.pending_id and p.occurred_at = e.occurred_at
               and p.action = e.action and p.outcome = e.outcome
               and p.actor_key_id is not distinct from e.actor_key_id
               and p.actor_role is not distinct from e.actor_role
               and p.actor_name is not distinct from e.actor_name
               and p.item_ids = e.item_ids
               and p.complaint_id is not distinct from e.complaint_id
               and p.request_id is not distinct from e.request_id
               and p.client_ip is not distinct from e.client_ip
               and p.details = e.details
            returning p.id
          ), linked as (
            insert into audit_events (seq, occurred_at, action, outcome, actor_key_id,
              actor_role, actor_name, item_ids, complaint_id, request_id, client_ip, details,
              prev_hash, hash)
            select e.seq, e.occurred_at, e.action, e.outcome, e.actor_key_id, e.actor_role,
              e.actor_name, e.item_ids, e.complaint_id, e.request_id, e.client_ip, e.details,
              e.prev_hash, e.hash
              from e join gone on gone.id = e.pending_id
            returning seq, occurred_at, item_ids
          ), items as (
            insert into audit_event_items (item_id, seq, occurred_at)
            select unnest(linked.item_ids), linked.seq, linked.occurred_at from linked
          )
          select count(*) into taken from linked;
          if taken <> wanted then
            raise exception 'audit link: %% of %% events match a waiting event', taken, wanted
              using errcode = 'integrity_constraint_violation';
          end if;
          return taken;
        end $body$ $f$, current_schema());
    end $do$`.execute(db);
  await sql`revoke all on function audit_link_events(jsonb) from public`.execute(db);
  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert on audit_pending to evidence_app;
        grant execute on function audit_link_events(jsonb) to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  // Never drops recorded events: link them first (any instance of the new version does).
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from audit_pending`.execute(
    db,
  );
  if (rows[0]!.n > 0) {
    throw new Error(`${rows[0]!.n} audit events wait to be linked: start the service to link them`);
  }
  await sql`drop function audit_link_events(jsonb)`.execute(db);
  await sql`drop table audit_pending`.execute(db);
  await sql`drop function audit_item_ids_valid(text[])`.execute(db);
}
