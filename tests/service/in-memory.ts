import type { Insertable, Selectable } from 'kysely';
import type { BundleRow } from '../../src/bundles/bundle.repository';
import { BundleRepository, CUSTODY_ACTIONS } from '../../src/bundles/bundle.repository';
import { ComplaintRepository, type ComplaintRow } from '../../src/complaints/complaint.repository';
import {
  AuditRepository,
  type AuditRow,
  type CheckpointRow,
} from '../../src/base/audit.repository';
import { AuditLog } from '../../src/base/audit.service';
import { CheckpointService } from '../../src/custody/checkpoint.service';
import { DeletionRepository, type DeletableRow } from '../../src/custody/deletion.repository';
import { HoldRepository, type HoldRow } from '../../src/custody/hold.repository';
import type {
  AuditCheckpointsTable,
  AuditEventsTable,
  AuditPendingTable,
  BundlesTable,
  Db,
  Executor,
  LegalHoldsTable,
  LinkType,
  ShareLinksTable,
} from '../../src/db/database';
import { EvidenceRepository, type EvidenceRow } from '../../src/evidence/evidence.repository';
import {
  SegmentRepository,
  type SegmentCutRow,
  type SegmentRow,
} from '../../src/evidence/segment.repository';
import { createLogger } from '../../src/base/logger';
import { ShareLinkRepository, type ShareLinkRow } from '../../src/share/share-link.repository';
import type { CustodyRecordStore } from '../../src/storage/record-store';
import type { BlobStore } from '../../src/storage/blob-store';
import { WORM_NOT_CONFIGURED } from '../../src/storage/worm';
import { TEST_SIGNING_KEY } from '../support/rows';

/**
 * The service tier's doubles: the repositories as subclasses of the real ones whose methods keep
 * rows in memory, with the semantics of their SQL (links, the legal-hold function, ordering). A
 * method a test reaches that is not overridden here runs the real query against a database that is
 * not there, and fails loudly. No PostgreSQL, no S3: a service's rules in milliseconds.
 */

type Item = Omit<EvidenceRow, 'order_ids' | 'complaint_ids'>;
interface Link {
  link_type: LinkType;
  ref: string;
  item_id: string;
}

/** The tables, in memory. A transaction that throws puts them back as they were. */
type PendingRow = Selectable<AuditPendingTable>;

export class MemoryState {
  items = new Map<string, Item>();
  links: Link[] = [];
  complaints = new Map<string, ComplaintRow>();
  segments = new Map<string, SegmentRow>();
  cuts = new Map<string, SegmentCutRow>();
  holds: HoldRow[] = [];
  events: AuditRow[] = [];
  /** Events recorded, not yet linked into `events` (what the audit log's settle() links). */
  pending: PendingRow[] = [];
  /** Links what waits (set by memoryAudit). */
  settle: () => Promise<void> = async () => undefined;
  head = { seq: 0, hash: '0'.repeat(64) };
  checkpoints: CheckpointRow[] = [];
  bundles = new Map<string, BundleRow>();
  shareLinks = new Map<string, ShareLinkRow>();
  /** Blobs (by key) and records (checkpoints), as the store holds them. */
  blobs = new Map<string, Buffer>();
  records = new Map<string, Buffer>();

  /** The trail, everything recorded linked first: what the service tests read. */
  async trail(): Promise<AuditRow[]> {
    await this.settle();
    return this.events;
  }

  /** Adds an item (its links from order_ids and complaint_ids) and returns it as read back. */
  addItem(row: EvidenceRow): EvidenceRow {
    const { order_ids, complaint_ids, ...item } = row;
    this.items.set(item.id, item);
    for (const ref of order_ids) this.links.push({ link_type: 'order', ref, item_id: item.id });
    for (const ref of complaint_ids) {
      this.links.push({ link_type: 'complaint', ref, item_id: item.id });
    }
    this.blobs.set(item.blob_key, Buffer.alloc(item.size_bytes));
    return this.item(item.id)!;
  }

