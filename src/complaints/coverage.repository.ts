import { sql } from 'kysely';
import type { Executor } from '../db/database';

/** The coverage report's queries: complaints opened in [from, to) and what evidence they lack. */
export class CoverageRepository {
  /** Complaints whose orders have no packing video (no clip linked to the order, no segment of it). */
  async complaintsWithoutPackingVideo(db: Executor, from: Date, to: Date, limit: number) {
    const { rows } = await sql<{
      id: string;
      opened_at: Date;
      status: string;
      orders: string[];
    }>`
      select c.id, c.opened_at, c.status, array_agg(o.order_id order by o.order_id) as orders
      from complaints c
      cross join lateral unnest(c.order_ids) as o(order_id)
      where c.opened_at >= ${from} and c.opened_at < ${to}
        and not exists (
          select 1 from evidence_links k join evidence_items i on i.id = k.item_id
          where k.link_type = 'order' and k.ref = o.order_id
            and i.kind = 'packing_video' and i.deleted_at is null)
        and not exists (
          select 1 from segments s join evidence_items i on i.id = s.item_id
          where s.order_id = o.order_id and i.kind = 'packing_video' and i.deleted_at is null)
      group by c.id, c.opened_at, c.status
      order by c.opened_at, c.id
      limit ${limit}`.execute(db);
    return rows;
  }

  /** Call complaints with no recording linked, and none from or to the customer within the window. */
  async callComplaintsWithoutRecording(
    db: Executor,
    from: Date,
    to: Date,
    windowDays: number,
    limit: number,
  ) {
    const { rows } = await sql<{
      id: string;
      opened_at: Date;
      status: string;
      customer_phone: string | null;
    }>`
      select c.id, c.opened_at, c.status, c.customer_phone
      from complaints c
      where c.opened_at >= ${from} and c.opened_at < ${to} and c.topic = 'call'
        and not exists (
          select 1 from evidence_links k join evidence_items i on i.id = k.item_id
          where i.kind = 'call_recording' and i.deleted_at is null
            and ((k.link_type = 'complaint' and k.ref = c.id)
              or (k.link_type = 'order' and k.ref = any(c.order_ids))))
        and (c.customer_phone_e164 is null or not exists (
          select 1 from evidence_items i
          where i.kind = 'call_recording' and i.deleted_at is null
            and (i.from_number_e164 = c.customer_phone_e164 or i.to_number_e164 = c.customer_phone_e164)
            and i.captured_at between c.opened_at - make_interval(days => ${windowDays})
                                  and c.opened_at + make_interval(days => ${windowDays})))
      order by c.opened_at, c.id
      limit ${limit}`.execute(db);
    return rows;
  }

  /** Orders whose packing clip, captured in [from, to), failed its last integrity check. */
  async ordersWithFailedVerification(db: Executor, from: Date, to: Date, limit: number) {
    const { rows } = await sql<{
      order_id: string;
      item_id: string;
      verify_status: string;
      verified_at: Date;
      complaint_ids: string[];
    }>`
      select k.ref as order_id, i.id as item_id, i.verify_status, i.verified_at,
        coalesce((select array_agg(c.id order by c.id) from complaints c
                  where k.ref = any(c.order_ids)), '{}') as complaint_ids
      from evidence_items i
      join evidence_links k on k.item_id = i.id and k.link_type = 'order'
      where i.kind = 'packing_video' and i.verify_status <> 'ok' and i.deleted_at is null
        and i.captured_at >= ${from} and i.captured_at < ${to}
      order by k.ref, i.id
      limit ${limit}`.execute(db);
    return rows;
  }
}
