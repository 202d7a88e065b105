import {
  sql,
  type Expression,
  type ExpressionBuilder,
  type Insertable,
  type Selectable,
  type SqlBool,
} from 'kysely';
import {
  ReusableQuery,
  type Database,
  type EvidenceItemsTable,
  type Executor,
  type LinkType,
  type VerifyStatus,
} from '../db/database';

export type EvidenceRow = Selectable<EvidenceItemsTable> & {
  order_ids: string[];
  complaint_ids: string[];
};

export type PriorItem = Pick<
  EvidenceRow,
  'id' | 'deleted_at' | 'deletion_reason' | 'call_id' | 'source' | 'created_by_key_id'
>;

export interface SearchFilters {
  orderId?: string;
  complaintId?: string;
  kind?: EvidenceItemsTable['kind'];
  phoneE164?: string;
  stationId?: string;
  from?: Date;
  to?: Date;
}

export interface SearchCursor {
  capturedAt: Date;
  id: string;
}

const linkRefs = <A extends string>(type: LinkType, alias: A) =>
  sql<string[]>`coalesce((select array_agg(l.ref order by l.ref) from evidence_links l
    where l.item_id = i.id and l.link_type = ${type}), '{}')`.as(alias);

/** Items (as `i`) with the orders and complaints they are linked to. */
const withLinks = (db: Executor) =>
  db
    .selectFrom('evidence_items as i')
    .selectAll('i')
    .select([linkRefs('order', 'order_ids'), linkRefs('complaint', 'complaint_ids')]);

/** Most items one order answers with. */
export const LIST_BY_ORDER_LIMIT = 1000;

/** A segment as listByOrderQuery's json_agg gives it (numeric as a JSON number). */
export interface OrderSegmentJson {
  id: string;
  item_id: string;
  order_id: string;
  tracking_number: string | null;
  start_sec: number;
  end_sec: number;
}

type ItemsExpressions = ExpressionBuilder<Database & { i: EvidenceItemsTable }, 'i'>;

/**
 * Items from or to this number that pass `where`, the first `limit` in (captured_at, id) order
 * `dir`: the first of the calls from it and the first of the calls to it (but not from it, so
 * none twice), each an ordered scan of its number's (number, captured_at, id) index that stops
 * after `limit` rows. The caller orders and limits the union again: at most twice `limit` rows,
 * however many calls the number has (a shop's own line is on millions), where an OR of the two
 * numbers would collect and sort all of them.
 */
const byPhone = (
  db: Executor,
  e164: string,
  where: (eb: ItemsExpressions) => Expression<SqlBool>,
  dir: 'asc' | 'desc',
  limit: number,
) => {
  const side = (column: 'i.from_number_e164' | 'i.to_number_e164') =>
    db
      .selectFrom(
        db
          .selectFrom('evidence_items as i')
          .selectAll('i')
          .where(column, '=', e164)
          .$if(column === 'i.to_number_e164', (q) =>
            q.where((eb) =>
              eb.or([eb('i.from_number_e164', 'is', null), eb('i.from_number_e164', '<>', e164)]),
            ),
          )
          .where(where)
          .orderBy('i.captured_at', dir)
          .orderBy('i.id', dir)
          .limit(limit)
          .as('s'),
      )
      .selectAll('s');
  return side('i.from_number_e164').unionAll(side('i.to_number_e164'));
};

/** The rows of `items` (as `i`) with the orders and complaints they are linked to. */
const withLinksOf = (db: Executor, items: ReturnType<typeof byPhone>) =>
  db
    .selectFrom(items.as('i'))
    .selectAll('i')
    .select([linkRefs('order', 'order_ids'), linkRefs('complaint', 'complaint_ids')]);

/** Thin data access for evidence items and their links: one query per method. */
export class EvidenceRepository {
  private readonly byOrder = new ReusableQuery((db, orderId) =>
    this.listByOrderQuery(db, orderId, LIST_BY_ORDER_LIMIT),
  );

  /** An order's items with its segments of each (listByOrderQuery), up to 1000. */
  async listByOrder(db: Executor, orderId: string) {
    return this.byOrder.execute(db, orderId);
  }

  /** Inserts unless the bytes (or the call id) are already archived; returns the new id if inserted. */
  async insertItem(db: Executor, row: Insertable<EvidenceItemsTable>): Promise<string | undefined> {
    const inserted = await db
      .insertInto('evidence_items')
      .values(row)
      .onConflict((oc) => oc.doNothing())
      .returning('id')
      .executeTakeFirst();
    return inserted?.id;
  }