  /** An item as the repository reads it: with its links. */
  item(id: string): EvidenceRow | undefined {
    const i = this.items.get(id);
    if (!i) return undefined;
    const refs = (type: LinkType) =>
      this.links
        .filter((l) => l.item_id === id && l.link_type === type)
        .map((l) => l.ref)
        .sort();
    return { ...i, order_ids: refs('order'), complaint_ids: refs('complaint') };
  }

  /** evidence_is_held(): an active hold on the item, or on a complaint it is linked to directly
   *  or through one of the complaint's orders. */
  isHeld(itemId: string): boolean {
    return this.holds.some((h) => {
      if (h.released_at !== null) return false;
      if (h.item_id === itemId) return true;
      if (!h.complaint_id) return false;
      return this.itemsOfComplaint(h.complaint_id).includes(itemId);
    });
  }

  itemsOfComplaint(complaintId: string): string[] {
    const orders = this.complaints.get(complaintId)?.order_ids ?? [];
    const ids = this.links
      .filter(
        (l) =>
          (l.link_type === 'complaint' && l.ref === complaintId) ||
          (l.link_type === 'order' && orders.includes(l.ref)),
      )
      .map((l) => l.item_id);
    return [...new Set(ids)].sort();
  }

  snapshot(): () => void {
    const copy = structuredClone({
      items: this.items,
      links: this.links,
      complaints: this.complaints,
      segments: this.segments,
      cuts: this.cuts,
      holds: this.holds,
      events: this.events,
      head: this.head,
      checkpoints: this.checkpoints,
      bundles: this.bundles,
      shareLinks: this.shareLinks,
    });
    return () => Object.assign(this, copy);
  }
}

/**
 * What the services use of Kysely: transactions. The callback gets the same stand-in, which only
 * the in-memory repositories accept; a throw rolls the state back, as PostgreSQL would.
 */
export function memoryDb(state: MemoryState): Db {
  const db = {
    connection: () => ({
      execute: async <T>(fn: (conn: unknown) => Promise<T>): Promise<T> => fn(db),
    }),
    transaction: () => ({
      execute: async <T>(fn: (tx: unknown) => Promise<T>): Promise<T> => {
        const rollback = state.snapshot();
        try {
          return await fn(db);
        } catch (err) {
          rollback();
          throw err;
        }
      },
    }),
  };
  return db as unknown as Db;
}

