import {
  CompiledQuery,
  Kysely,
  PostgresDialect,
  type Compilable,
  sql,
  type ColumnType,
  type Generated,
  type Transaction,
} from 'kysely';
import pg from 'pg';

type Timestamp = ColumnType<Date, Date | string, Date | string>;

export type Role = 'ingest' | 'support' | 'admin';
export type EvidenceKind = 'packing_video' | 'call_recording' | 'photo';
export type LinkType = 'order' | 'complaint';

export interface ApiKeysTable {
  id: string;
  name: string;
  role: Role;
  secret_hash: string;
  created_at: Generated<Date>;
  revoked_at: Timestamp | null;
  /** Set by authentication at most once a minute per key and instance. */
  last_used_at: ColumnType<Date | null, never, Date | string>;
}

/** A web app sign-in: a support or admin key traded for tokens stored only as SHA-256 hashes. */
export interface SessionsTable {
  /** Not secret: names the session in `GET /v1/me` and `DELETE /v1/me/sessions/{id}`. */
  id: string;
  key_id: string;
  /** SHA-256 (hex) of the token the app sends as `Authorization: Bearer eas_...`. */
  token_hash: string;
  /** SHA-256 (hex) of the `eak_session` cookie's token (media elements: GET and HEAD only). */
  cookie_hash: string;
  created_at: Timestamp;
  last_used_at: Timestamp;
  /** The absolute end (created + SESSION_MAX_HOURS); the idle end is last_used_at + SESSION_IDLE_MINUTES. */
  expires_at: Timestamp;
  ended_at: Timestamp | null;
  end_reason: string | null;
  user_agent: string | null;
  client_ip: string | null;
}

export interface EvidenceItemsTable {
  id: string;
  kind: EvidenceKind;
  sha256: string;
  size_bytes: number;
  content_type: string;
  blob_key: string;
  original_filename: string | null;
  captured_at: Timestamp;
  received_at: Timestamp;
  source: string | null;
  created_by_key_id: string;
  call_id: string | null;
  from_number: string | null;
  from_number_e164: string | null;
  to_number: string | null;
  to_number_e164: string | null;
  agent_id: string | null;
  direction: 'inbound' | 'outbound' | null;
  station_id: string | null;
  operator_id: string | null;
  tracking_number: string | null;
  verified_at: Timestamp | null;
  verify_status: VerifyStatus | null;
  verify_detail: ColumnType<unknown, string | null, string | null> | null;
  deleted_at: Timestamp | null;
  deletion_reason: string | null;
  deleted_by: string | null;
  blob_purged_at: Timestamp | null;
  /** WORM state of the blob as read back from the store (null: archived before it was checked). */
  worm_status: 'in_force' | 'not_in_force' | 'expired' | 'not_configured' | null;
  worm_mode: 'GOVERNANCE' | 'COMPLIANCE' | null;
  worm_retain_until: Timestamp | null;
  /** Set when the stored bytes were found not to hash to sha256; cleared by a repair. */
  damaged_at: Timestamp | null;
  damage_detail: ColumnType<unknown, string | null, string | null> | null;
  repaired_at: Timestamp | null;
}

export interface EvidenceLinksTable {
  link_type: LinkType;
  ref: string;
  item_id: string;
  created_at: Generated<Date>;
  created_by_key_id: string;
}

export interface EvidenceReceiptsTable {
  api_key_id: string;
  item_id: string;
  first_received_at: Generated<Date>;
}

export interface IdempotencyKeysTable {
  api_key_id: string;
  key: string;
  content_sha256: string;
  status_code: number;
  response: ColumnType<unknown, string, string>;
  created_at: Generated<Date>;
}

export type VerifyStatus = 'ok' | 'mismatch' | 'missing' | 'size_mismatch';
export type AuditOutcome = 'success' | 'denied' | 'failed';

/** What an audit event holds, waiting to be linked or in the chain. */
interface AuditEventColumns {
  occurred_at: Timestamp;
  action: string;
  outcome: AuditOutcome;
  actor_key_id: string | null;
  actor_role: string | null;
  actor_name: string | null;
  item_ids: string[];
  complaint_id: string | null;
  request_id: string | null;
  client_ip: string | null;
  details: ColumnType<Record<string, unknown>, string, never>;
}