  /** Records the WORM protection read back from the store for an item's blob. */
  async setWorm(
    db: Executor,
    id: string,
    worm: Pick<Insertable<EvidenceItemsTable>, 'worm_status' | 'worm_mode' | 'worm_retain_until'>,
  ): Promise<void> {
    await db.updateTable('evidence_items').set(worm).where('id', '=', id).execute();
  }

  /** The item holding these bytes, with whether (and why) it was deleted. */
  async findBySha256(db: Executor, sha256: string): Promise<PriorItem | undefined> {
    return db
      .selectFrom('evidence_items')
      .select(['id', 'deleted_at', 'deletion_reason', 'call_id', 'source', 'created_by_key_id'])
      .where('sha256', '=', sha256)
      .executeTakeFirst();
  }

  /** The recording this key already archived for a call (call ids are unique per key and source). */
  async findByCall(
    db: Executor,
    keyId: string,
    source: string | null,
    callId: string,
  ): Promise<{ id: string; sha256: string } | undefined> {
    return db
      .selectFrom('evidence_items')
      .select(['id', 'sha256'])
      .where('created_by_key_id', '=', keyId)
      .where(sql<string>`coalesce(source, '')`, '=', source ?? '')
      .where('call_id', '=', callId)
      .executeTakeFirst();
  }

  async addLinks(
    db: Executor,
    itemId: string,
    links: { type: LinkType; ref: string }[],
    keyId: string,
  ): Promise<void> {
    if (links.length === 0) return;
    await db
      .insertInto('evidence_links')
      .values(
        links.map((l) => ({
          link_type: l.type,
          ref: l.ref,
          item_id: itemId,
          created_by_key_id: keyId,
        })),
      )
      .onConflict((oc) => oc.doNothing())
      .execute();
  }

  /** The links one key added to an item: all a duplicate receipt shows of them. */
  async linksAddedBy(
    db: Executor,
    itemId: string,
    keyId: string,
  ): Promise<{ type: LinkType; ref: string }[]> {
    return db
      .selectFrom('evidence_links')
      .select(['link_type as type', 'ref'])
      .where('item_id', '=', itemId)
      .where('created_by_key_id', '=', keyId)
      .execute();
  }

  async removeLink(db: Executor, itemId: string, type: LinkType, ref: string): Promise<boolean> {
    const res = await db
      .deleteFrom('evidence_links')
      .where('item_id', '=', itemId)
      .where('link_type', '=', type)
      .where('ref', '=', ref)
      .executeTakeFirst();
    return res.numDeletedRows > 0n;
  }

  /** Under an active legal hold on the item or on a complaint it belongs to (the SQL function). */
  async isHeld(db: Executor, itemId: string): Promise<boolean> {
    const { rows } = await sql<{
      held: boolean;
    }>`select evidence_is_held(${itemId}::uuid) as held`.execute(db);
    return rows[0]!.held;
  }

  async recordVerification(
    db: Executor,
    itemId: string,
    v: { at: Date; status: VerifyStatus; detail: unknown },
  ): Promise<void> {
    await db
      .updateTable('evidence_items')
      .set({ verified_at: v.at, verify_status: v.status, verify_detail: JSON.stringify(v.detail) })
      .where('id', '=', itemId)
      .execute();
  }

  /**
   * Marks the item's stored bytes damaged, unless a repair finished after the check that found
   * the damage began (that check read the bytes the repair replaced). True when marked.
   */
  async markDamaged(
    db: Executor,
    itemId: string,
    d: { at: Date; checkStartedAt: Date; detail: unknown },
  ): Promise<boolean> {
    const res = await db
      .updateTable('evidence_items')
      .set((eb) => ({
        damaged_at: eb.fn.coalesce('damaged_at', eb.val(d.at)),
        damage_detail: JSON.stringify(d.detail),
      }))
      .where('id', '=', itemId)
      .where('deleted_at', 'is', null)
      .where((eb) =>
        eb.or([eb('repaired_at', 'is', null), eb('repaired_at', '<', d.checkStartedAt)]),
      )
      .executeTakeFirst();
    return res.numUpdatedRows > 0n;
  }