const byCapture = (a: EvidenceRow, b: EvidenceRow) =>
  new Date(a.captured_at).getTime() - new Date(b.captured_at).getTime() ||
  (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

export class MemoryEvidenceRepository extends EvidenceRepository {
  constructor(private readonly s: MemoryState) {
    super();
  }
  private all(ids: Iterable<string>): EvidenceRow[] {
    return [...new Set(ids)]
      .map((id) => this.s.item(id))
      .filter((r): r is EvidenceRow => !!r)
      .sort(byCapture);
  }
  override async findById(_db: Executor, id: string) {
    return this.s.item(id);
  }
  override async findByIds(_db: Executor, ids: string[]) {
    return this.all(ids);
  }
  override async listByLink(_db: Executor, type: LinkType, ref: string, limit: number) {
    return this.listByLinks(_db, type, [ref], limit);
  }
  override async listByLinks(_db: Executor, type: LinkType, refs: string[], limit: number) {
    const ids = this.s.links
      .filter((l) => l.link_type === type && refs.includes(l.ref))
      .map((l) => l.item_id);
    return this.all(ids).slice(0, limit);
  }
  override async listByTrackingNumbers(_db: Executor, numbers: string[], limit: number) {
    const ids = [...this.s.items.values()]
      .filter((i) => i.tracking_number !== null && numbers.includes(i.tracking_number))
      .map((i) => i.id);
    return this.all(ids).slice(0, limit);
  }
  override async listCallsWithNumber(
    _db: Executor,
    e164: string,
    from: Date,
    to: Date,
    limit: number,
  ) {
    const ids = [...this.s.items.values()]
      .filter(
        (i) =>
          i.kind === 'call_recording' &&
          (i.from_number_e164 === e164 || i.to_number_e164 === e164) &&
          new Date(i.captured_at) >= from &&
          new Date(i.captured_at) <= to,
      )
      .map((i) => i.id);
    return this.all(ids).slice(0, limit);
  }
  override async addLinks(_db: Executor, itemId: string, links: { type: LinkType; ref: string }[]) {
    for (const l of links) {
      const known = this.s.links.some(
        (x) => x.item_id === itemId && x.link_type === l.type && x.ref === l.ref,
      );
      if (!known) this.s.links.push({ link_type: l.type, ref: l.ref, item_id: itemId });
    }
  }
  override async isHeld(_db: Executor, itemId: string) {
    return this.s.isHeld(itemId);
  }
  override async damagedAmong(_db: Executor, ids: string[]) {
    return ids.filter((id) => this.s.items.get(id)?.damaged_at);
  }
  override async findBySha256(_db: Executor, sha256: string) {
    return [...this.s.items.values()].find((i) => i.sha256 === sha256);
  }
}

export class MemoryComplaintRepository extends ComplaintRepository {
  constructor(private readonly s: MemoryState) {
    super();
  }
  override async find(_db: Executor, id: string) {
    return this.s.complaints.get(id);
  }
  override async orderIdsOf(_db: Executor, id: string) {
    const c = this.s.complaints.get(id);
    return c && { order_ids: c.order_ids };
  }
  override async hasLinkedEvidence(_db: Executor, id: string) {
    return this.s.links.some((l) => l.link_type === 'complaint' && l.ref === id);
  }
}

export class MemorySegmentRepository extends SegmentRepository {
  constructor(private readonly s: MemoryState) {
    super();
  }
  override async find(_db: Executor, id: string) {
    return this.s.segments.get(id);
  }
  override async findCut(_db: Executor, id: string) {
    return this.s.cuts.get(id);
  }
  override async listForOrdersOrTracking(
    _db: Executor,
    orderIds: string[],
    trackingNumbers: string[],
    limit: number,
  ) {
    return [...this.s.segments.values()]
      .filter(
        (s) =>
          orderIds.includes(s.order_id) ||
          (s.tracking_number !== null && trackingNumbers.includes(s.tracking_number)),
      )
      .sort(
        (a, b) =>
          (a.item_id < b.item_id ? -1 : a.item_id > b.item_id ? 1 : 0) ||
          Number(a.start_sec) - Number(b.start_sec),
      )
      .slice(0, limit);
  }
}

export class MemoryHoldRepository extends HoldRepository {
  constructor(private readonly s: MemoryState) {
    super();
  }
  // One writer at a time in memory: the advisory locks have nothing to order.
  override async lockForPlacement() {}
  override async lockForDeletion() {}
  override async insert(_db: Executor, row: Insertable<LegalHoldsTable>) {
    const hold: HoldRow = {
      released_by_key_id: null,
      released_at: null,
      release_reason: null,
      ...row,
      item_id: row.item_id ?? null,
      complaint_id: row.complaint_id ?? null,
      placed_at: new Date(row.placed_at),
    } as HoldRow;
    this.s.holds.push(hold);
    return { ...hold };
  }
  override async release(
    _db: Executor,
    id: string,
    r: { keyId: string; at: Date; reason: string },
  ) {
    const hold = this.s.holds.find((h) => h.id === id && h.released_at === null);
    if (!hold) return undefined;
    Object.assign(hold, {
      released_by_key_id: r.keyId,
      released_at: r.at,
      release_reason: r.reason,
    });
    return { ...hold };
  }
  override async list(
    _db: Executor,
    f: { itemId?: string; complaintId?: string; active: boolean },
    limit: number,
  ) {
    return this.s.holds
      .filter(
        (h) =>
          (!f.itemId || h.item_id === f.itemId) &&
          (!f.complaintId || h.complaint_id === f.complaintId) &&
          (!f.active || h.released_at === null),
      )
      .sort((a, b) => new Date(b.placed_at).getTime() - new Date(a.placed_at).getTime())
      .slice(0, limit)
      .map((h) => ({ ...h }));
  }
  override async itemsOfComplaint(_db: Executor, complaintId: string) {
    return this.s.itemsOfComplaint(complaintId);
  }
  override async activeOnComplaint(_db: Executor, complaintId: string) {
    return this.s.holds.some((h) => h.complaint_id === complaintId && h.released_at === null);
  }
  override async stillHeld(_db: Executor, itemIds: string[]) {
    return new Set(itemIds.filter((id) => this.s.isHeld(id)));
  }
}

export class MemoryDeletionRepository extends DeletionRepository {
  constructor(private readonly s: MemoryState) {
    super();
  }
  private deletable(i: Item): DeletableRow {
    return {
      id: i.id,
      kind: i.kind,
      sha256: i.sha256,
      size_bytes: i.size_bytes,
      blob_key: i.blob_key,
      received_at: new Date(i.received_at),
      deleted_at: i.deleted_at ? new Date(i.deleted_at) : null,
    };
  }
  override async lockItem(_db: Executor, id: string) {
    const i = this.s.items.get(id);
    return i && this.deletable(i);
  }
  override async tombstone(_db: Executor, id: string, t: { at: Date; reason: string; by: string }) {
    const i = this.s.items.get(id);
    if (!i || i.deleted_at) return;
    // The database's trigger: held evidence is never tombstoned, whatever the path.
    if (this.s.isHeld(id)) throw new Error(`evidence item ${id} is under legal hold`);
    Object.assign(i, { deleted_at: t.at, deletion_reason: t.reason, deleted_by: t.by });
  }
  override async lockUnpurged(
    _db: Executor,
    f: { after?: { deletedAt: Date; id: string }; ids?: string[] },
    limit: number,
  ) {
    return [...this.s.items.values()]
      .filter(
        (i) =>
          i.deleted_at !== null &&
          i.blob_purged_at === null &&
          (!f.ids || f.ids.includes(i.id)) &&
          (!f.after ||
            new Date(i.deleted_at).getTime() > f.after.deletedAt.getTime() ||
            (new Date(i.deleted_at).getTime() === f.after.deletedAt.getTime() &&
              i.id > f.after.id)),
      )
      .sort(
        (a, b) =>
          new Date(a.deleted_at!).getTime() - new Date(b.deleted_at!).getTime() ||
          (a.id < b.id ? -1 : 1),
      )
      .slice(0, limit)
      .map((i) => this.deletable(i) as DeletableRow & { deleted_at: Date });
  }
  override async markPurged(_db: Executor, id: string, at: Date) {
    this.s.items.get(id)!.blob_purged_at = at;
  }
}

export class MemoryAuditRepository extends AuditRepository {
  constructor(private readonly s: MemoryState) {
    super();
  }
  override async lockHead() {
    return { ...this.s.head };
  }
  override async head() {
    return { ...this.s.head };
  }
  override async setHead(_tx: unknown, seq: number, hash: string) {
    this.s.head = { seq, hash };
  }
  override async linkEvents(
    _tx: unknown,
    rows: (Insertable<AuditEventsTable> & { pending_id: number })[],
  ) {
    const ids = new Set(rows.map((r) => r.pending_id));
    this.s.pending = this.s.pending.filter((p) => !ids.has(p.id));
    for (const { pending_id: _, ...r } of rows) {
      this.s.events.push({
        ...(r as unknown as AuditRow),
        occurred_at: new Date(r.occurred_at),
        details: JSON.parse(r.details) as Record<string, unknown>,
      });
    }
  }
  override async lockHeadUnlessBusy() {
    return { ...this.s.head };
  }
  override async insertPending(_db: Executor, rows: Insertable<AuditPendingTable>[]) {
    for (const r of rows) {
      this.s.pending.push({
        ...(r as PendingRow),
        id: this.s.pending.length + this.s.events.length + 1,
        occurred_at: new Date(r.occurred_at),
        details: JSON.parse(r.details) as Record<string, unknown>,
      });
    }
  }
  override async insertPendingBatch(_db: Db, rows: Insertable<AuditPendingTable>[]) {
    await this.insertPending(undefined as unknown as Executor, rows);
  }
  override async lastPendingId() {
    return this.s.pending.at(-1)?.id;
  }
  override async readPending(_tx: unknown, limit: number, uptoId?: number) {
    return this.s.pending.filter((p) => uptoId === undefined || p.id <= uptoId).slice(0, limit);
  }
  override async durableHead() {
    return { ...this.s.head };
  }
  override async commitWithoutFlush() {}
  override async lockCheckpoints() {}
  override async unlockCheckpoints() {}
  override async eventsAfter(_db: Executor, afterSeq: number, uptoSeq: number, limit: number) {
    return this.s.events.filter((e) => e.seq > afterSeq && e.seq <= uptoSeq).slice(0, limit);
  }
  override async insertCheckpoint(_db: Executor, row: Insertable<AuditCheckpointsTable>) {
    if (this.s.checkpoints.some((c) => c.seq === row.seq)) return;
    this.s.checkpoints.push({ ...row, signed_at: new Date(row.signed_at) } as CheckpointRow);
  }
  override async latestCheckpoint() {
    return this.s.checkpoints.at(-1);
  }
}

export class MemoryBundleRepository extends BundleRepository {
  constructor(private readonly s: MemoryState) {
    super();
  }
  override async insert(_db: Executor, row: Insertable<BundlesTable>) {
    this.s.bundles.set(row.id, {
      ...(row as unknown as BundleRow),
      texts: JSON.parse(row.texts as string) as BundleRow['texts'],
      entries: JSON.parse(row.entries as string) as BundleRow['entries'],
    });
  }
  override async find(_db: Executor, id: string) {
    return this.s.bundles.get(id);
  }
  override async complaintOf(_db: Executor, id: string) {
    const b = this.s.bundles.get(id);
    return b && { complaint_id: b.complaint_id };
  }
  override async deletedAmong(_db: Executor, ids: string[]) {
    return ids
      .map((id) => this.s.items.get(id))
      .filter((i): i is Item => !!i?.deleted_at)
      .map((i) => ({ id: i.id, deleted_at: new Date(i.deleted_at!) }));
  }
  override async auditExcerpt(
    _db: Executor,
    itemIds: string[],
    complaintId: string,
    afterSeq: number,
    uptoSeq: number,
    limit: number,
  ) {
    return this.s.events
      .filter(
        (e) =>
          (e.item_ids.some((i) => itemIds.includes(i)) || e.complaint_id === complaintId) &&
          (CUSTODY_ACTIONS as readonly string[]).includes(e.action) &&
          e.seq > afterSeq &&
          e.seq <= uptoSeq,
      )
      .slice(0, limit);
  }
}

export class MemoryShareLinkRepository extends ShareLinkRepository {
  constructor(private readonly s: MemoryState) {
    super();
  }
  override async insert(_db: Executor, row: Insertable<ShareLinksTable>) {
    if ([...this.s.shareLinks.values()].some((l) => l.token_sha256 === row.token_sha256)) {
      throw new Error('duplicate key value violates unique constraint (token_sha256)');
    }
    const link = {
      item_id: null,
      segment_id: null,
      bundle_id: null,
      complaint_id: null,
      note: null,
      revoked_at: null,
      revoked_by_key_id: null,
      use_count: 0,
      last_used_at: null,
      ...row,
      created_at: new Date(row.created_at),
      expires_at: new Date(row.expires_at),
    } as ShareLinkRow;
    this.s.shareLinks.set(link.id, link);
    return { ...link };
  }
  override async find(_db: Executor, id: string) {
    const l = this.s.shareLinks.get(id);
    return l && { ...l };
  }
  override async findByTokenHash(_db: Executor, tokenSha256: string) {
    const l = [...this.s.shareLinks.values()].find((x) => x.token_sha256 === tokenSha256);
    return l && { ...l };
  }
  override async list(_db: Executor, f: { complaintId?: string; itemId?: string }, limit: number) {
    return [...this.s.shareLinks.values()]
      .filter(
        (l) =>
          (!f.complaintId || l.complaint_id === f.complaintId) &&
          (!f.itemId || l.item_id === f.itemId),
      )
      .sort((a, b) => new Date(b.created_at).getTime() - new Date(a.created_at).getTime())
      .slice(0, limit)
      .map((l) => ({ ...l }));
  }
  override async revoke(_db: Executor, id: string, at: Date, keyId: string | null) {
    const l = this.s.shareLinks.get(id);
    if (!l || l.revoked_at) throw new Error('no result');
    Object.assign(l, { revoked_at: at, revoked_by_key_id: keyId });
    return { ...l };
  }
  override async countUse(_db: Executor, id: string, at: Date) {
    const l = this.s.shareLinks.get(id);
    if (l) Object.assign(l, { use_count: l.use_count + 1, last_used_at: at });
  }
}

/** The real CheckpointService over the in-memory audit repository and store. */
export function memoryCheckpoints(s: MemoryState): CheckpointService {
  return new CheckpointService({
    db: memoryDb(s),
    store: memoryRecords(s),
    repo: new MemoryAuditRepository(s),
    key: TEST_SIGNING_KEY,
    logger: createLogger('silent'),
    audit: s,
  });
}

/** The blob store's members the services here reach (its interface is the storage tier's). */
export type MemoryStore = Pick<
  BlobStore,
  'stat' | 'delete' | 'legalHoldSupported' | 'setLegalHold'
> & { legalHolds: Map<string, boolean> };

export function memoryStore(s: MemoryState, opts: { legalHold?: boolean } = {}): BlobStore {
  const store: MemoryStore = {
    legalHoldSupported: opts.legalHold ?? false,
    legalHolds: new Map(),
    async stat(key) {
      return s.blobs.get(key)?.length;
    },
    async delete(key) {
      s.blobs.delete(key);
    },
    async setLegalHold(key, on) {
      store.legalHolds.set(key, on);
    },
  };
  return store as unknown as BlobStore;
}

/** The custody record store (signed checkpoints) over the state's records. */
export function memoryRecords(s: MemoryState): CustodyRecordStore {
  return {
    async getRecord(key) {
      return s.records.get(key);
    },
    async putRecord(key, body) {
      s.records.set(key, body);
      return WORM_NOT_CONFIGURED;
    },
    async listRecords(prefix) {
      return [...s.records.keys()].filter((key) => key.startsWith(prefix)).sort();
    },
  };
}

/** The real AuditLog (hash chain and all) over the in-memory audit repository. */
export function memoryAudit(s: MemoryState): AuditLog {
  const audit = new AuditLog({
    db: memoryDb(s),
    repo: new MemoryAuditRepository(s),
    logger: createLogger('silent'),
  });
  s.settle = () => audit.settle();
  return audit;
}

/** The repositories over one state, named as the services' dependency objects name them. */
export function memoryRepos(s: MemoryState) {
  return {
    db: memoryDb(s),
    evidence: new MemoryEvidenceRepository(s),
    complaints: new MemoryComplaintRepository(s),
    segments: new MemorySegmentRepository(s),
    holds: new MemoryHoldRepository(s),
    deletion: new MemoryDeletionRepository(s),
    bundles: new MemoryBundleRepository(s),
    shareLinks: new MemoryShareLinkRepository(s),
    auditRepo: new MemoryAuditRepository(s),
    audit: memoryAudit(s),
    logger: createLogger('silent'),
  };
}

/** The code of the AppError a call is refused with ('resolved' when it is not refused). */
export const code = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'resolved',
    (err: { code?: string }) => err.code ?? String(err),
  );