export interface AuditEventsTable extends AuditEventColumns {
  seq: number;
  prev_hash: string;
  hash: string;
}

/** An item's history: one row per item an event names, written with the event (append-only). */
export interface AuditEventItemsTable {
  item_id: string;
  seq: number;
  occurred_at: Timestamp;
}

/** An event recorded but not yet linked into the chain (see AuditLog); immutable, then moved. */
export interface AuditPendingTable extends AuditEventColumns {
  id: Generated<number>;
  /** False for reads' events: linking them may commit without waiting for the WAL flush. */
  durable: boolean;
}

export interface AuditChainHeadTable {
  id: boolean;
  seq: number;
  hash: string;
}

export interface AuditCheckpointsTable {
  seq: number;
  hash: string;
  signed_at: Timestamp;
  key_fingerprint: string;
  object_key: string;
}

/** The RFC 3161 timestamp of an audit checkpoint; `gen_time` null: still queued. */
export interface CheckpointTimestampsTable {
  seq: number;
  attempts: Generated<number>;
  next_attempt_at: ColumnType<Date, Date | string | undefined, Date | string>;
  last_error: string | null;
  authority: string | null;
  gen_time: Timestamp | null;
  serial: string | null;
  signer: string | null;
  token: Buffer | null;
  object_key: string | null;
}

export interface KeyBudgetUsageTable {
  key_id: string;
  budget: string;
  window_start: Timestamp;
  used: number;
  refused: Generated<number>;
}

export interface KeyBudgetLeasesTable {
  id: Generated<string>;
  key_id: string;
  budget: string;
  expires_at: ColumnType<Date, Date | string, Date | string>;
}

export interface ComplaintsTable {
  id: string;
  status: 'open' | 'closed';
  customer_phone: string | null;
  customer_phone_e164: string | null;
  order_ids: string[];
  opened_at: Timestamp;
  closed_at: Timestamp | null;
  updated_at: Timestamp;
  tracking_numbers: ColumnType<string[], string[] | undefined, string[]>;
  channel: ComplaintChannel | null;
  topic: ComplaintTopic | null;
  claim_url: string | null;
  description: string | null;
}

export const COMPLAINT_CHANNELS = [
  'marketplace',
  'review_site',
  'chargeback',
  'email',
  'phone',
  'other',
] as const;
export type ComplaintChannel = (typeof COMPLAINT_CHANNELS)[number];
export const COMPLAINT_TOPICS = ['packing', 'call', 'delivery', 'product', 'other'] as const;
export type ComplaintTopic = (typeof COMPLAINT_TOPICS)[number];

export interface ShareLinksTable {
  id: string;
  token_sha256: string;
  target_type: 'item' | 'segment' | 'bundle';
  item_id: string | null;
  segment_id: string | null;
  bundle_id: string | null;
  complaint_id: string | null;
  note: string | null;
  created_by_key_id: string;
  created_at: Timestamp;
  expires_at: Timestamp;
  revoked_at: Timestamp | null;
  revoked_by_key_id: string | null;
  use_count: ColumnType<number, number | undefined, number>;
  last_used_at: Timestamp | null;
}

export interface LegalHoldsTable {
  id: string;
  item_id: string | null;
  complaint_id: string | null;
  reason: string;
  placed_by_key_id: string;
  placed_at: Timestamp;
  released_by_key_id: string | null;
  released_at: Timestamp | null;
  release_reason: string | null;
}

export interface CustodyRunsTable {
  id: string;
  job: string;
  started_at: Timestamp;
  finished_at: Timestamp | null;
  outcome: 'ok' | 'problems' | 'error' | null;
  stats: ColumnType<Record<string, unknown>, string | undefined, string>;
}

export type MediaStatus = 'pending' | 'processing' | 'done' | 'partial' | 'failed' | 'unavailable';
export type DerivativeKind = 'poster' | 'contact_sheet' | 'waveform' | 'preview' | 'thumbnail';
export type DerivativeStatus = 'ready' | 'failed' | 'not_applicable' | 'purged';

