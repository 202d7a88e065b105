import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application types here.
export async function up(db: Kysely<any>): Promise<void> {
  // The complaint as support works it: what it is about, where it was raised, its tracking
  // numbers (suggestions match clips and segments by them) and its own words.
  await db.schema
    .alterTable('complaints')
    .addColumn('tracking_numbers', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn('channel', 'text', (c) =>
      c.check(
        sql`channel in ('marketplace', 'review_site', 'chargeback', 'email', 'phone', 'other')`,
      ),
    )
    .addColumn('topic', 'text', (c) =>
      c.check(sql`topic in ('packing', 'call', 'delivery', 'product', 'other')`),
    )
    .addColumn('claim_url', 'text', (c) => c.check(sql`length(claim_url) <= 2048`))
    .addColumn('description', 'text', (c) => c.check(sql`length(description) <= 10000`))
    .execute();
  await sql`create index complaints_opened_idx on complaints (opened_at)`.execute(db);
  await sql`create index complaints_tracking_idx on complaints using gin (tracking_numbers)`.execute(
    db,
  );
  // Suggestions look clips and segments up by tracking number.
  await sql`create index evidence_items_tracking_idx on evidence_items (tracking_number)
    where tracking_number is not null`.execute(db);
  await sql`create index segments_tracking_idx on segments (tracking_number)
    where tracking_number is not null`.execute(db);

  // Read-only links for someone without a key (a marketplace reviewer, the customer). The token
  // itself is never stored: only its SHA-256, so a copy of the database opens nothing.
  await db.schema
    .createTable('share_links')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('token_sha256', 'text', (c) => c.notNull().unique())
    .addColumn('target_type', 'text', (c) =>
      c.notNull().check(sql`target_type in ('item', 'segment', 'bundle')`),
    )
    .addColumn('item_id', 'uuid', (c) => c.references('evidence_items.id'))
    .addColumn('segment_id', 'text')
    .addColumn('bundle_id', 'uuid')
    .addColumn('complaint_id', 'text')
    .addColumn('note', 'text', (c) => c.check(sql`length(note) <= 500`))
    .addColumn('created_by_key_id', 'text', (c) => c.notNull().references('api_keys.id'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('revoked_at', 'timestamptz')
    .addColumn('revoked_by_key_id', 'text', (c) => c.references('api_keys.id'))
    .addColumn('use_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('last_used_at', 'timestamptz')
    .addCheckConstraint(
      'share_links_one_target',
      sql`(target_type = 'item' and item_id is not null and segment_id is null and bundle_id is null)
       or (target_type = 'segment' and segment_id is not null and bundle_id is null)
       or (target_type = 'bundle' and bundle_id is not null and item_id is null and segment_id is null)`,
    )
    .addCheckConstraint('share_links_expiry', sql`expires_at > created_at`)
    .execute();
  await sql`create index share_links_complaint_idx on share_links (complaint_id, created_at)
    where complaint_id is not null`.execute(db);
  await sql`create index share_links_item_idx on share_links (item_id) where item_id is not null`.execute(
    db,
  );

  await sql`do $$ begin
      if exists (select 1 from pg_roles where rolname = 'evidence_app') then
        grant select, insert, update on share_links to evidence_app;
      end if;
    end $$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('share_links').execute();
  await sql`drop index if exists segments_tracking_idx`.execute(db);
  await sql`drop index if exists evidence_items_tracking_idx`.execute(db);
  await sql`drop index if exists complaints_tracking_idx`.execute(db);
  await sql`drop index if exists complaints_opened_idx`.execute(db);
  await db.schema
    .alterTable('complaints')
    .dropColumn('tracking_numbers')
    .dropColumn('channel')
    .dropColumn('topic')
    .dropColumn('claim_url')
    .dropColumn('description')
    .execute();
}
