import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
//
// The audit trail grows with every read (100 reads/s is 8.6 M events a day): `audit_events`
// becomes a table partitioned by month of `occurred_at`, and an item's history gets its own
// index, `audit_event_items (item_id, seq)`, in place of a GIN scan of `item_ids` and a sort.
// Existing events are copied over unchanged (same seq, same hashes), so the chain verifies as
// before. Every partition is append-only like the table was; partitions for the coming months are
// made by `audit_events_prepare_partitions()`, which the service's login may call but which only
// ever adds the current month and the next three; an event in a month without its partition
// lands in `audit_events_default`, so an insert never fails for want of one.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table audit_events rename to audit_events_unpartitioned`.execute(db);
  await sql`alter table audit_events_unpartitioned
    rename constraint audit_events_pkey to audit_events_unpartitioned_pkey`.execute(db);
  for (const index of ['audit_events_item_ids_idx', 'audit_events_complaint_idx']) {
    await sql`drop index ${sql.id(index)}`.execute(db);
  }
  await sql`alter index audit_events_time_idx rename to audit_events_unpartitioned_time_idx`.execute(
    db,
  );

  // seq stays gap-free and unique by construction (assigned under the chain head's lock); a
  // partitioned table's primary key must hold its partition key, so it is (seq, occurred_at):
  // the seq-leading index every page of the trail walks. A second row with an existing seq (only
  // possible for someone inserting behind the service's back) is reported by verify-audit.
  await sql`create table audit_events (
      seq bigint not null check (seq > 0),
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
      prev_hash text not null check (prev_hash ~ '^[0-9a-f]{64}$'),
      hash text not null check (hash ~ '^[0-9a-f]{64}$'),
      constraint audit_events_pkey primary key (seq, occurred_at)
    ) partition by range (occurred_at)`.execute(db);
  await sql`create index audit_events_complaint_idx on audit_events (complaint_id, seq)
    where complaint_id is not null`.execute(db);
  await sql`create index audit_events_time_idx on audit_events (occurred_at, seq)`.execute(db);
  // Row triggers on the partitioned table are cloned onto every partition, present and future;
  // TRUNCATE triggers are not, so each partition gets its own (below and in the function).
  await sql`create trigger audit_events_append_only before update or delete on audit_events
    for each row execute function refuse_audit_change()`.execute(db);
  await sql`create trigger audit_events_no_truncate before truncate on audit_events
    for each statement execute function refuse_audit_change()`.execute(db);
  await sql`revoke update, delete, truncate on audit_events from public`.execute(db);

  await sql`create table audit_events_default partition of audit_events default`.execute(db);
  await sql`create trigger audit_events_default_no_truncate before truncate on audit_events_default
    for each statement execute function refuse_audit_change()`.execute(db);
  await sql`revoke all on audit_events_default from public`.execute(db);

  // One month's partition, made apart and attached (ATTACH takes a lock on the parent that does
  // not stop appends or reads); never one whose rows already sit in the default partition (the
  // attach would fail): those stay there, still verified and read like any other. With a fixed
  // search path and a lock timeout, so a long read holding the trail (verify-audit) delays it
  // rather than queueing every append behind it: it returns false and the next call tries again.
  await sql`do $do$ begin
      execute format($f$
        create function audit_events_add_partition(month date) returns boolean
          language plpgsql security definer
          set search_path = %I, pg_temp
          set lock_timeout = '2s'
        as $body$
        declare
          lo timestamptz := date_trunc('month', month::timestamp) at time zone 'UTC';
          hi timestamptz := (date_trunc('month', month::timestamp) + interval '1 month')
            at time zone 'UTC';
          part text := 'audit_events_p' || to_char(month, 'YYYYMM');
        begin
          if to_regclass(part) is not null then
            return false;
          end if;
          if exists (select 1 from audit_events_default
                      where occurred_at >= lo and occurred_at < hi) then
            return false;
          end if;
          execute format('create table %%I (like audit_events including defaults including constraints)',
            part);
          execute format('alter table %%I add constraint %%I check (occurred_at >= %%L and occurred_at < %%L)',
            part, part || '_range', lo, hi);
          execute format('create trigger %%I before truncate on %%I for each statement execute function refuse_audit_change()',
            part || '_no_truncate', part);
          execute format('revoke all on %%I from public', part);
          execute format('alter table audit_events attach partition %%I for values from (%%L) to (%%L)',
            part, lo, hi);
          return true;
        exception when lock_not_available or duplicate_table or duplicate_object then
          return false;
        end $body$ $f$, current_schema());
    end $do$`.execute(db);
  await sql`revoke all on function audit_events_add_partition(date) from public`.execute(db);

  // What the service calls (a custody job): this month and the next three, nothing else, so the
  // login that may call it can never make the trail grow tables at will.
  await sql`do $do$ begin
      execute format($f$
        create function audit_events_prepare_partitions() returns integer
          language plpgsql security definer
          set search_path = %I, pg_temp
        as $body$
        declare
          made integer := 0;
          m integer;
        begin
          for m in 0..3 loop
            if audit_events_add_partition(
                 ((date_trunc('month', now() at time zone 'UTC') + make_interval(months => m)))::date)
            then
              made := made + 1;
            end if;
          end loop;
          return made;
        end $body$ $f$, current_schema());
    end $do$`.execute(db);
  await sql`revoke all on function audit_events_prepare_partitions() from public`.execute(db);

  // Partitions for every month the existing trail covers, then the coming ones, then the rows.
  await sql`select audit_events_add_partition(m::date)
      from generate_series(
        date_trunc('month', coalesce((select min(occurred_at) from audit_events_unpartitioned),
          now()) at time zone 'UTC'),
        date_trunc('month', greatest(coalesce((select max(occurred_at) from audit_events_unpartitioned),
          now()), now()) at time zone 'UTC'),
        interval '1 month') m`.execute(db);
  await sql`select audit_events_prepare_partitions()`.execute(db);
  await sql`insert into audit_events (seq, occurred_at, action, outcome, actor_key_id, actor_role,
      actor_name, item_ids, complaint_id, request_id, client_ip, details, prev_hash, hash)
    select seq, occurred_at, action, outcome, actor_key_id, actor_role, actor_name, item_ids,
      complaint_id, request_id, client_ip, details, prev_hash, hash
      from audit_events_unpartitioned order by seq`.execute(db);

  // An item's history: one row per (item, event), written with the event, append-only too. The
  // event's time rides along so reading the event back prunes to its one partition.
  await sql`create table audit_event_items (
      item_id text not null,
      seq bigint not null,
      occurred_at timestamptz not null,
      constraint audit_event_items_pkey primary key (item_id, seq)
    )`.execute(db);
  await sql`insert into audit_event_items (item_id, seq, occurred_at)
    select distinct i, seq, occurred_at from audit_events, unnest(item_ids) i`.execute(db);
  await sql`create trigger audit_event_items_append_only before update or delete on audit_event_items
    for each row execute function refuse_audit_change()`.execute(db);
  await sql`create trigger audit_event_items_no_truncate before truncate on audit_event_items
    for each statement execute function refuse_audit_change()`.execute(db);
  await sql`revoke update, delete, truncate on audit_event_items from public`.execute(db);

  await sql`drop table audit_events_unpartitioned`.execute(db);

  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert on audit_events, audit_event_items to evidence_app;
        grant execute on function audit_events_prepare_partitions() to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`create table audit_events_unpartitioned (
      seq bigint primary key check (seq > 0),
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
      prev_hash text not null check (prev_hash ~ '^[0-9a-f]{64}$'),
      hash text not null check (hash ~ '^[0-9a-f]{64}$')
    )`.execute(db);
  await sql`insert into audit_events_unpartitioned select seq, occurred_at, action, outcome,
      actor_key_id, actor_role, actor_name, item_ids, complaint_id, request_id, client_ip, details,
      prev_hash, hash from audit_events order by seq`.execute(db);
  // Dropping is no DELETE or TRUNCATE: the triggers do not fire, and the rows live on above.
  await sql`drop table audit_event_items`.execute(db);
  await sql`drop table audit_events`.execute(db);
  await sql`drop function audit_events_prepare_partitions()`.execute(db);
  await sql`drop function audit_events_add_partition(date)`.execute(db);
  await sql`alter table audit_events_unpartitioned rename to audit_events`.execute(db);
  await sql`alter table audit_events rename constraint audit_events_unpartitioned_pkey
    to audit_events_pkey`.execute(db);
  await sql`create index audit_events_item_ids_idx on audit_events using gin (item_ids)`.execute(
    db,
  );
  await sql`create index audit_events_complaint_idx on audit_events (complaint_id, seq)
    where complaint_id is not null`.execute(db);
  await sql`create index audit_events_time_idx on audit_events (occurred_at, seq)`.execute(db);
  await sql`create trigger audit_events_append_only before update or delete on audit_events
    for each row execute function refuse_audit_change()`.execute(db);
  await sql`create trigger audit_events_no_truncate before truncate on audit_events
    for each statement execute function refuse_audit_change()`.execute(db);
  await sql`revoke update, delete, truncate on audit_events from public`.execute(db);
  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert on audit_events to evidence_app;
      end if;
    end $$`.execute(db);
}