export interface ItemMediaTable {
  item_id: string;
  source_sha256: string;
  status: MediaStatus;
  probe: ColumnType<unknown, string | null, string | null> | null;
  detail: string | null;
  attempts: ColumnType<number, number | undefined, number>;
  updated_at: ColumnType<Date, Date | undefined, Date>;
}

export interface DerivativesTable {
  item_id: string;
  kind: DerivativeKind;
  status: DerivativeStatus;
  source_sha256: string;
  sha256: string | null;
  size_bytes: ColumnType<number, number | null, number | null> | null;
  content_type: string | null;
  blob_key: string | null;
  width: number | null;
  height: number | null;
  detail: string | null;
  params: ColumnType<Record<string, unknown>, string | undefined, string>;
  created_at: ColumnType<Date, Date | undefined, never>;
  updated_at: ColumnType<Date, Date | undefined, Date>;
}

export interface ProviderRecordingsTable {
  provider: string;
  recording_sid: string;
  call_sid: string | null;
  account_sid: string | null;
  /** Null only for an `absent` recording: the provider had no media to point at. */
  media_url: string | null;
  duration_seconds: number | null;
  channels: number | null;
  recording_source: string | null;
  started_at: Timestamp | null;
  /** `absent`: the provider reported no recording for the call (a known gap, nothing to fetch). */
  status: 'queued' | 'archived' | 'failed' | 'absent';
  item_id: string | null;
  attempts: ColumnType<number, number | undefined, number>;
  last_error: string | null;
  received_at: ColumnType<Date, Date | undefined, never>;
  updated_at: ColumnType<Date, Date | undefined, Date>;
  /** Announcement order (an identity column): the list's cursor. */
  seq: ColumnType<string, never, never>;
}

export interface ResumableUploadsTable {
  id: string;
  created_by_key_id: string;
  /** Who created the upload (key, role, name, request): the archived item's actor. */
  actor: unknown;
  /** The upload fields, validated when the upload was created. */
  fields: unknown;
  /** The tus Upload-Metadata as sent, echoed back on HEAD. */
  metadata: Record<string, string | null>;
  filename: string | null;
  upload_length: ColumnType<number, number, never>;
  upload_offset: ColumnType<number, number | undefined, number>;
  storage_key: string;
  storage_state: unknown;
  sha256: string | null;
  head: ColumnType<Buffer, Buffer | undefined, Buffer>;
  content_type: string | null;
  item_id: string | null;
  result: unknown;
  created_at: ColumnType<Date, Date | undefined, never>;
  updated_at: ColumnType<Date, Date | undefined, Date>;
  expires_at: ColumnType<Date, Date, never>;
}

export interface SegmentsTable {
  id: string;
  item_id: string;
  order_id: string;
  tracking_number: string | null;
  /** numeric: read as a string by pg, written as a number. */
  start_sec: ColumnType<string, number, never>;
  end_sec: ColumnType<string, number, never>;
  created_by_key_id: string;
  created_at: ColumnType<Date, Date | undefined, never>;
}

export interface SegmentCutsTable {
  segment_id: string;
  item_id: string;
  status: 'ready' | 'failed' | 'purged';
  source_sha256: string;
  sha256: string | null;
  size_bytes: ColumnType<number, number | null, number | null> | null;
  content_type: string | null;
  blob_key: string | null;
  detail: string | null;
  params: ColumnType<Record<string, unknown>, string | undefined, string>;
  created_at: ColumnType<Date, Date | undefined, never>;
  updated_at: ColumnType<Date, Date | undefined, Date>;
}

/** A running process that writes to the store: live while it holds its session advisory lock. */
export interface ServiceInstancesTable {
  id: string;
  lock_key: ColumnType<number, never, never>;
  host: string;
  pid: number;
  started_at: ColumnType<Date, Date | undefined, never>;
  seen_at: ColumnType<Date, Date | undefined, Date>;
}

/** A blob being promoted by a live request, until its item row commits (or the claim is dropped). */
export interface BlobClaimsTable {
  id: string;
  instance_id: string;
  sha256: string;
  created_at: ColumnType<Date, Date | undefined, never>;
  /** Being dropped: its blob is about to be deleted (committed before the delete). */
  dropping: Generated<boolean>;
}

