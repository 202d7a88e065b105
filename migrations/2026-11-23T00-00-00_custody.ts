import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // --- Audit trail: append-only, gap-free, hash-chained ------------------------------------
  await db.schema
    .createTable('audit_events')
    // Assigned under the chain head's row lock, so it is gap-free (a sequence would leave gaps).
    .addColumn('seq', 'bigint', (c) => c.primaryKey().check(sql`seq > 0`))
    .addColumn('occurred_at', 'timestamptz', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('outcome', 'text', (c) =>
      c.notNull().check(sql`outcome in ('success', 'denied', 'failed')`),
    )
    .addColumn('actor_key_id', 'text')
    .addColumn('actor_role', 'text')
    .addColumn('actor_name', 'text')
    .addColumn('item_ids', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('complaint_id', 'text')
    .addColumn('request_id', 'text')
    .addColumn('client_ip', 'text')
    .addColumn('details', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('prev_hash', 'text', (c) => c.notNull().check(sql`prev_hash ~ '^[0-9a-f]{64}$'`))
    .addColumn('hash', 'text', (c) => c.notNull().check(sql`hash ~ '^[0-9a-f]{64}$'`))
    .execute();
  await sql`create index audit_events_item_ids_idx on audit_events using gin (item_ids)`.execute(
    db,
  );
  await sql`create index audit_events_complaint_idx on audit_events (complaint_id, seq)
    where complaint_id is not null`.execute(db);
  await sql`create index audit_events_time_idx on audit_events (occurred_at, seq)`.execute(db);

  // One row: the newest event's seq and hash. Writers lock it, so events chain in seq order
  // across every service instance.
  await db.schema
    .createTable('audit_chain_head')
    .addColumn('id', 'boolean', (c) =>
      c
        .primaryKey()
        .defaultTo(true)
        .check(sql`id`),
    )
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .execute();
  await sql`insert into audit_chain_head (id, seq, hash) values (true, 0, ${'0'.repeat(64)})`.execute(
    db,
  );

  await db.schema
    .createTable('audit_checkpoints')
    .addColumn('seq', 'bigint', (c) => c.primaryKey())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('signed_at', 'timestamptz', (c) => c.notNull())
    .addColumn('key_fingerprint', 'text', (c) => c.notNull())
    .addColumn('object_key', 'text', (c) => c.notNull())
    .execute();

  await sql`create function refuse_audit_change() returns trigger language plpgsql as $$
    begin
      raise exception 'audit trail is append-only: % on % refused', tg_op, tg_table_name
        using errcode = 'insufficient_privilege';
    end $$`.execute(db);
  for (const table of ['audit_events', 'audit_checkpoints']) {
    await sql`create trigger ${sql.id(`${table}_append_only`)} before update or delete on ${sql.table(table)}
      for each row execute function refuse_audit_change()`.execute(db);
    await sql`create trigger ${sql.id(`${table}_no_truncate`)} before truncate on ${sql.table(table)}
      for each statement execute function refuse_audit_change()`.execute(db);
    await sql`revoke update, delete, truncate on ${sql.table(table)} from public`.execute(db);
  }

  // --- Complaints and legal holds -----------------------------------------------------------
  await db.schema
    .createTable('complaints')
    .addColumn('id', 'text', (c) => c.primaryKey().check(sql`length(id) between 1 and 128`))
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('open', 'closed')`))
    .addColumn('customer_phone', 'text')
    .addColumn('customer_phone_e164', 'text')
    .addColumn('order_ids', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('opened_at', 'timestamptz', (c) => c.notNull())
    .addColumn('closed_at', 'timestamptz')
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
    .addCheckConstraint('complaints_closed_at', sql`(status = 'closed') = (closed_at is not null)`)
    .execute();
  await sql`create index complaints_order_ids_idx on complaints using gin (order_ids)`.execute(db);

  await db.schema
    .createTable('legal_holds')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('item_id', 'uuid', (c) => c.references('evidence_items.id'))
    .addColumn('complaint_id', 'text')
    .addColumn('reason', 'text', (c) => c.notNull().check(sql`length(reason) between 1 and 1000`))
    .addColumn('placed_by_key_id', 'text', (c) => c.notNull().references('api_keys.id'))
    .addColumn('placed_at', 'timestamptz', (c) => c.notNull())
    .addColumn('released_by_key_id', 'text', (c) => c.references('api_keys.id'))
    .addColumn('released_at', 'timestamptz')
    .addColumn('release_reason', 'text')
    .addCheckConstraint('legal_holds_one_target', sql`(item_id is null) <> (complaint_id is null)`)
    .execute();
  await sql`create index legal_holds_item_idx on legal_holds (item_id) where released_at is null`.execute(
    db,
  );
  await sql`create index legal_holds_complaint_idx on legal_holds (complaint_id)
    where released_at is null`.execute(db);

  // A hold is placed once and released once; nothing else about it ever changes, and it is never
  // deleted: the record of who held what, and why, is custody evidence itself.
  await sql`create function guard_legal_holds() returns trigger language plpgsql as $$
    begin
      if tg_op = 'DELETE' then
        raise exception 'legal holds are never deleted (hold %)', old.id
          using errcode = 'insufficient_privilege';
      end if;
      if old.released_at is not null
         or new.id <> old.id or new.item_id is distinct from old.item_id
         or new.complaint_id is distinct from old.complaint_id or new.reason <> old.reason
         or new.placed_by_key_id <> old.placed_by_key_id or new.placed_at <> old.placed_at then
        raise exception 'legal hold % can only be released, once', old.id
          using errcode = 'insufficient_privilege';
      end if;
      return new;
    end $$`.execute(db);
  await sql`create trigger legal_holds_guard before update or delete on legal_holds
    for each row execute function guard_legal_holds()`.execute(db);

  // --- Evidence: verification results and tombstones ----------------------------------------
  await db.schema
    .alterTable('evidence_items')
    .addColumn('verified_at', 'timestamptz')
    .addColumn('verify_status', 'text', (c) =>
      c.check(sql`verify_status in ('ok', 'mismatch', 'missing', 'size_mismatch')`),
    )
    .addColumn('verify_detail', 'jsonb')
    .addColumn('deleted_at', 'timestamptz')
    .addColumn('deletion_reason', 'text')
    .addColumn('deleted_by', 'text')
    .addColumn('blob_purged_at', 'timestamptz')
    .execute();
  await sql`create index evidence_items_verify_idx on evidence_items (verified_at nulls first, id)
    where deleted_at is null`.execute(db);
  await sql`create index evidence_items_retention_idx on evidence_items (kind, received_at)
    where deleted_at is null`.execute(db);
  // Reconciliation walks rows in the byte order stores list keys in.
  await sql`create index evidence_items_blob_key_idx on evidence_items (blob_key collate "C")`.execute(
    db,
  );
  await sql`create index evidence_items_unpurged_idx on evidence_items (deleted_at)
    where deleted_at is not null and blob_purged_at is null`.execute(db);

  // Held evidence cannot be deleted by anyone, through any path: the database itself refuses to
  // tombstone an item under an active hold on it or on a complaint it is linked to (directly or
  // through one of the complaint's orders), and evidence rows are never deleted at all.
  await sql`create function evidence_is_held(target uuid) returns boolean language sql stable as $$
    select exists (select 1 from legal_holds h where h.released_at is null and h.item_id = target)
      or exists (
        select 1 from legal_holds h
        join evidence_links l on l.link_type = 'complaint' and l.ref = h.complaint_id
        where h.released_at is null and l.item_id = target)
      or exists (
        select 1 from legal_holds h
        join complaints c on c.id = h.complaint_id
        join evidence_links l on l.link_type = 'order' and l.ref = any(c.order_ids)
        where h.released_at is null and l.item_id = target)
  $$`.execute(db);
  await sql`create function guard_evidence_items() returns trigger language plpgsql as $$
    begin
      if tg_op = 'DELETE' then
        raise exception 'evidence rows are never deleted (item %); tombstone it instead', old.id
          using errcode = 'insufficient_privilege';
      end if;
      -- Everything recorded at ingest is frozen; only verification results and the tombstone
      -- columns ever change.
      if (new.id, new.sha256, new.size_bytes, new.blob_key, new.received_at, new.kind,
          new.content_type, new.original_filename, new.captured_at, new.source,
          new.created_by_key_id, new.call_id, new.from_number, new.from_number_e164,
          new.to_number, new.to_number_e164, new.agent_id, new.direction, new.station_id,
          new.operator_id, new.tracking_number)
         is distinct from
         (old.id, old.sha256, old.size_bytes, old.blob_key, old.received_at, old.kind,
          old.content_type, old.original_filename, old.captured_at, old.source,
          old.created_by_key_id, old.call_id, old.from_number, old.from_number_e164,
          old.to_number, old.to_number_e164, old.agent_id, old.direction, old.station_id,
          old.operator_id, old.tracking_number) then
        raise exception 'the identity of evidence item % is immutable', old.id
          using errcode = 'insufficient_privilege';
      end if;
      if old.deleted_at is not null and new.deleted_at is distinct from old.deleted_at then
        raise exception 'evidence item % is already deleted', old.id
          using errcode = 'insufficient_privilege';
      end if;
      if old.deleted_at is null and new.deleted_at is not null and evidence_is_held(old.id) then
        raise exception 'evidence item % is under legal hold', old.id
          using errcode = 'insufficient_privilege';
      end if;
      return new;
    end $$`.execute(db);
  await sql`create trigger evidence_items_guard before update or delete on evidence_items
    for each row execute function guard_evidence_items()`.execute(db);
  // Unlinking can be what releases an item from a complaint's hold: refused while it is held.
  await sql`create function guard_evidence_links() returns trigger language plpgsql as $$
    begin
      if evidence_is_held(old.item_id) then
        raise exception 'evidence item % is under legal hold; its links cannot be removed', old.item_id
          using errcode = 'insufficient_privilege';
      end if;
      return old;
    end $$`.execute(db);
  await sql`create trigger evidence_links_guard before delete on evidence_links
    for each row execute function guard_evidence_links()`.execute(db);

  // --- Background job runs (scrub, retention) for the custody status page --------------------
  await db.schema
    .createTable('custody_runs')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('job', 'text', (c) => c.notNull())
    .addColumn('started_at', 'timestamptz', (c) => c.notNull())
    .addColumn('finished_at', 'timestamptz')
    .addColumn('outcome', 'text', (c) => c.check(sql`outcome in ('ok', 'problems', 'error')`))
    .addColumn('stats', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'`))
    .execute();
  await sql`create index custody_runs_job_idx on custody_runs (job, started_at desc)`.execute(db);

  // --- Least privilege ------------------------------------------------------------------------
  // The service runs as evidence_app (SET ROLE at connect), which may append to the audit trail
  // but never change or remove it, never delete evidence rows, and, not owning the tables, cannot
  // disable their triggers. Roles are cluster-wide: another database may have created it first,
  // and a managed PostgreSQL may not let us create roles at all (then the service warns at start).
  await sql`do $$ begin
      if not exists (select 1 from pg_roles where rolname = 'evidence_app') then
        create role evidence_app nologin;
      end if;
    exception when duplicate_object or unique_violation or insufficient_privilege then null;
    end $$`.execute(db);
  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        execute format('grant usage on schema %I to evidence_app', current_schema());
        grant select, insert, update on api_keys, complaints, custody_runs to evidence_app;
        -- Column by column: the service can record verifications, tombstones and releases,
        -- and nothing else about evidence or holds.
        grant select, insert on evidence_items, legal_holds to evidence_app;
        grant update (verified_at, verify_status, verify_detail, deleted_at, deletion_reason,
          deleted_by, blob_purged_at) on evidence_items to evidence_app;
        grant update (released_by_key_id, released_at, release_reason) on legal_holds
          to evidence_app;
        grant select, insert, delete on evidence_links to evidence_app;
        grant select, insert on evidence_receipts, idempotency_keys, audit_events,
          audit_checkpoints to evidence_app;
        grant select, update on audit_chain_head to evidence_app;
        begin
          execute format('grant evidence_app to %I', current_user);
        exception when others then null; -- superusers and existing members need no grant
        end;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  // The evidence_app role is cluster-wide and may serve other databases: it is left in place.
  await db.schema.dropTable('custody_runs').execute();
  await sql`drop trigger evidence_links_guard on evidence_links`.execute(db);
  await sql`drop function guard_evidence_links()`.execute(db);
  await sql`drop trigger evidence_items_guard on evidence_items`.execute(db);
  await sql`drop function guard_evidence_items()`.execute(db);
  await sql`drop function evidence_is_held(uuid)`.execute(db);
  await sql`drop trigger legal_holds_guard on legal_holds`.execute(db);
  await sql`drop function guard_legal_holds()`.execute(db);
  await db.schema
    .alterTable('evidence_items')
    .dropColumn('verified_at')
    .dropColumn('verify_status')
    .dropColumn('verify_detail')
    .dropColumn('deleted_at')
    .dropColumn('deletion_reason')
    .dropColumn('deleted_by')
    .dropColumn('blob_purged_at')
    .execute();
  for (const table of ['legal_holds', 'complaints', 'audit_checkpoints', 'audit_chain_head']) {
    await db.schema.dropTable(table).execute();
  }
  await db.schema.dropTable('audit_events').execute();
  await sql`drop function refuse_audit_change()`.execute(db);
}
