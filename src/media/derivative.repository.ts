import { sql, type Insertable, type Selectable } from 'kysely';
import type {
  DerivativeKind,
  DerivativesTable,
  EvidenceItemsTable,
  Executor,
  ItemMediaTable,
  MediaStatus,
} from '../db/database';

export type ItemMediaRow = Selectable<ItemMediaTable>;
export type DerivativeRow = Selectable<DerivativesTable>;

/** An item the media job works on: what it needs of the evidence row. */
export type MediaSource = Pick<
  Selectable<EvidenceItemsTable>,
  'id' | 'kind' | 'sha256' | 'size_bytes' | 'content_type' | 'blob_key' | 'deleted_at'
>;

/** Thin data access for item_media and derivatives: one query per method. */
export class DerivativeRepository {
  /** Written with the item at ingest, so the pipeline finds it even if the job is never sent. */
  async insertPending(db: Executor, itemId: string, sha256: string): Promise<void> {
    await db
      .insertInto('item_media')
      .values({ item_id: itemId, source_sha256: sha256, status: 'pending' })
      .onConflict((oc) => oc.doNothing())
      .execute();
  }

  /** An item given new work (segments to cut) goes back to pending, so the sweep finds it. */
  async reopen(db: Executor, itemId: string, at: Date): Promise<void> {
    await db
      .updateTable('item_media')
      .set({ status: 'pending', updated_at: at })
      .where('item_id', '=', itemId)
      .where('status', 'in', ['done', 'partial'])
      .execute();
  }

  /** An admin asked for a rebuild: whatever the outcome so far, the item is processed again. */
  async reopenAll(db: Executor, itemId: string, at: Date): Promise<void> {
    await db
      .updateTable('item_media')
      .set({ status: 'pending', detail: 'rebuild requested', updated_at: at })
      .where('item_id', '=', itemId)
      .execute();
  }

  /** A ready derivative whose stored bytes are gone or damaged: made again by the next job. */
  async markBroken(
    db: Executor,
    itemId: string,
    kind: DerivativeKind,
    detail: string,
    at: Date,
  ): Promise<void> {
    await db
      .updateTable('derivatives')
      .set({ status: 'failed', detail, updated_at: at })
      .where('item_id', '=', itemId)
      .where('kind', '=', kind)
      .execute();
  }

  async findMedia(db: Executor, itemId: string): Promise<ItemMediaRow | undefined> {
    return db.selectFrom('item_media').selectAll().where('item_id', '=', itemId).executeTakeFirst();
  }

  async findSource(db: Executor, itemId: string): Promise<MediaSource | undefined> {
    return db
      .selectFrom('evidence_items')
      .select(['id', 'kind', 'sha256', 'size_bytes', 'content_type', 'blob_key', 'deleted_at'])
      .where('id', '=', itemId)
      .executeTakeFirst();
  }

