import { Kysely, PostgresDialect, type ColumnType, type Generated, type Transaction } from 'kysely';
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

export interface Database {
  api_keys: ApiKeysTable;
  evidence_items: EvidenceItemsTable;
  evidence_links: EvidenceLinksTable;
  evidence_receipts: EvidenceReceiptsTable;
  idempotency_keys: IdempotencyKeysTable;
}

export type Db = Kysely<Database>;
export type Tx = Transaction<Database>;
/** Either the pool or a transaction: repositories accept both, services decide. */
export type Executor = Db | Tx;

export function createDb(
  connectionString: string,
  poolSize: number,
  onIdleError: (err: Error) => void = () => undefined,
): Db {
  // int8 (sizes) as number: evidence files are far below 2^53 bytes.
  const types = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === pg.types.builtins.INT8
        ? (v: string) => Number(v)
        : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
  };
  const pool = new pg.Pool({
    connectionString,
    max: poolSize,
    types,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    application_name: 'evidence-archive',
  });
  // An idle connection that the server closes (restart, failover, admin) emits 'error' on the
  // pool; unhandled, that would crash the process. The pool replaces the connection by itself.
  pool.on('error', onIdleError);
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}
