import type { Insertable, Selectable } from 'kysely';
import type { Executor, SegmentCutsTable, SegmentsTable } from '../db/database';

export type SegmentRow = Selectable<SegmentsTable>;
export type SegmentCutRow = Selectable<SegmentCutsTable>;

export interface NewSegment {
  orderId: string;
  trackingNumber?: string;
  startSec: number;
  endSec: number;
}

/** Thin data access for segments and their cuts: one query per method. */
export class SegmentRepository {
  /** Adds segments to an item; one already there (same order and offsets) is kept as it is. */
  async insert(
    db: Executor,
    rows: (NewSegment & { id: string; itemId: string; keyId: string })[],
  ): Promise<void> {
    if (rows.length === 0) return;
    await db
      .insertInto('segments')
      .values(
        rows.map((s) => ({
          id: s.id,
          item_id: s.itemId,
          order_id: s.orderId,
          tracking_number: s.trackingNumber ?? null,
          start_sec: s.startSec,
          end_sec: s.endSec,
          created_by_key_id: s.keyId,
        })),
      )
      .onConflict((oc) => oc.constraint('segments_unique').doNothing())
      .execute();
  }

  async listForItem(db: Executor, itemId: string): Promise<SegmentRow[]> {
    return db
      .selectFrom('segments')
      .selectAll()
      .where('item_id', '=', itemId)
      .orderBy('start_sec')
      .orderBy('order_id')
      .execute();
  }

  /** An order's segments within these items (the items a lookup by that order found). */
  async listForOrder(db: Executor, orderId: string, itemIds: string[]): Promise<SegmentRow[]> {
    if (itemIds.length === 0) return [];
    return db
      .selectFrom('segments')
      .selectAll()
      .where('order_id', '=', orderId)
      .where('item_id', 'in', itemIds)
      .orderBy('start_sec')
      .execute();
  }

  /** Segments of any of these orders, or with any of these tracking numbers, in any item. */
  async listForOrdersOrTracking(
    db: Executor,
    orderIds: string[],
    trackingNumbers: string[],
    limit: number,
  ): Promise<SegmentRow[]> {
    if (orderIds.length === 0 && trackingNumbers.length === 0) return [];
    return db
      .selectFrom('segments')
      .selectAll()
      .where((eb) =>
        eb.or([
          ...(orderIds.length ? [eb('order_id', 'in', orderIds)] : []),
          ...(trackingNumbers.length ? [eb('tracking_number', 'in', trackingNumbers)] : []),
        ]),
      )
      .orderBy('item_id')
      .orderBy('start_sec')
      .limit(limit)
      .execute();
  }

  async find(db: Executor, segmentId: string): Promise<SegmentRow | undefined> {
    return db.selectFrom('segments').selectAll().where('id', '=', segmentId).executeTakeFirst();
  }

  async findCut(db: Executor, segmentId: string): Promise<SegmentCutRow | undefined> {
    return db
      .selectFrom('segment_cuts')
      .selectAll()
      .where('segment_id', '=', segmentId)
      .executeTakeFirst();
  }

  /** Segments of an item already cut (a retried job skips them). */
  async listReadyCutIds(db: Executor, itemId: string): Promise<string[]> {
    const rows = await db
      .selectFrom('segment_cuts')
      .select('segment_id')
      .where('item_id', '=', itemId)
      .where('status', '=', 'ready')
      .execute();
    return rows.map((r) => r.segment_id);
  }

  async saveCut(db: Executor, row: Insertable<SegmentCutsTable>): Promise<void> {
    const { segment_id: _id, created_at: _created, ...update } = row;
    await db
      .insertInto('segment_cuts')
      .values(row)
      .onConflict((oc) => oc.column('segment_id').doUpdateSet(update))
      .execute();
  }

  /** A deleted item's stored cuts, to remove. */
  async listStoredCuts(
    db: Executor,
    itemId: string,
  ): Promise<{ sha256: string; blobKey: string }[]> {
    const rows = await db
      .selectFrom('segment_cuts')
      .select(['sha256', 'blob_key'])
      .where('item_id', '=', itemId)
      .where('status', '=', 'ready')
      .execute();
    return rows.flatMap((r) =>
      r.sha256 && r.blob_key ? [{ sha256: r.sha256, blobKey: r.blob_key }] : [],
    );
  }

  async markCutsPurged(db: Executor, itemId: string, at: Date): Promise<void> {
    await db
      .updateTable('segment_cuts')
      .set({ status: 'purged', updated_at: at })
      .where('item_id', '=', itemId)
      .where('status', '=', 'ready')
      .execute();
  }

  /**
   * Whether a ready cut has these bytes, other than those of the given item or segment (two
   * orders with the same offsets share one blob).
   */
  async cutBlobInUse(
    db: Executor,
    sha256: string,
    except: { itemId: string } | { segmentId: string },
  ): Promise<boolean> {
    let q = db
      .selectFrom('segment_cuts')
      .select('segment_id')
      .where('sha256', '=', sha256)
      .where('status', '=', 'ready');
    q =
      'itemId' in except
        ? q.where('item_id', '<>', except.itemId)
        : q.where('segment_id', '<>', except.segmentId);
    return (await q.executeTakeFirst()) !== undefined;
  }
}
