import { pipeline, type Readable } from 'node:stream';
import { isItemId, noSuchItem } from '../base/item-id';
import type { Db, LinkType } from '../db/database';
import { can } from '../access/roles';
import type { Actor, RequestActor } from '../base/actor';
import type { AuditLog } from '../base/audit.service';
import { AppError } from '../base/errors';
import type { LinksRequest, SearchQuery, SearchResult } from '../contract/evidence.contract';
import { BlobUnavailableError, type BlobStore, type ByteRange } from '../storage/blob-store';
import type { EvidenceRepository, EvidenceRow, SearchCursor } from './evidence.repository';
import {
  toDuplicateReceipt,
  toEvidenceView,
  type DuplicateReceipt,
  toOrderItemView,
  type EvidenceView,
} from './evidence.view';
import { toE164 } from './phone-number';
import { verifyingStream } from './verified-read';

const LIST_LIMIT = 1000;

export interface EvidenceServiceDeps {
  db: Db;
  store: BlobStore;
  repo: EvidenceRepository;
  audit: AuditLog;
  opts?: { defaultPhoneRegion?: string; damage?: ReadMismatchRecorder };
}

export class EvidenceService {
  private readonly db: Db;
  private readonly store: BlobStore;
  private readonly repo: EvidenceRepository;
  private readonly audit: AuditLog;
  private readonly opts: NonNullable<EvidenceServiceDeps['opts']>;

  constructor(deps: EvidenceServiceDeps) {
    this.db = deps.db;
    this.store = deps.store;
    this.repo = deps.repo;
    this.audit = deps.audit;
    this.opts = deps.opts ?? {};
  }

  /**
   * The item and how much of it this key may see: all of it with `evidence:read` or as the key
   * that archived it; only its duplicate receipt as a key that later delivered the same bytes
   * (the same bytes are no proof of a right to what the first uploader recorded about them).
   */
  async access(principal: RequestActor, id: string): Promise<{ row: EvidenceRow; full: boolean }> {
    const row = isItemId(id) ? await this.repo.findById(this.db, id) : undefined;
    if (!row) throw noSuchItem(id);
    if (can(principal.role, 'evidence:read')) return { row, full: true };
    if (!(await this.repo.hasReceipt(this.db, principal.keyId, row.id))) {
      throw new AppError('forbidden', 'This key may only read receipts of its own uploads.');
    }
    return { row, full: row.created_by_key_id === principal.keyId };
  }

  /** The item row; ingest keys may see only items they archived themselves. */
  async getRow(principal: RequestActor, id: string): Promise<EvidenceRow> {
    const { row, full } = await this.access(principal, id);
    if (!full) {
      throw new AppError(
        'forbidden',
        'Another key archived these bytes first; this key may read only its duplicate receipt.',
      );
    }
    return row;
  }

  async get(actor: RequestActor, id: string): Promise<EvidenceView | DuplicateReceipt> {
    const { row, full } = await this.access(actor, id);
    if (full) {
      await this.audit.recordRead({ action: 'evidence.view', actor, itemIds: [row.id] });
      return toEvidenceView(row);
    }
    const links = await this.repo.linksAddedBy(this.db, row.id, actor.keyId);
    await this.audit.recordRead({
      action: 'evidence.view',
      actor,
      itemIds: [row.id],
      details: { receipt: 'duplicate' },
    });
    return toDuplicateReceipt(row, links);
  }

  /** `ref`: an order or complaint id as the route parsed it. */
  async listByLink(actor: RequestActor, type: LinkType, ref: string): Promise<EvidenceView[]> {
    const rows = await this.repo.listByLink(this.db, type, ref, LIST_LIMIT);
    await this.audit.recordRead({
      action: 'evidence.list',
      actor,
      itemIds: rows.map((r) => r.id),
      details: { [`${type}Id`]: ref, count: rows.length },
    });
    return rows.map(toEvidenceView);
  }

  /** An order's items, each with that order's segments of it: one query. */
  async listByOrder(actor: RequestActor, orderId: string) {
    const rows = await this.repo.listByOrder(this.db, orderId);
    await this.audit.recordRead({
      action: 'evidence.list',
      actor,
      itemIds: rows.map((r) => r.id),
      details: { orderId, count: rows.length },
    });
    return rows.map(toOrderItemView);
  }

  async addLinks(
    actor: RequestActor,
    id: string,
    { orderIds, complaintIds }: LinksRequest,
  ): Promise<EvidenceView> {
    const row = await this.getRow(actor, id);
    return this.db.transaction().execute(async (tx) => {
      await this.repo.addLinks(
        tx,
        row.id,
        [
          ...orderIds.map((ref) => ({ type: 'order' as const, ref })),
          ...complaintIds.map((ref) => ({ type: 'complaint' as const, ref })),
        ],
        actor.keyId,
      );
      const updated = (await this.repo.findById(tx, row.id))!;
      await this.audit.append(tx, [
        { action: 'evidence.link', actor, itemIds: [row.id], details: { orderIds, complaintIds } },
      ]);
      return toEvidenceView(updated);
    });
  }

