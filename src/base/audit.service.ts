import type { Insertable } from 'kysely';
import type { AuditEventsTable, AuditOutcome, Db, Tx } from '../db/database';
import type { Actor } from './actor';
import type { Logger } from './logger';
import { chainHash, type ChainedEvent } from './audit-chain';
import type { AuditRepository, AuditRow } from './audit.repository';

/** The database refused an event's own data (data exception, integrity constraint violation). */
const refusesData = (err: unknown) =>
  /^2[23]/.test(String((err as { code?: unknown } | null)?.code ?? ''));

/** Optimistic appends of one batch before it waits for the head's lock instead. */
const OPTIMISTIC_ATTEMPTS = 3;

export type AuditAction =
  | 'evidence.create'
  | 'evidence.duplicate'
  | 'evidence.view'
  | 'evidence.list'
  | 'evidence.download'
  | 'evidence.link'
  | 'evidence.unlink'
  | 'evidence.verify'
  | 'evidence.delete'
  | 'evidence.expire'
  | 'evidence.purge'
  | 'evidence.reconcile'
  | 'media.derive'
  | 'integration.callback'
  | 'derivative.download'
  | 'hold.place'
  | 'hold.release'
  | 'complaint.write'
  | 'complaint.view'
  | 'key.create'
  | 'key.revoke'
  | 'key.list'
  | 'session.open'
  | 'session.close'
  | 'session.end'
  | 'audit.read'
  | 'audit.verify'
  | 'custody.read'
  | 'custody.run'
  | 'bundle.create'
  | 'bundle.download'
  | 'report.view'
  | 'share_link.create'
  | 'share_link.revoke'
  | 'share_link.use'
  | 'access.refusals'
  | 'evidence.repair';

export interface AuditEntry {
  action: AuditAction;
  outcome?: AuditOutcome;
  actor: Actor;
  itemIds?: string[];
  complaintId?: string | null;
  details?: Record<string, unknown>;
}

/** An event as the API shows it: its hashed form and the links of the chain. */
export type AuditEventView = ChainedEvent & { prevHash: string; hash: string };

/** The hashed form of a stored row; verification recomputes exactly this. */
export function chainedFormOf(r: AuditRow): ChainedEvent {
  return {
    seq: r.seq,
    occurredAt: new Date(r.occurred_at).toISOString(),
    action: r.action,
    outcome: r.outcome,
    actor: { keyId: r.actor_key_id, role: r.actor_role, name: r.actor_name },
    itemIds: r.item_ids,
    complaintId: r.complaint_id,
    requestId: r.request_id,
    clientIp: r.client_ip,
    details: r.details,
  };
}

