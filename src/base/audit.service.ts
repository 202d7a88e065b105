import type { Insertable } from 'kysely';
import type { AuditEventsTable, AuditOutcome, AuditPendingTable, Db, Tx } from '../db/database';
import type { Actor } from './actor';
import type { Logger } from './logger';
import { chainHash, type ChainedEvent } from './audit-chain';
import type { AuditRepository, AuditRow } from './audit.repository';

/** The database refused an event's own data (data exception, integrity constraint violation). */
const refusesData = (err: unknown) =>
  /^2[23]/.test(String((err as { code?: unknown } | null)?.code ?? ''));

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

interface Queued {
  entry: AuditEntry;
  /** False for reads: their batch may commit without waiting for the WAL flush. */
  durable: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Batches of events being recorded at once, at most (each on a connection of its own). */
const RECORD_IN_FLIGHT = 2;
/** Waiting events linked per transaction, at most. */
const CHAIN_BATCH = 5000;
/** How often a chainer looks for events left waiting by others (an instance that stopped). */
const CHAIN_POLL_MS = 250;
/** After a writer's append: its transaction commits right after, then its events can be linked. */
const AFTER_WRITE_MS = 5;
/** The least time between two runs of this instance's chainer. */
const LINK_EVERY_MS = 50;

export interface AuditLogDeps {
  db: Db;
  repo: AuditRepository;
  logger: Logger;
  opts?: { recordReads: boolean; now?: () => Date };
}

/**
 * The append-only, hash-chained audit trail, recorded then linked.
 *
 * Recording: a change to evidence inserts its event inside its own transaction (`append`), so the
 * change and its record commit together; other events are recorded with `record`, which
 * group-commits: every event that arrives while RECORD_IN_FLIGHT batches are being written goes
 * into the next, so a busy read path pays one statement per batch, not per request. Either way the
 * event waits in
 * `audit_pending`, and no lock is taken: recording scales with requests and instances.
 *
 * Linking: a chainer (every instance runs one; the chain head's row lock lets one at a time work,
 * the others skip) moves the waiting events into `audit_events` in `id` order, a batch per
 * transaction, assigning each its seq, its link to the event before and its hash. It runs as
 * soon as events were recorded here (runs at least LINK_EVERY_MS apart), and every CHAIN_POLL_MS
 * for events recorded elsewhere.
 * Whoever reads the trail first links everything recorded before (`settle`), so a reader never
 * misses an event that was answered.
 *
 * Durability: nothing is answered before its event is committed. A batch of reads only
 * (`recordRead`) commits with `synchronous_commit = off`, and so does linking a batch made of
 * reads' events only: neither waits for its WAL flush, which the WAL writer does within
 * 3 x wal_writer_delay (600 ms by default). A database crash in that window can lose the events of
 * reads that were answered, the newest ones and only those (WAL is replayed in order, so no gap
 * can open in the chain, and a linking lost with it leaves its events waiting, to be linked
 * again). Every other event, and every write's event, commits synchronously, and its flush makes
 * every earlier read's event durable too (docs/custody.md, "What a database crash can lose").
 */
export class AuditLog {
  private queue: Queued[] = [];
  /** Batches being written. */
  private inFlight = 0;
  /** The chainer's run in progress, if any. */
  private chaining: Promise<void> | undefined;
  /** Another run was asked for while one was in progress. */
  private again = false;
  /** The run asked for too soon after the last, waiting for its turn. */
  private nextRun: NodeJS.Timeout | undefined;
  private lastRunAt = 0;
  private poll: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The last run failed (an outage): said once, until a run succeeds again. */
  private linkFailing = false;

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

  /** Records events inside the caller's transaction: they commit (or roll back) with it. */
  async append(tx: Tx, entries: AuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const at = this.now();
    await this.repo.insertPending(
      tx,
      entries.map((e) => this.toPending(e, at, true)),
    );
    // Linked once the caller's transaction has committed, which it does right after this.
    setTimeout(() => this.chainSoon(), AFTER_WRITE_MS).unref();
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
      this.flush();
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

  /**
   * Starts a batch of what is queued while fewer than RECORD_IN_FLIGHT are being written: a batch
   * no longer waits for the one before it (recording takes no lock; order does not matter until
   * events are linked), so an event waits for at most its own statement when the path is quiet,
   * and events arriving while all are busy share the next batch.
   */
  private flush(): void {
    while (this.queue.length > 0 && this.inFlight < RECORD_IN_FLIGHT) {
      const batch = this.queue.splice(0, 500);
      this.inFlight++;
      void this.write(batch).finally(() => {
        this.inFlight--;
        this.chainSoon();
        this.flush();
      });
    }
  }

  private async write(batch: Queued[]): Promise<void> {
    try {
      await this.insertBatch(
        batch.map((p) => p.entry),
        batch.some((p) => p.durable),
      );
      for (const p of batch) p.resolve();
    } catch (err) {
      // An outage fails the batch as one, never retried: a statement whose answer was lost (a
      // timeout, a dropped connection) may still have committed, and its events would be
      // recorded twice. Only the database refusing an event's own data (SQLSTATE classes 22
      // and 23: nothing was committed) is worth trying event by event, so that one event it
      // refuses does not fail every request batched with it.
      if (batch.length === 1 || !refusesData(err)) {
        for (const p of batch) p.reject(err);
        return;
      }
      for (const p of batch) {
        try {
          await this.insertBatch([p.entry], p.durable);
          p.resolve();
        } catch (one) {
          p.reject(one);
        }
      }
    }
  }

  private async insertBatch(entries: AuditEntry[], durable: boolean): Promise<void> {
    const at = this.now();
    await this.repo.insertPendingBatch(
      this.db,
      entries.map((e) => this.toPending(e, at, durable)),
      durable,
    );
  }

  /** Starts the chainer's poll: events other instances left waiting are linked here too. */
  startChaining(): void {
    this.stopped = false;
    const tick = () => {
      this.chainSoon();
      this.poll = setTimeout(tick, CHAIN_POLL_MS).unref();
    };
    this.poll ??= setTimeout(tick, CHAIN_POLL_MS).unref();
  }

  /** Stops the poll, waits for the batch being recorded and the run in progress, links the rest. */
  async close(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.poll);
    clearTimeout(this.nextRun);
    this.poll = undefined;
    this.nextRun = undefined;
    while (this.inFlight > 0 || this.chaining) {
      await this.chaining;
      await new Promise((r) => setImmediate(r));
    }
    await this.settle().catch((err: unknown) =>
      this.logger.warn({ err }, 'audit events left waiting to be linked at shutdown'),
    );
  }

