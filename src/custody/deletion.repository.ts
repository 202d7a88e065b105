import { sql } from 'kysely';
import type { EvidenceKind, Executor } from '../db/database';

export interface DeletableRow {
  id: string;
  kind: EvidenceKind;
  sha256: string;
  size_bytes: number;
  blob_key: string;
  received_at: Date;
  deleted_at: Date | null;
}

export interface ExpiryCutoffs {
  /** Items of a kind received before its cutoff expire; null keeps that kind forever. */
  byKind: Record<EvidenceKind, Date | null>;
  /** Evidence of a complaint closed after this instant is still kept. */
  closedAfter: Date;
}

const DELETABLE = [
  'id',
  'kind',
  'sha256',
  'size_bytes',
  'blob_key',
  'received_at',
  'deleted_at',
] as const;

/**
 * Data access for tombstoning and purging evidence. Every selection row-locks what it returns, so
 * two instances (or an admin and the retention job) never work on the same item at once.
 */
export class DeletionRepository {
  /** Locks one item for deletion; throws PostgreSQL's lock_not_available if someone else has it. */
  async lockItem(db: Executor, id: string): Promise<DeletableRow | undefined> {
    return db
      .selectFrom('evidence_items')
      .select(DELETABLE)
      .where('id', '=', id)
      .forUpdate()
      .noWait()
      .executeTakeFirst();
  }

  /**
   * Expired items, oldest first, locked, skipping those another instance holds: past their kind's
   * retention, not linked to an open (or recently closed, or unknown) complaint directly or
   * through its orders, and not under legal hold.
   */
  async lockExpired(db: Executor, c: ExpiryCutoffs, limit: number): Promise<DeletableRow[]> {
    const { rows } = await sql<DeletableRow>`
      select i.id, i.kind, i.sha256, i.size_bytes, i.blob_key, i.received_at, i.deleted_at
      from evidence_items i
      where i.deleted_at is null
        and i.received_at < case i.kind
          when 'packing_video' then ${c.byKind.packing_video}::timestamptz
          when 'call_recording' then ${c.byKind.call_recording}::timestamptz
          when 'photo' then ${c.byKind.photo}::timestamptz end
        and not exists (
          select 1 from evidence_links l left join complaints c on c.id = l.ref
          where l.item_id = i.id and l.link_type = 'complaint'
            and (c.id is null or c.status = 'open' or c.closed_at > ${c.closedAfter}))
        and not exists (
          select 1 from evidence_links l join complaints c on c.order_ids @> array[l.ref]
          where l.item_id = i.id and l.link_type = 'order'
            and (c.status = 'open' or c.closed_at > ${c.closedAfter}))
        and not evidence_is_held(i.id)
      order by i.received_at, i.id
      limit ${limit}
      for update of i skip locked`.execute(db);
    return rows.map((r) => ({ ...r, size_bytes: Number(r.size_bytes) }));
  }

  async tombstone(
    db: Executor,
    id: string,
    t: { at: Date; reason: string; by: string },
  ): Promise<void> {
    await db
      .updateTable('evidence_items')
      .set({ deleted_at: t.at, deletion_reason: t.reason, deleted_by: t.by })
      .where('id', '=', id)
      .where('deleted_at', 'is', null)
      .execute();
  }

  /** Tombstones whose bytes are still stored, after a keyset position, locked, skipping busy ones. */
  async lockUnpurged(
    db: Executor,
    f: { after?: { deletedAt: Date; id: string }; ids?: string[] },
    limit: number,
  ): Promise<(DeletableRow & { deleted_at: Date })[]> {
    let q = db
      .selectFrom('evidence_items')
      .select(DELETABLE)
      .where('deleted_at', 'is not', null)
      .where('blob_purged_at', 'is', null);
    const { after, ids } = f;
    if (ids) q = q.where('id', 'in', ids);
    if (after) {
      q = q.where((eb) =>
        eb(eb.refTuple('deleted_at', 'id'), '>', eb.tuple(after.deletedAt, after.id)),
      );
    }
    const rows = await q
      .orderBy('deleted_at')
      .orderBy('id')
      .limit(limit)
      .forUpdate()
      .skipLocked()
      .execute();
    return rows as (DeletableRow & { deleted_at: Date })[];
  }

  async markPurged(db: Executor, id: string, at: Date): Promise<void> {
    await db
      .updateTable('evidence_items')
      .set({ blob_purged_at: at })
      .where('id', '=', id)
      .execute();
  }
}