export function toAuditView(r: AuditRow): AuditEventView {
  return { ...chainedFormOf(r), prevHash: r.prev_hash, hash: r.hash };
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Text the database can store and a reader can trust: no NUL, bounded length. */
function clean(value: string, max: number): string {
  // After the cut, which can halve a surrogate pair: a lone surrogate is not text PostgreSQL
  // stores as sent (it would refuse it in jsonb, or keep U+FFFD where the hash had the surrogate).
  return value.replace(/\0/g, '\uFFFD').slice(0, max).replace(LONE_SURROGATE, '\uFFFD');
}

interface Pending {
  entry: AuditEntry;
  /** False for reads: their batch may commit without waiting for the WAL flush. */
  durable: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface AuditLogDeps {
  db: Db;
  repo: AuditRepository;
  logger: Logger;
  opts?: { recordReads: boolean; now?: () => Date };
}

/**
 * The append-only, hash-chained audit trail. Changes to evidence append their event inside their
 * own transaction (`append`), so the change and its record commit together. Other events are
 * recorded with `record`, which group-commits: every event that arrives while one batch is being
 * written goes into the next, so a busy read path pays one statement per batch, not per request.
 *
 * A batch is appended optimistically in one statement: it advances the chain head only if the
 * head is still the one its hashes were computed from (this instance's last append, else read),
 * and its events are inserted only then; if another writer moved the head, the batch is
 * re-chained on the new head. After a few such conflicts it takes the head's row lock instead,
 * so a busy chain still makes progress.
 *
 * Durability: nothing is answered before its event is committed. A batch of reads only
 * (`recordRead`) commits with `synchronous_commit = off`: it does not wait for its WAL flush,
 * which the WAL writer does within 3 x wal_writer_delay (600 ms by default). A database crash in
 * that window can lose the events of reads that were answered, the newest ones and only those
 * (WAL is replayed in order, so no gap can open in the chain). Every other event, and every
 * write's event, commits synchronously, and its flush makes every earlier read's event durable
 * too (docs/custody.md, "What a database crash can lose").
 */
export class AuditLog {
  private queue: Pending[] = [];
  private flushing = false;
  /** The chain head as this instance last appended it; re-read when another writer moved it. */
  private head: { seq: number; hash: string } | undefined;
  /** The head the batch being appended makes: found in the trail, the batch committed. */
  private attempted: { seq: number; hash: string } | undefined;

  private readonly db: Db;
  private readonly repo: AuditRepository;
  private readonly logger: Logger;
  private readonly opts: NonNullable<AuditLogDeps['opts']>;

  constructor(deps: AuditLogDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.logger = deps.logger;
    this.opts = deps.opts ?? { recordReads: true };
  }

  /** Appends events inside the caller's transaction; must be its last statement (lock order). */
  async append(tx: Tx, entries: AuditEntry[]): Promise<void> {
    await this.appendLocked(tx, entries);
  }

  /** Records one event in its own (shared, batched) transaction; resolves once it is durable. */
  record(entry: AuditEntry): Promise<void> {
    return this.enqueue(entry, true);
  }

  /**
   * Records a read; resolves once its event is committed, without waiting for the WAL flush (see
   * the class comment). Reads can be switched off for benchmarks only (AUDIT_READS=false).
   */
  recordRead(entry: AuditEntry): Promise<void> {
    return this.opts.recordReads ? this.enqueue(entry, false) : Promise.resolve();
  }

  private enqueue(entry: AuditEntry, durable: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ entry, durable, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  /** For failed and forbidden attempts: waits up to a few seconds, never fails the response. */
  async recordAttempt(entry: AuditEntry, waitMs = 3000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const written = this.record(entry).catch((err: unknown) =>
      this.logger.error({ err, action: entry.action }, 'could not record a failed attempt'),
    );
    await Promise.race([written, new Promise((r) => (timer = setTimeout(r, waitMs).unref()))]);
    clearTimeout(timer);
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, 500);
        try {
          await this.appendBatch(
            batch.map((p) => p.entry),
            batch.some((p) => p.durable),
          );
          for (const p of batch) p.resolve();
        } catch (err) {
          // A statement whose answer was lost (a timeout, a dropped connection) may still have
          // committed: then its last event is in the trail with the hash this batch computed,
          // which covers every event of the batch. Appending them again would record each twice.
          if (await this.landed()) {
            for (const p of batch) p.resolve();
            continue;
          }
          // An outage fails the batch as one; only the database refusing an event's own data
          // (SQLSTATE classes 22 and 23) is worth trying event by event, so that one event it
          // refuses does not fail every request batched with it.
          if (batch.length === 1 || !refusesData(err)) {
            for (const p of batch) p.reject(err);
            continue;
          }
          for (const p of batch) {
            try {
              await this.appendBatch([p.entry], p.durable);
              p.resolve();
            } catch (one) {
              if (await this.landed()) p.resolve();
              else p.reject(one);
            }
          }
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /** One batch in one statement on the known head; under the head's lock after conflicts. */
  private async appendBatch(entries: AuditEntry[], durable: boolean): Promise<void> {
    for (let attempt = 0; attempt < OPTIMISTIC_ATTEMPTS; attempt++) {
      const head = this.head ?? (await this.repo.head(this.db));
      const { rows, last } = this.chain(entries, head);
      this.head = undefined;
      this.attempted = last;
      if (await this.repo.appendIfHead(this.db, head, last, rows, durable)) {
        this.head = last;
        return;
      }
    }
    await this.db.transaction().execute(async (tx) => {
      if (!durable) await this.repo.commitWithoutFlush(tx);
      await this.appendLocked(tx, entries, (last) => (this.attempted = last));
    });
  }

  /** Whether the batch last attempted is in the trail after all (its answer was lost). */
  private async landed(): Promise<boolean> {
    const attempted = this.attempted;
    this.attempted = undefined;
    if (!attempted) return false;
    const hash = await this.repo.hashAt(this.db, attempted.seq).catch(() => undefined);
    return hash === attempted.hash;
  }

  /** The rows of `entries` chained on `head`, and the head they make. */
  private chain(entries: AuditEntry[], head: { seq: number; hash: string }) {
    let { seq, hash } = head;
    // Stamped after the head was read (or appended by this instance): every event before it in
    // the chain was stamped earlier, so sequence order and time order agree (on one clock).
    const at = this.now();
    const rows: Insertable<AuditEventsTable>[] = [];
    for (const entry of entries) {
      seq += 1;
      const event = this.chained(entry, seq, at);
      const prev = hash;
      hash = chainHash(prev, event);
      rows.push(this.toRow(event, prev, hash));
    }
    return { rows, last: { seq, hash } };
  }

  private async appendLocked(
    tx: Tx,
    entries: AuditEntry[],
    onChained?: (last: { seq: number; hash: string }) => void,
  ): Promise<void> {
    if (entries.length === 0) return;
    // Stamped under the head lock (in chain), so sequence order and time order agree.
    const { rows, last } = this.chain(entries, await this.repo.lockHead(tx));
    onChained?.(last);
    await this.repo.insertEvents(tx, rows);
    await this.repo.setHead(tx, last.seq, last.hash);
  }

  private toRow(event: ChainedEvent, prev: string, hash: string): Insertable<AuditEventsTable> {
    return {
      seq: event.seq,
      occurred_at: event.occurredAt,
      action: event.action,
      outcome: event.outcome as AuditOutcome,
      actor_key_id: event.actor.keyId,
      actor_role: event.actor.role,
      actor_name: event.actor.name,
      item_ids: event.itemIds,
      complaint_id: event.complaintId,
      request_id: event.requestId,
      client_ip: event.clientIp,
      details: JSON.stringify(event.details),
      prev_hash: prev,
      hash,
    };
  }

  private chained(entry: AuditEntry, seq: number, at: Date): ChainedEvent {
    // Round-trip through JSON so the hashed form equals what jsonb gives back (no undefined,
    // no Dates, no class instances); NUL, which PostgreSQL refuses in text and jsonb, is replaced
    // so a hostile path or header can never make an event (and the requests batched with it) fail.
    const details = JSON.parse(
      JSON.stringify(entry.details ?? {}, (_k, v: unknown) =>
        typeof v === 'string' ? clean(v, 2000) : v,
      ),
    ) as Record<string, unknown>;
    return {
      seq,
      occurredAt: at.toISOString(),
      action: entry.action,
      outcome: entry.outcome ?? 'success',
      actor: {
        keyId: entry.actor.keyId,
        role: clean(entry.actor.role, 32),
        name: clean(entry.actor.name, 200),
      },
      itemIds: [...new Set(entry.itemIds ?? [])],
      complaintId: entry.complaintId == null ? null : clean(entry.complaintId, 200),
      requestId: entry.actor.requestId == null ? null : clean(entry.actor.requestId, 128),
      clientIp: entry.actor.clientIp == null ? null : clean(entry.actor.clientIp, 64),
      details,
    };
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }
}