export interface Database {
  segments: SegmentsTable;
  segment_cuts: SegmentCutsTable;
  provider_recordings: ProviderRecordingsTable;
  resumable_uploads: ResumableUploadsTable;
  share_links: ShareLinksTable;
  item_media: ItemMediaTable;
  derivatives: DerivativesTable;
  audit_events: AuditEventsTable;
  audit_event_items: AuditEventItemsTable;
  audit_pending: AuditPendingTable;
  audit_chain_head: AuditChainHeadTable;
  audit_checkpoints: AuditCheckpointsTable;
  checkpoint_timestamps: CheckpointTimestampsTable;
  key_budget_usage: KeyBudgetUsageTable;
  key_budget_leases: KeyBudgetLeasesTable;
  complaints: ComplaintsTable;
  legal_holds: LegalHoldsTable;
  custody_runs: CustodyRunsTable;
  api_keys: ApiKeysTable;
  sessions: SessionsTable;
  evidence_items: EvidenceItemsTable;
  evidence_links: EvidenceLinksTable;
  evidence_receipts: EvidenceReceiptsTable;
  idempotency_keys: IdempotencyKeysTable;
  bundles: BundlesTable;
  service_instances: ServiceInstancesTable;
  blob_claims: BlobClaimsTable;
  job_runs: JobRunsTable;
}

/** A background job an instance is running now (removed when its outcome is recorded). */
export interface JobRunsTable {
  job_id: string;
  queue: string;
  instance_id: string;
  started_at: ColumnType<Date, Date | undefined, never>;
}

/** A dispute bundle: what it takes to give the same ZIP bytes on every download. Never changed. */
export interface BundlesTable {
  id: string;
  complaint_id: string;
  created_at: Timestamp;
  created_by_key_id: string;
  created_by_role: string;
  created_by_name: string;
  item_ids: string[];
  file_count: number;
  total_bytes: number;
  zip_bytes: number;
  manifest: string;
  manifest_sha256: string;
  key_fingerprint: string;
  checkpoint_seq: number;
  /** The ZIP's small files by name (text; signatures as base64). */
  texts: ColumnType<Record<string, string>, string, never>;
  /** The evidence files in ZIP order. */
  entries: ColumnType<
    { path: string; blobKey: string; size: number; sha256: string }[],
    string,
    never
  >;
}

export type Db = Kysely<Database>;
export type Tx = Transaction<Database>;
/** Either the pool or a transaction: repositories accept both, services decide. */
export type Executor = Db | Tx;

/**
 * A query compiled once and run with one parameter changed: a hot path (support's lookup by
 * order) skips rebuilding and recompiling the same query on every request. `build` is called once
 * with a placeholder that must appear exactly once among the compiled parameters.
 */
export class ReusableQuery<R> {
  private compiled: CompiledQuery<R> | undefined;

  constructor(private readonly build: (db: Executor, placeholder: string) => Compilable<R>) {}

  async execute(db: Executor, value: string): Promise<R[]> {
    const PLACEHOLDER = '\u0000reusable\u0000';
    if (!this.compiled) {
      const compiled = this.build(db, PLACEHOLDER).compile();
      if (compiled.parameters.filter((p) => p === PLACEHOLDER).length !== 1) {
        throw new Error('a reusable query needs its placeholder exactly once');
      }
      this.compiled = compiled;
    }
    const parameters = this.compiled.parameters.map((p) => (p === PLACEHOLDER ? value : p));
    const { rows } = await db.executeQuery(CompiledQuery.raw(this.compiled.sql, parameters));
    return rows as R[];
  }
}

/** TCP keepalive for every pool: a vanished server is noticed within minutes, not hours. */
export const DEAD_SERVER_OPTIONS = { keepAlive: true, keepAliveInitialDelayMillis: 10_000 };

