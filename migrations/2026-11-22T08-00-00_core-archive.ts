import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('api_keys')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().check(sql`length(name) between 1 and 200`))
    .addColumn('role', 'text', (c) =>
      c.notNull().check(sql`role in ('ingest', 'support', 'admin')`),
    )
    .addColumn('secret_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('revoked_at', 'timestamptz')
    .execute();

  await db.schema
    .createTable('evidence_items')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) =>
      c.notNull().check(sql`kind in ('packing_video', 'call_recording', 'photo')`),
    )
    .addColumn('sha256', 'text', (c) => c.notNull().check(sql`sha256 ~ '^[0-9a-f]{64}$'`))
    .addColumn('size_bytes', 'bigint', (c) => c.notNull().check(sql`size_bytes > 0`))
    .addColumn('content_type', 'text', (c) => c.notNull())
    .addColumn('blob_key', 'text', (c) => c.notNull())
    .addColumn('original_filename', 'text')
    .addColumn('captured_at', 'timestamptz', (c) => c.notNull())
    .addColumn('received_at', 'timestamptz', (c) => c.notNull())
    .addColumn('source', 'text')
    .addColumn('created_by_key_id', 'text', (c) => c.notNull().references('api_keys.id'))
    .addColumn('call_id', 'text')
    .addColumn('from_number', 'text')
    .addColumn('from_number_e164', 'text')
    .addColumn('to_number', 'text')
    .addColumn('to_number_e164', 'text')
    .addColumn('agent_id', 'text')
    .addColumn('direction', 'text', (c) => c.check(sql`direction in ('inbound', 'outbound')`))
    .addColumn('station_id', 'text')
    .addColumn('operator_id', 'text')
    .addColumn('tracking_number', 'text')
    .addUniqueConstraint('evidence_items_sha256_key', ['sha256'])
    .execute();

  // One recording per call and phone system: retries of a PBX webhook never make two items.
  await sql`create unique index evidence_items_call_key
    on evidence_items (coalesce(source, ''), call_id) where call_id is not null`.execute(db);
  await sql`create index evidence_items_captured_idx on evidence_items (captured_at, id)`.execute(
    db,
  );
  await sql`create index evidence_items_station_idx on evidence_items (station_id, captured_at)
    where station_id is not null`.execute(db);
  await sql`create index evidence_items_from_idx on evidence_items (from_number_e164, captured_at)
    where from_number_e164 is not null`.execute(db);
  await sql`create index evidence_items_to_idx on evidence_items (to_number_e164, captured_at)
    where to_number_e164 is not null`.execute(db);

  await db.schema
    .createTable('evidence_links')
    .addColumn('link_type', 'text', (c) =>
      c.notNull().check(sql`link_type in ('order', 'complaint')`),
    )
    .addColumn('ref', 'text', (c) => c.notNull().check(sql`length(ref) between 1 and 128`))
    .addColumn('item_id', 'uuid', (c) => c.notNull().references('evidence_items.id'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('created_by_key_id', 'text', (c) => c.notNull().references('api_keys.id'))
    // Lookup by order or complaint is a scan of this primary key's prefix.
    .addPrimaryKeyConstraint('evidence_links_pkey', ['link_type', 'ref', 'item_id'])
    .execute();
  // Covers the per-item link lists returned with every item: index-only and already sorted.
  await db.schema
    .createIndex('evidence_links_item_idx')
    .on('evidence_links')
    .columns(['item_id', 'link_type', 'ref'])
    .execute();

  await db.schema
    .createTable('evidence_receipts')
    .addColumn('api_key_id', 'text', (c) => c.notNull().references('api_keys.id'))
    .addColumn('item_id', 'uuid', (c) => c.notNull().references('evidence_items.id'))
    .addColumn('first_received_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('evidence_receipts_pkey', ['api_key_id', 'item_id'])
    .execute();

  await db.schema
    .createTable('idempotency_keys')
    .addColumn('api_key_id', 'text', (c) => c.notNull().references('api_keys.id'))
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('content_sha256', 'text', (c) => c.notNull())
    .addColumn('status_code', 'integer', (c) => c.notNull())
    .addColumn('response', 'jsonb', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('idempotency_keys_pkey', ['api_key_id', 'key'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of [
    'idempotency_keys',
    'evidence_receipts',
    'evidence_links',
    'evidence_items',
    'api_keys',
  ]) {
    await db.schema.dropTable(table).execute();
  }
}