  /**
   * Links waiting events soon: one run at a time here, runs at least LINK_EVERY_MS apart, so that
   * a busy read path links many events per transaction rather than a few (a run asked for during
   * one, or too soon after it, is made when it may).
   */
  private chainSoon(): void {
    if (this.stopped) return; // close() links what is left
    if (this.chaining || this.nextRun) {
      this.again ||= !!this.chaining;
      return;
    }
    const wait = this.lastRunAt + LINK_EVERY_MS - Date.now();
    if (wait > 0) {
      this.nextRun = setTimeout(() => {
        this.nextRun = undefined;
        this.chainSoon();
      }, wait).unref();
      return;
    }
    this.lastRunAt = Date.now();
    this.chaining = (async () => {
      try {
        // A full batch: more wait. Another instance at work (busy): it links them.
        while ((await this.chainOnce()) === CHAIN_BATCH && !this.stopped);
        if (this.linkFailing) this.logger.info('linking waiting audit events again');
        this.linkFailing = false;
      } catch (err) {
        // Once per outage, not at every poll: the events wait, recorded, and are linked after it.
        if (!this.linkFailing) {
          this.logger.warn({ err }, 'could not link waiting audit events (retried every poll)');
        }
        this.linkFailing = true;
      } finally {
        this.chaining = undefined;
        if (this.again) {
          this.again = false;
          this.chainSoon();
        }
      }
    })();
  }

  /** One batch, unless another chainer holds the head; how many events it linked. */
  private async chainOnce(): Promise<number> {
    // One index read when nothing waits (every poll of an idle instance): no lock, no WAL.
    if ((await this.repo.lastPendingId(this.db)) === undefined) return 0;
    return this.db.transaction().execute(async (tx) => {
      const head = await this.repo.lockHeadUnlessBusy(tx);
      return head ? this.linkBatch(tx, head) : 0;
    });
  }

  /**
   * Links every event recorded before this call (waiting for a chainer at work elsewhere): what
   * reads the trail calls first, so that an event already answered is never missing from it.
   */
  async settle(): Promise<void> {
    const upto = await this.repo.lastPendingId(this.db);
    if (upto === undefined) return;
    for (;;) {
      const linked = await this.db
        .transaction()
        .execute(async (tx) => this.linkBatch(tx, await this.repo.lockHead(tx), upto));
      if (linked < CHAIN_BATCH) return;
    }
  }

  /** Under the head's lock: the oldest waiting events, linked on `head`; how many. */
  private async linkBatch(
    tx: Tx,
    head: { seq: number; hash: string },
    uptoId?: number,
  ): Promise<number> {
    const waiting = await this.repo.readPending(tx, CHAIN_BATCH, uptoId);
    if (waiting.length === 0) return 0;
    // Reads' events only: committed without waiting for the flush, as they were recorded. A
    // linking lost in a crash leaves its events waiting (their removal is undone with the insert).
    if (!waiting.some((w) => w.durable)) await this.repo.commitWithoutFlush(tx);
    let { seq, hash } = head;
    const rows: (Insertable<AuditEventsTable> & { pending_id: number })[] = [];
    for (const w of waiting) {
      seq += 1;
      // Hashed as stored: the row read back from the database, as verify-audit will read it.
      const event = chainedFormOf({ ...w, seq, prev_hash: '', hash: '' });
      const prev = hash;
      hash = chainHash(prev, event);
      rows.push({ ...this.toRow(event, prev, hash), pending_id: w.id });
    }
    await this.repo.linkEvents(tx, rows);
    await this.repo.setHead(tx, seq, hash);
    return waiting.length;
  }

  /** An entry as it waits to be linked: cleaned, stamped, in the stored form. */
  private toPending(entry: AuditEntry, at: Date, durable: boolean): Insertable<AuditPendingTable> {
    const {
      seq: _s,
      prev_hash: _p,
      hash: _h,
      ...row
    } = this.toRow(this.chained(entry, 0, at), '', '');
    return { ...row, durable };
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