/** How the service's pools read values: int8 (sizes) as number, evidence files being far below 2^53 bytes. */
export const PG_TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export function createDb(
  connectionString: string,
  poolSize: number,
  onIdleError: (err: Error) => void = () => undefined,
  role?: string,
  queryTimeoutMs?: number,
): Db {
  const pool = new pg.Pool({
    connectionString,
    max: poolSize,
    types: PG_TYPES,
    // A request waiting for a connection (a new one from a server that accepts but never answers,
    // or a pooled one when all are busy) is refused within the query timeout too, not only after
    // 10 s: an outage, 503.
    connectionTimeoutMillis: Math.min(10_000, queryTimeoutMs ?? 10_000),
    idleTimeoutMillis: 30_000,
    application_name: 'evidence-archive',
    // A frozen or partitioned server: TCP keepalive finds a dead peer, and a query without an
    // answer fails after queryTimeoutMs (an outage, 503) instead of holding its request forever.
    ...DEAD_SERVER_OPTIONS,
    ...(queryTimeoutMs ? { query_timeout: queryTimeoutMs } : {}),
    ...connectionOptions(role, queryTimeoutMs),
  });
  // An idle connection that the server closes (restart, failover, admin) emits 'error' on the
  // pool; unhandled, that would crash the process. The pool replaces the connection by itself.
  pool.on('error', onIdleError);
  guardCheckedOutClients(pool);
  endTimedOutClients(pool);
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/**
 * A client checked out of a pool has no 'error' listener (pg-pool removes its idle listener while
 * the client is lent): a server shutdown (57P01) that reaches it between two statements of a
 * transaction would be an unhandled 'error' event and end the process. The statement that uses the
 * client next fails instead, and pg-pool discards the broken client when it comes back.
 */
export function guardCheckedOutClients(pool: pg.Pool): void {
  pool.on('connect', (client) => client.on('error', () => undefined));
}

/**
 * pg's query_timeout stops waiting for an answer but keeps the connection, its statement still
 * running on the server. Kysely releases a connection without the error, so it went back to the
 * pool as it was: a transaction whose ROLLBACK timed out too stayed open on the server, and the
 * next borrower's statements ran inside it (committed by a stranger's COMMIT, or lost when the
 * connection closed; `tests/api/db-query-timeout.test.ts`). A connection whose query timed out is
 * ended at once: the pool drops it on release, and the server rolls back what it held.
 */
export function endTimedOutClients(pool: pg.Pool): void {
  // Whatever the query form (a cursor's too): a client that is not idle outside a transaction when
  // it comes back is not handed on.
  pool.on('release', (err, client) => {
    const c = client as pg.PoolClient & { readyForQuery?: boolean };
    if (!err && (c.readyForQuery === false || c.getTransactionStatus() !== 'I')) {
      client.end().catch(() => undefined);
    }
  });
  pool.on('connect', (client) => {
    const query = client.query as (...args: unknown[]) => unknown;
    client.query = function (this: pg.PoolClient, ...args: unknown[]) {
      const result = query.apply(this, args);
      if (result instanceof Promise) {
        result.catch((err: unknown) => {
          if (err instanceof Error && err.message === 'Query read timeout') {
            client.end().catch(() => undefined);
          }
        });
      }
      return result;
    } as typeof client.query;
  });
}

/**
 * Set at connection start: the least-privilege role, so no query ever runs with the owner's
 * privileges by accident; and the query timeout on the server's side too, so that a statement
 * whose client gave up on it (a lock wait, a long scan) does not keep running, and holding its
 * locks and its connection slot, after its connection was ended.
 */
function connectionOptions(role?: string, queryTimeoutMs?: number): { options?: string } {
  const settings = [
    ...(role ? [`-c role=${role}`] : []),
    // A second later than the client gives up: the request's answer is the client's timeout
    // (an outage, 503); the server's is only the clean-up.
    ...(queryTimeoutMs ? [`-c statement_timeout=${queryTimeoutMs + 1000}`] : []),
  ];
  return settings.length ? { options: settings.join(' ') } : {};
}

/** The role if it exists and the connecting user may switch to it (superusers always may). */
export async function usableRole(db: Db, role: string): Promise<string | undefined> {
  const { rows } = await sql<{
    ok: boolean;
  }>`select exists (select 1 from pg_roles where rolname = ${role})
      and pg_has_role(current_user, ${role}, 'MEMBER') as ok`.execute(db);
  return rows[0]?.ok ? role : undefined;
}