  /** Clears the damage mark once the bytes hash right again; true when there was one to clear. */
  async clearDamaged(db: Executor, itemId: string, at: Date): Promise<boolean> {
    const res = await db
      .updateTable('evidence_items')
      .set({ damaged_at: null, damage_detail: null, repaired_at: at })
      .where('id', '=', itemId)
      .where('damaged_at', 'is not', null)
      .executeTakeFirst();
    return res.numUpdatedRows > 0n;
  }

  /** The live item holding these bytes if they are marked damaged: an upload of them repairs it. */
  async findDamagedBySha256(
    db: Executor,
    sha256: string,
  ): Promise<{ id: string; damaged_at: Date; damage_detail: unknown } | undefined> {
    const row = await db
      .selectFrom('evidence_items')
      .select(['id', 'damaged_at', 'damage_detail'])
      .where('sha256', '=', sha256)
      .where('deleted_at', 'is', null)
      .where('damaged_at', 'is not', null)
      .executeTakeFirst();
    return row && { ...row, damaged_at: new Date(row.damaged_at!) };
  }

  /**
   * Claims the repair of an item for this transaction, without waiting: false while another
   * repair of it is in progress (anywhere in the cluster). Released when the transaction ends.
   */
  async tryClaimRepair(db: Executor, itemId: string): Promise<boolean> {
    const { rows } = await sql<{ ok: boolean }>`
      select pg_try_advisory_xact_lock(${repairLockKey(itemId)}::bigint) as ok`.execute(db);
    return rows[0]?.ok === true;
  }

  /** Locks the item's row (for a repair) and returns its damage mark, if it has one. */
  async lockDamage(
    db: Executor,
    itemId: string,
  ): Promise<{ damagedAt: Date; detail: unknown } | undefined> {
    const row = await db
      .selectFrom('evidence_items')
      .select(['damaged_at', 'damage_detail'])
      .where('id', '=', itemId)
      .forUpdate()
      .executeTakeFirst();
    return row?.damaged_at
      ? { damagedAt: new Date(row.damaged_at), detail: row.damage_detail }
      : undefined;
  }

  /** Those of these items whose stored bytes are marked damaged. */
  async damagedAmong(db: Executor, ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await db
      .selectFrom('evidence_items')
      .select('id')
      .where('id', 'in', ids)
      .where('damaged_at', 'is not', null)
      .execute();
    return rows.map((r) => r.id);
  }

  async addReceipt(db: Executor, keyId: string, itemId: string): Promise<void> {
    await db
      .insertInto('evidence_receipts')
      .values({ api_key_id: keyId, item_id: itemId })
      .onConflict((oc) => oc.doNothing())
      .execute();
  }

  async hasReceipt(db: Executor, keyId: string, itemId: string): Promise<boolean> {
    const row = await db
      .selectFrom('evidence_receipts')
      .select('item_id')
      .where('api_key_id', '=', keyId)
      .where('item_id', '=', itemId)
      .executeTakeFirst();
    return row !== undefined;
  }

  async findById(db: Executor, id: string): Promise<EvidenceRow | undefined> {
    return withLinks(db).where('i.id', '=', id).executeTakeFirst();
  }

  /** Items linked to one order or complaint, oldest capture first: a scan of the link key. */
  async listByLink(
    db: Executor,
    type: LinkType,
    ref: string,
    limit: number,
  ): Promise<EvidenceRow[]> {
    return this.listByLinkQuery(db, type, ref, limit).execute();
  }

  /** The query behind listByLink, exposed so the benchmark runs exactly the same SQL. */
  listByLinkQuery(db: Executor, type: LinkType, ref: string, limit: number) {
    return db
      .selectFrom('evidence_links as k')
      .innerJoin('evidence_items as i', 'i.id', 'k.item_id')
      .selectAll('i')
      .select([linkRefs('order', 'order_ids'), linkRefs('complaint', 'complaint_ids')])
      .where('k.link_type', '=', type)
      .where('k.ref', '=', ref)
      .orderBy('i.captured_at')
      .orderBy('i.id')
      .limit(limit);
  }

  /**
   * Items linked to one order with that order's segments of each (a long recording answers an
   * order with its part of it), in one statement: the hot path of support's lookups pays one
   * round trip, not two. Exposed as a query so the benchmark's baseline runs exactly this SQL.
   */
  listByOrderQuery(db: Executor, orderId: string, limit: number) {
    return this.listByLinkQuery(db, 'order', orderId, limit).select(
      sql<OrderSegmentJson[]>`coalesce((select json_agg(json_build_object('id', s.id,
        'item_id', s.item_id, 'order_id', s.order_id, 'tracking_number', s.tracking_number,
        'start_sec', s.start_sec, 'end_sec', s.end_sec) order by s.start_sec)
        from segments s where s.order_id = k.ref and s.item_id = i.id), '[]')`.as('order_segments'),
    );
  }

