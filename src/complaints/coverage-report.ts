import type { AuditLog } from '../base/audit.service';
import type { Db } from '../db/database';
import { AppError } from '../base/errors';
import type { CoverageRepository } from './coverage.repository';
import type { RequestActor } from '../base/actor';
import type { CoverageQuery, CoverageReport } from '../contract/complaints.contract';

export type { CoverageReport };

/** Findings per section at most; a report that says it was cut off (`truncated`). */
const SECTION_LIMIT = 10_000;
const DAY_MS = 86_400_000;

const iso = (d: Date | string) => new Date(d).toISOString();

export interface CoverageReportServiceDeps {
  db: Db;
  repo: CoverageRepository;
  audit: AuditLog;
  opts: { suggestionWindowDays: number; now?: () => Date };
}

/**
 * Where the archive would fail a dispute: complaints opened in [from, to) that lack the evidence
 * they need, and orders whose clip no longer matches its hash.
 */
export class CoverageReportService {
  private readonly db: Db;
  private readonly repo: CoverageRepository;
  private readonly audit: AuditLog;
  private readonly opts: CoverageReportServiceDeps['opts'];

  constructor(deps: CoverageReportServiceDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.audit = deps.audit;
    this.opts = deps.opts;
  }

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
    const noVideo = await this.repo.complaintsWithoutPackingVideo(
      this.db,
      from,
      to,
      SECTION_LIMIT + 1,
    );

    const noCall = await this.repo.callComplaintsWithoutRecording(
      this.db,
      from,
      to,
      windowDays,
      SECTION_LIMIT + 1,
    );

    const failed = await this.repo.ordersWithFailedVerification(
      this.db,
      from,
      to,
      SECTION_LIMIT + 1,
    );

    const truncated = [noVideo, noCall, failed].some((r) => r.length > SECTION_LIMIT);
    const report: CoverageReport = {
      from: from.toISOString(),
      to: to.toISOString(),
      generatedAt: (this.opts.now?.() ?? new Date()).toISOString(),
      complaintsWithoutPackingVideo: noVideo.slice(0, SECTION_LIMIT).map((r) => ({
        complaintId: r.id,
        openedAt: iso(r.opened_at),
        status: r.status,
        ordersWithoutVideo: r.orders,
      })),
      callComplaintsWithoutRecording: noCall.slice(0, SECTION_LIMIT).map((r) => ({
        complaintId: r.id,
        openedAt: iso(r.opened_at),
        status: r.status,
        customerPhone: r.customer_phone,
      })),
      ordersWithFailedVerification: failed.slice(0, SECTION_LIMIT).map((r) => ({
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