  /** Marks the item in progress (creating its row for items archived before the pipeline). */
  async start(db: Executor, itemId: string, sha256: string, at: Date): Promise<ItemMediaRow> {
    return db
      .insertInto('item_media')
      .values({
        item_id: itemId,
        source_sha256: sha256,
        status: 'processing',
        attempts: 1,
        updated_at: at,
      })
      .onConflict((oc) =>
        oc.column('item_id').doUpdateSet({
          status: 'processing',
          attempts: sql`item_media.attempts + 1`,
          updated_at: at,
        }),
      )
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  async setProbe(db: Executor, itemId: string, probe: unknown, at: Date): Promise<void> {
    await db
      .updateTable('item_media')
      .set({ probe: JSON.stringify(probe), updated_at: at })
      .where('item_id', '=', itemId)
      .execute();
  }

  async finish(
    db: Executor,
    itemId: string,
    v: { status: MediaStatus; detail: string | null; at: Date },
  ): Promise<void> {
    await db
      .updateTable('item_media')
      .set({ status: v.status, detail: v.detail, updated_at: v.at })
      .where('item_id', '=', itemId)
      .execute();
  }

  async listDerivatives(db: Executor, itemId: string): Promise<DerivativeRow[]> {
    return db
      .selectFrom('derivatives')
      .selectAll()
      .where('item_id', '=', itemId)
      .orderBy('kind')
      .execute();
  }

  async findDerivative(
    db: Executor,
    itemId: string,
    kind: DerivativeKind,
  ): Promise<DerivativeRow | undefined> {
    return db
      .selectFrom('derivatives')
      .selectAll()
      .where('item_id', '=', itemId)
      .where('kind', '=', kind)
      .executeTakeFirst();
  }

  /** Records one derivative's outcome; a retry replaces the outcome of the attempt before. */
  async saveDerivative(db: Executor, row: Insertable<DerivativesTable>): Promise<void> {
    const { item_id: _id, kind: _kind, created_at: _created, ...update } = row;
    await db
      .insertInto('derivatives')
      .values(row)
      .onConflict((oc) => oc.columns(['item_id', 'kind']).doUpdateSet(update))
      .execute();
  }

  /**
   * Items whose media work is not finished: never processed, abandoned mid-way by a crash (not
   * touched since `staleBefore`), or waiting for tools that were missing. Oldest first.
   */
  async listUnfinished(
    db: Executor,
    o: { touchedBefore: Date; staleBefore: Date; includeUnavailable: boolean; limit: number },
  ): Promise<string[]> {
    const statuses: MediaStatus[] = o.includeUnavailable ? ['pending', 'unavailable'] : ['pending'];
    const rows = await db
      .selectFrom('item_media as m')
      .innerJoin('evidence_items as i', 'i.id', 'm.item_id')
      .select('m.item_id')
      .where('i.deleted_at', 'is', null)
      .where((eb) =>
        eb.or([
          eb.and([eb('m.status', 'in', statuses), eb('m.updated_at', '<', o.touchedBefore)]),
          eb.and([eb('m.status', '=', 'processing'), eb('m.updated_at', '<', o.staleBefore)]),
        ]),
      )
      .orderBy('m.updated_at')
      .limit(o.limit)
      .execute();
    return rows.map((r) => r.item_id);
  }

  /** A deleted item's stored derivatives, to remove. */
  async listStored(db: Executor, itemId: string): Promise<{ sha256: string; blobKey: string }[]> {
    const rows = await db
      .selectFrom('derivatives')
      .select(['sha256', 'blob_key'])
      .where('item_id', '=', itemId)
      .where('status', '=', 'ready')
      .execute();
    return rows.flatMap((r) =>
      r.sha256 && r.blob_key ? [{ sha256: r.sha256, blobKey: r.blob_key }] : [],
    );
  }

  /** Marks a deleted item's derivatives purged. */
  async markPurged(db: Executor, itemId: string, at: Date): Promise<void> {
    await db
      .updateTable('derivatives')
      .set({ status: 'purged', updated_at: at })
      .where('item_id', '=', itemId)
      .where('status', '=', 'ready')
      .execute();
  }

  /** Forgets what a deleted item's probe said (device, tags, times): it went with the bytes. */
  async clearProbe(db: Executor, itemId: string, at: Date): Promise<void> {
    await db
      .updateTable('item_media')
      .set({ probe: null, detail: 'removed with the item', updated_at: at })
      .where('item_id', '=', itemId)
      .execute();
  }

  /** Whether a ready derivative of another item has these bytes (content addressing shares blobs). */
  async blobInUse(db: Executor, sha256: string, exceptItemId: string): Promise<boolean> {
    const row = await db
      .selectFrom('derivatives')
      .select('item_id')
      .where('sha256', '=', sha256)
      .where('status', '=', 'ready')
      .where('item_id', '<>', exceptItemId)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Live items by where their media processing stands (for /metrics). */
  async countByStatus(db: Executor): Promise<{ status: MediaStatus; n: number }[]> {
    const rows = await db
      .selectFrom('item_media as m')
      .innerJoin('evidence_items as i', 'i.id', 'm.item_id')
      .select(['m.status', (eb) => eb.fn.countAll<string>().as('n')])
      .where('i.deleted_at', 'is', null)
      .groupBy('m.status')
      .execute();
    return rows.map((r) => ({ status: r.status, n: Number(r.n) }));
  }
}
