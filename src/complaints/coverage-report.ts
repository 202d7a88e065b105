import { sql } from 'kysely';
import type { AuditLog, RequestActor } from '../custody/audit.service';
import type { Db } from '../db/database';
import { AppError } from '../errors';
import type { CoverageQuery, CoverageReport } from '../contract/complaints.contract';

export type { CoverageReport };

/** Findings per section at most; a report that says it was cut off (`truncated`). */
const SECTION_LIMIT = 10_000;
const DAY_MS = 86_400_000;

const iso = (d: Date | string) => new Date(d).toISOString();

/**
 * Where the archive would fail a dispute: complaints opened in [from, to) that lack the evidence
 * they need, and orders whose clip no longer matches its hash.
 */
export class CoverageReportService {
  constructor(
    private readonly db: Db,
    private readonly audit: AuditLog,
    private readonly opts: { suggestionWindowDays: number; now?: () => Date },
  ) {}

  /** The range and format of a query `coverageQuery` parsed. */
  parse(q: CoverageQuery): { from: Date; to: Date; format?: 'json' | 'csv' } {
    const to = q.to ? new Date(q.to) : (this.opts.now?.() ?? new Date());
    const from = q.from ? new Date(q.from) : new Date(to.getTime() - 30 * DAY_MS);
    if (from >= to) {
      throw new AppError('validation_failed', '"from" must be before "to".', { field: 'from' });
    }
    if (to.getTime() - from.getTime() > 3660 * DAY_MS) {
      throw new AppError('validation_failed', 'The range may span at most ten years.', {
        field: 'from',
      });
    }
    return { from, to, format: q.format };
  }

  async report(actor: RequestActor, from: Date, to: Date): Promise<CoverageReport> {
    const windowDays = this.opts.suggestionWindowDays;
    const noVideo = await sql<{
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
      limit ${SECTION_LIMIT + 1}`.execute(this.db);

    const noCall = await sql<{
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
      limit ${SECTION_LIMIT + 1}`.execute(this.db);

    const failed = await sql<{
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
      limit ${SECTION_LIMIT + 1}`.execute(this.db);

    const truncated = [noVideo, noCall, failed].some((r) => r.rows.length > SECTION_LIMIT);
    const report: CoverageReport = {
      from: from.toISOString(),
      to: to.toISOString(),
      generatedAt: (this.opts.now?.() ?? new Date()).toISOString(),
      complaintsWithoutPackingVideo: noVideo.rows.slice(0, SECTION_LIMIT).map((r) => ({
        complaintId: r.id,
        openedAt: iso(r.opened_at),
        status: r.status,
        ordersWithoutVideo: r.orders,
      })),
      callComplaintsWithoutRecording: noCall.rows.slice(0, SECTION_LIMIT).map((r) => ({
        complaintId: r.id,
        openedAt: iso(r.opened_at),
        status: r.status,
        customerPhone: r.customer_phone,
      })),
      ordersWithFailedVerification: failed.rows.slice(0, SECTION_LIMIT).map((r) => ({
        orderId: r.order_id,
        itemId: r.item_id,
        verifyStatus: r.verify_status,
        verifiedAt: iso(r.verified_at),
        complaintIds: r.complaint_ids,
      })),
      truncated,
    };
    await this.audit.recordRead({
      action: 'report.view',
      actor,
      details: {
        report: 'coverage',
        from: report.from,
        to: report.to,
        findings:
          report.complaintsWithoutPackingVideo.length +
          report.callComplaintsWithoutRecording.length +
          report.ordersWithFailedVerification.length,
      },
    });
    return report;
  }
}

/** One row per finding, the same columns for every section (RFC 4180). */
export function coverageCsv(r: CoverageReport): string {
  const rows: string[][] = [
    ['finding', 'complaint_id', 'order_id', 'item_id', 'opened_at', 'status', 'detail'],
  ];
  for (const c of r.complaintsWithoutPackingVideo) {
    for (const order of c.ordersWithoutVideo) {
      rows.push([
        'no_packing_video',
        c.complaintId,
        order,
        '',
        c.openedAt,
        c.status,
        'no packing video for this order',
      ]);
    }
  }
  for (const c of r.callComplaintsWithoutRecording) {
    rows.push([
      'no_call_recording',
      c.complaintId,
      '',
      '',
      c.openedAt,
      c.status,
      c.customerPhone ? `no call recording with ${c.customerPhone}` : 'no call recording',
    ]);
  }
  for (const o of r.ordersWithFailedVerification) {
    rows.push([
      'failed_verification',
      o.complaintIds.join(' '),
      o.orderId,
      o.itemId,
      '',
      o.verifyStatus,
      `verification ${o.verifyStatus} at ${o.verifiedAt}`,
    ]);
  }
  return rows.map((row) => row.map(csvField).join(',')).join('\r\n') + '\r\n';
}

function csvField(v: string): string {
  // A leading =, +, - or @ would be a formula to a spreadsheet: quoted with a ' in front.
  const safe = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return /[",\r\n']/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}