  /**
   * Removes one link (`ref` as the route parsed it); refused while the item is held, since a link
   * can be what holds it.
   */
  async removeLink(
    actor: RequestActor,
    id: string,
    type: LinkType,
    ref: string,
  ): Promise<EvidenceView> {
    const row = await this.getRow(actor, id);
    return this.db.transaction().execute(async (tx) => {
      if (await this.repo.isHeld(tx, row.id)) {
        throw new AppError(
          'legal_hold',
          `Item ${row.id} is under legal hold; its links cannot be removed until the hold is released.`,
        );
      }
      const removed = await this.repo.removeLink(tx, row.id, type, ref);
      if (!removed) {
        throw new AppError(
          'not_found',
          `Item ${row.id} is not linked to ${type} ${JSON.stringify(ref)}.`,
        );
      }
      const updated = (await this.repo.findById(tx, row.id))!;
      await this.audit.append(tx, [
        { action: 'evidence.unlink', actor, itemIds: [row.id], details: { [`${type}Id`]: ref } },
      ]);
      return toEvidenceView(updated);
    });
  }

  async search(actor: RequestActor, q: SearchQuery): Promise<SearchResult> {
    let phoneE164: string | undefined;
    if (q.phone) {
      phoneE164 = toE164(q.phone, this.opts.defaultPhoneRegion);
      if (!phoneE164) {
        throw new AppError(
          'invalid_phone_number',
          `"${q.phone}" is not a phone number that can be put in E.164 form; include the country code (+44...).`,
        );
      }
    }
    const rows = await this.repo.search(
      this.db,
      { ...q, phoneE164 },
      q.cursor ? decodeCursor(q.cursor) : undefined,
      q.limit + 1,
    );
    const page = rows.slice(0, q.limit);
    const last = page.at(-1);
    await this.audit.recordRead({
      action: 'evidence.list',
      actor,
      itemIds: page.map((r) => r.id),
      details: { search: { ...q, phone: phoneE164 }, count: page.length },
    });
    return {
      items: page.map(toEvidenceView),
      nextCursor:
        rows.length > q.limit && last
          ? encodeCursor({ capturedAt: new Date(last.captured_at), id: last.id })
          : null,
    };
  }

  /** The row of an item that is not a tombstone (410), damaged or not. */
  async getLiveRow(actor: RequestActor, id: string): Promise<EvidenceRow> {
    const row = await this.getRow(actor, id);
    assertNotDeleted(row);
    return row;
  }

  /**
   * The row of an item whose bytes (or what was made from them) may be served: never a
   * tombstone's (410), never one whose bytes are known to be damaged (500 evidence_damaged).
   */
  async getContentRow(actor: RequestActor, id: string): Promise<EvidenceRow> {
    const row = await this.getLiveRow(actor, id);
    assertNotDamaged(row);
    assertNotSuspect(row, this.opts.damage);
    return row;
  }

  /**
   * Opens the stored bytes (of a row from getContentRow) and records the download before a byte leaves: nothing is served
   * without its audit event being durable.
   */
  async readContent(
    actor: RequestActor,
    row: EvidenceRow,
    range: ByteRange | undefined,
    details: Record<string, unknown>,
  ): Promise<Readable> {
    const opened = new Date(); // before the open: a repair after it did not replace these bytes
    const body = await openRecorded(
      () => this.openBlob(row, range),
      () => this.recordContentCheck(actor, row, details),
    );
    return checkedRead(body, row, range, { actor, via: 'download', opened }, this.opts.damage);
  }

  /** A HEAD or a 304 sends no bytes, but it still tells the caller the item's state. */
  async recordContentCheck(
    actor: RequestActor,
    row: EvidenceRow,
    details: Record<string, unknown>,
  ) {
    await this.audit.recordRead({ action: 'evidence.download', actor, itemIds: [row.id], details });
  }

  private openBlob(row: EvidenceRow, range?: ByteRange): Promise<Readable> {
    return openStored(this.store, row.blob_key, row.size_bytes, range, `bytes of item ${row.id}`);
  }
}

/** Opens stored bytes and records the read before any byte leaves; a failed record closes them. */
export async function openRecorded(
  open: () => Promise<Readable>,
  record: () => Promise<void>,
): Promise<Readable> {
  const body = await open();
  try {
    await record();
  } catch (err) {
    body.destroy();
    throw err;
  }
  return body;
}

/**
 * Opens stored bytes; missing or damaged ones are never served: 500 `evidence_unavailable`, with
 * the store's reason logged, not sent.
 */
