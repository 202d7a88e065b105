import { sql, type Insertable, type Selectable } from 'kysely';
import type { BundlesTable, Executor } from '../db/database';
import type { AuditRow } from '../base/audit.repository';

export type BundleRow = Selectable<BundlesTable>;

/** The actions a bundle's audit excerpt keeps (see auditExcerpt). */
export const CUSTODY_ACTIONS = [
  'evidence.create',
  'evidence.duplicate',
  'evidence.link',
  'evidence.unlink',
  'evidence.verify',
  'evidence.delete',
  'evidence.expire',
  'evidence.purge',
  'evidence.reconcile',
  'media.derive',
  'integration.callback',
  'hold.place',
  'hold.release',
  'complaint.write',
  'bundle.create',
  'evidence.repair',
];

/** Thin data access for dispute bundles: one query per method. */
export class BundleRepository {
  async insert(db: Executor, row: Insertable<BundlesTable>): Promise<void> {
    await db.insertInto('bundles').values(row).execute();
  }

  async find(db: Executor, id: string): Promise<BundleRow | undefined> {
    return db.selectFrom('bundles').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** The complaint a bundle was made for (share links check that the bundle exists). */
  async complaintOf(db: Executor, id: string): Promise<{ complaint_id: string } | undefined> {
    return db.selectFrom('bundles').select('complaint_id').where('id', '=', id).executeTakeFirst();
  }

  /** A complaint's bundles, newest first. */
  async listForComplaint(db: Executor, complaintId: string, limit: number): Promise<BundleRow[]> {
    return db
      .selectFrom('bundles')
      .selectAll()
      .where('complaint_id', '=', complaintId)
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .limit(limit)
      .execute();
  }

  /** Whether any of these items was deleted since (a bundle made before still names them). */
  async deletedAmong(db: Executor, ids: string[]): Promise<{ id: string; deleted_at: Date }[]> {
    if (ids.length === 0) return [];
    const rows = await db
      .selectFrom('evidence_items')
      .select(['id', 'deleted_at'])
      .where('id', 'in', ids)
      .where('deleted_at', 'is not', null)
      .execute();
    return rows.map((r) => ({ id: r.id, deleted_at: new Date(r.deleted_at!) }));
  }

  /**
   * Custody events naming one of these items or the complaint, in (afterSeq, uptoSeq], in order:
   * what was done to the evidence (archived, linked, verified, held, derived, deleted, bundled),
   * never who looked at it. Reads, searches and share-link uses carry other people's addresses,
   * staff searches and other customers' numbers, and the bundle leaves the shop.
   */
  async auditExcerpt(
    db: Executor,
    itemIds: string[],
    complaintId: string,
    afterSeq: number,
    uptoSeq: number,
    limit: number,
  ): Promise<AuditRow[]> {
    return (
      db
        .selectFrom('audit_events')
        .selectAll()
        // Through the item index and the complaint index (a union of the two), not a scan.
        .where('seq', 'in', (eb) =>
          eb
            .selectFrom('audit_event_items')
            .select('seq')
            .where('item_id', '=', sql<string>`any(${sql.val(itemIds)}::text[])`)
            .where('seq', '>', afterSeq)
            .where('seq', '<=', uptoSeq)
            .union(
              eb
                .selectFrom('audit_events')
                .select('seq')
                .where('complaint_id', '=', complaintId)
                .where('seq', '>', afterSeq)
                .where('seq', '<=', uptoSeq),
            ),
        )
        .where((eb) =>
          eb.or([
            eb('item_ids', '&&', sql<string[]>`${sql.val(itemIds)}::text[]`),
            eb('complaint_id', '=', complaintId),
          ]),
        )
        .where('action', 'in', CUSTODY_ACTIONS)
        .where('seq', '>', afterSeq)
        .where('seq', '<=', uptoSeq)
        .orderBy('seq')
        .limit(limit)
        .execute()
    );
  }
}