  /** Items linked to any of these orders or complaints, oldest capture first. */
  async listByLinks(
    db: Executor,
    type: LinkType,
    refs: string[],
    limit: number,
  ): Promise<EvidenceRow[]> {
    if (refs.length === 0) return [];
    return withLinks(db)
      .where(({ exists, selectFrom }) =>
        exists(
          selectFrom('evidence_links as k')
            .select('k.item_id')
            .whereRef('k.item_id', '=', 'i.id')
            .where('k.link_type', '=', type)
            .where('k.ref', 'in', refs),
        ),
      )
      .orderBy('i.captured_at')
      .orderBy('i.id')
      .limit(limit)
      .execute();
  }

  async findByIds(db: Executor, ids: string[]): Promise<EvidenceRow[]> {
    if (ids.length === 0) return [];
    return withLinks(db)
      .where('i.id', 'in', ids)
      .orderBy('i.captured_at')
      .orderBy('i.id')
      .execute();
  }

  /** Items whose own tracking number is one of these. */
  async listByTrackingNumbers(db: Executor, numbers: string[], limit: number) {
    if (numbers.length === 0) return [];
    return withLinks(db)
      .where('i.tracking_number', 'in', numbers)
      .orderBy('i.captured_at')
      .limit(limit)
      .execute();
  }

  /** Call recordings from or to this E.164 number captured within [from, to]. */
  async listCallsWithNumber(
    db: Executor,
    e164: string,
    from: Date,
    to: Date,
    limit: number,
  ): Promise<EvidenceRow[]> {
    return withLinksOf(
      db,
      byPhone(
        db,
        e164,
        (eb) =>
          eb.and([
            eb('i.kind', '=', 'call_recording'),
            eb('i.captured_at', '>=', from),
            eb('i.captured_at', '<=', to),
          ]),
        'asc',
        limit,
      ),
    )
      .orderBy('i.captured_at')
      .orderBy('i.id')
      .limit(limit)
      .execute();
  }

  /** Newest capture first, keyset-paginated on (captured_at, id). */
  async search(
    db: Executor,
    f: SearchFilters,
    after: SearchCursor | undefined,
    limit: number,
  ): Promise<EvidenceRow[]> {
    const filters = (eb: ItemsExpressions) => {
      const all: Expression<SqlBool>[] = [];
      for (const [type, ref] of [
        ['order', f.orderId],
        ['complaint', f.complaintId],
      ] as const) {
        if (ref === undefined) continue;
        all.push(
          eb.exists(
            eb
              .selectFrom('evidence_links as k')
              .select('k.item_id')
              .whereRef('k.item_id', '=', 'i.id')
              .where('k.link_type', '=', type)
              .where('k.ref', '=', ref),
          ),
        );
      }
      if (f.kind) all.push(eb('i.kind', '=', f.kind));
      if (f.stationId) all.push(eb('i.station_id', '=', f.stationId));
      if (f.from) all.push(eb('i.captured_at', '>=', f.from));
      if (f.to) all.push(eb('i.captured_at', '<', f.to));
      if (after) {
        all.push(
          eb(eb.refTuple('i.captured_at', 'i.id'), '<', eb.tuple(after.capturedAt, after.id)),
        );
      }
      return eb.and(all);
    };
    const q = f.phoneE164
      ? withLinksOf(db, byPhone(db, f.phoneE164, filters, 'desc', limit))
      : withLinks(db).where(filters);
    return q.orderBy('i.captured_at', 'desc').orderBy('i.id', 'desc').limit(limit).execute();
  }

  /** Which of these refs any item is linked to as `type` (each once). */
  async linkedRefs(db: Executor, type: LinkType, refs: string[]): Promise<{ ref: string }[]> {
    return db
      .selectFrom('evidence_links')
      .select('ref')
      .distinct()
      .where('link_type', '=', type)
      .where('ref', 'in', refs)
      .execute();
  }
}

/** The advisory lock key of an item's repair (a repair in progress holds it). */
export function repairLockKey(itemId: string): string {
  return BigInt.asIntN(64, BigInt(`0x${itemId.replace(/-/g, '').slice(0, 16)}`)).toString();
}