export async function openStored(
  store: BlobStore,
  key: string,
  size: number,
  range: ByteRange | undefined,
  what: string,
): Promise<Readable> {
  try {
    return await store.read(key, size, range);
  } catch (err) {
    if (!(err instanceof BlobUnavailableError)) throw err;
    const unavailable = new AppError(
      'evidence_unavailable',
      `The stored ${what} are missing or damaged, so they are not served. This has been logged for an administrator.`,
    );
    unavailable.cause = err; // logged, never sent to the client
    throw unavailable;
  }
}

/** Records a full read whose bytes did not hash to the item's SHA-256 (the integrity service). */
export interface ReadMismatchRecorder {
  recordReadMismatch(
    row: Pick<EvidenceRow, 'id' | 'sha256'>,
    actor: Actor,
    computed: { sha256: string; size: number },
    readStartedAt: Date,
    via: string,
  ): Promise<void>;
  /** Whether a read here found the item's bytes wrong and could not record it. */
  isSuspect(itemId: string): boolean;
  /** Queues a verification of an item read only in part, unless it was verified recently. */
  checkSoon(row: Pick<EvidenceRow, 'id' | 'verified_at'>): void;
}

/**
 * A full read of an item's bytes, hashed as they stream: when they do not hash to its SHA-256,
 * the response is cut before its last chunk (a client never gets the whole body) and the item is
 * marked damaged.
 */
export function verifiedRead(
  body: Readable,
  row: Pick<EvidenceRow, 'id' | 'sha256'>,
  read: { actor: Actor; via: string; /** Taken before the bytes were opened. */ opened: Date },
  recorder: ReadMismatchRecorder | undefined,
): Readable {
  return pipeline(
    body,
    verifyingStream(row.sha256, async (computed) => {
      await recorder?.recordReadMismatch(row, read.actor, computed, read.opened, read.via);
    }),
    () => undefined,
  );
}

/** Whether a range is the whole representation (`bytes=0-`, `bytes=0-<size-1>`, a player's first request). */
export function coversWhole(range: ByteRange | undefined, size: number): boolean {
  return !range || (range.start === 0 && range.end >= size - 1);
}

/**
 * The bytes of an item as they go out: a read of the whole (with or without a Range header) is
 * hashed as it streams and cut before its end if it hashes wrong; a part cannot be checked, so
 * an item not verified recently gets a verification queued.
 */
export function checkedRead(
  body: Readable,
  row: Pick<EvidenceRow, 'id' | 'sha256' | 'size_bytes' | 'verified_at'>,
  range: ByteRange | undefined,
  read: { actor: Actor; via: string; /** Taken before the bytes were opened. */ opened: Date },
  recorder: ReadMismatchRecorder | undefined,
): Readable {
  if (coversWhole(range, row.size_bytes)) return verifiedRead(body, row, read, recorder);
  recorder?.checkSoon(row);
  return body;
}

/**
 * A read in this process found the item's bytes wrong but could not mark it (database down):
 * none of its bytes are served here until a verification records its state (queued now).
 */
export function assertNotSuspect(
  row: Pick<EvidenceRow, 'id' | 'verified_at'>,
  recorder: ReadMismatchRecorder | undefined,
): void {
  if (!recorder?.isSuspect(row.id)) return;
  recorder.checkSoon(row);
  throw new AppError(
    'evidence_damaged',
    `The stored bytes of this item did not match its archived SHA-256 when last read, so they are not served until they are verified again. This has been logged for an administrator.`,
    { itemId: row.id },
  );
}

/** Bytes known not to hash to the archived SHA-256 are never passed off as the evidence. */
export function assertNotDamaged(row: { id: string; damaged_at: Date | string | null }): void {
  if (row.damaged_at) {
    throw new AppError(
      'evidence_damaged',
      `The stored bytes of item ${row.id} were found on ${new Date(row.damaged_at).toISOString()} not to match its archived SHA-256, so neither they nor anything made from them are served. Uploading the genuine bytes again repairs it; this has been logged for an administrator.`,
      { itemId: row.id },
    );
  }
}

export function assertNotDeleted(row: EvidenceRow): void {
  if (row.deleted_at) {
    throw new AppError(
      'evidence_deleted',
      `Item ${row.id} was deleted on ${new Date(row.deleted_at).toISOString()} (${row.deletion_reason}); its tombstone and custody history remain.`,
    );
  }
}

function encodeCursor(c: SearchCursor): string {
  return Buffer.from(JSON.stringify([c.capturedAt.toISOString(), c.id])).toString('base64url');
}

function decodeCursor(raw: string): SearchCursor {
  try {
    const [at, id] = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as unknown[];
    const capturedAt = new Date(String(at));
    if (typeof id === 'string' && isItemId(id) && !Number.isNaN(capturedAt.getTime())) {
      return { capturedAt, id };
    }
  } catch {
    // fall through
  }
  throw new AppError('invalid_cursor', 'The cursor is not one this service issued.');
}
