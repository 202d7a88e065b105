import type { RequestActor } from '../base/actor';
import type { AuditLog } from '../base/audit.service';
import type { Db } from '../db/database';
import { AppError } from '../base/errors';
import type { EvidenceRepository, EvidenceRow } from '../evidence/evidence.repository';
import { toEvidenceView } from '../evidence/evidence.view';
import { isItemId, noSuchItem } from '../base/item-id';
import type { SegmentRepository, SegmentRow } from '../evidence/segment.repository';
import { toSegmentView } from '../evidence/segments';
import { parseWith } from '../base/fields';
import {
  linkBody,
  type ComplaintWorkspace,
  type Suggestion,
  type SuggestionReason,
  type TimelineEntry,
} from '../contract/complaints.contract';
import type { ComplaintRepository, ComplaintRow } from './complaint.repository';
import { toComplaintView } from './complaint.service';

/** At most this many items are gathered per source (links, orders, tracking numbers, calls). */
const ITEM_LIMIT = 1000;
const DAY_MS = 86_400_000;

export interface ComplaintWorkspaceServiceDeps {
  db: Db;
  complaints: ComplaintRepository;
  evidence: EvidenceRepository;
  segments: SegmentRepository;
  audit: AuditLog;
  opts: { suggestionWindowDays: number };
}

/**
 * The complaint as support works it: its evidence and timeline, the evidence it probably needs
 * (suggestions, each with its reasons), and linking what support accepts.
 */
export class ComplaintWorkspaceService {
  private readonly db: Db;
  private readonly complaints: ComplaintRepository;
  private readonly evidence: EvidenceRepository;
  private readonly segments: SegmentRepository;
  private readonly audit: AuditLog;
  private readonly opts: ComplaintWorkspaceServiceDeps['opts'];

  constructor(deps: ComplaintWorkspaceServiceDeps) {
    this.db = deps.db;
    this.complaints = deps.complaints;
    this.evidence = deps.evidence;
    this.segments = deps.segments;
    this.audit = deps.audit;
    this.opts = deps.opts;
  }

  async workspace(actor: RequestActor, rawId: string): Promise<ComplaintWorkspace> {
    const complaint = await this.complaint(rawId);
    const orders = complaint.order_ids;
    const [linked, viaOrders, orderSegments] = await Promise.all([
      this.evidence.listByLink(this.db, 'complaint', complaint.id, ITEM_LIMIT),
      this.evidence.listByLinks(this.db, 'order', orders, ITEM_LIMIT),
      this.segments.listForOrdersOrTracking(this.db, orders, [], ITEM_LIMIT),
    ]);
    const items = new Map<string, EvidenceRow>();
    for (const row of [...linked, ...viaOrders]) items.set(row.id, row);
    await this.addMissing(items, orderSegments);
    const linkedIds = new Set(linked.map((r) => r.id));
    const segmentsByItem = groupBy(orderSegments, (s) => s.item_id);
    // Calls with the customer, linked or not: the conversation is part of the story.
    const { calls } = await this.customerCalls(complaint, [...items.values()]);
    const phoneIds = new Set(calls.map((r) => r.id));
    for (const row of calls) if (!items.has(row.id)) items.set(row.id, row);

    const timeline: TimelineEntry[] = [];
    for (const row of items.values()) {
      const item = toEvidenceView(row);
      const linkedToComplaint = linkedIds.has(row.id);
      const segs = segmentsByItem.get(row.id) ?? [];
      const ordersOf = row.order_ids.filter((o) => orders.includes(o));
      const via = [
        ...(linkedToComplaint ? (['complaint'] as const) : []),
        ...(ordersOf.length > 0 || segs.length > 0 ? (['order'] as const) : []),
        ...(phoneIds.has(row.id) ? (['customer_phone'] as const) : []),
      ];
      for (const s of segs) {
        timeline.push({
          at: new Date(
            new Date(row.captured_at).getTime() + Number(s.start_sec) * 1000,
          ).toISOString(),
          type: 'segment',
          item,
          segment: toSegmentView(s),
          linkedToComplaint,
          orderIds: [s.order_id],
          via,
        });
      }
      // A long clip is shown by its parts for these orders; the whole clip too when it is linked.
      if (segs.length === 0 || linkedToComplaint) {
        timeline.push({
          at: item.capturedAt,
          type: row.kind,
          item,
          linkedToComplaint,
          orderIds: ordersOf,
          via,
        });
      }
    }
    timeline.sort((a, b) => a.at.localeCompare(b.at) || a.item.id.localeCompare(b.item.id));
    await this.audit.recordRead({
      action: 'complaint.view',
      actor,
      complaintId: complaint.id,
      itemIds: [...items.keys()],
    });
    return {
      ...toComplaintView(complaint),
      evidence: linked.map(toEvidenceView),
      timeline,
    };
  }

  async suggestions(
    actor: RequestActor,
    rawId: string,
  ): Promise<{
    complaintId: string;
    callWindow: { from: string; to: string } | null;
    suggestions: Suggestion[];
  }> {
    const complaint = await this.complaint(rawId);
    const { suggestions, callWindow } = await this.collect(complaint);
    await this.audit.recordRead({
      action: 'complaint.view',
      actor,
      complaintId: complaint.id,
      itemIds: suggestions.map((s) => s.item.id),
      details: { suggestions: suggestions.length },
    });
    return {
      complaintId: complaint.id,
      callWindow: callWindow && {
        from: callWindow.from.toISOString(),
        to: callWindow.to.toISOString(),
      },
      suggestions,
    };
  }

  /**
   * Links items to the complaint (accepting suggestions, or any item support chose). Recorded as
   * `evidence.link`, with the reasons each item was suggested for, if it was.
   */
  async link(
    actor: RequestActor,
    rawId: string,
    body: unknown,
  ): Promise<{ complaintId: string; linked: string[]; alreadyLinked: string[] }> {
    const complaint = await this.complaint(rawId);
    const wanted = [...new Set(parseWith(linkBody, body).itemIds)];
    const unknown = wanted.find((id) => !isItemId(id));
    if (unknown !== undefined) throw noSuchItem(unknown);
    const rows = await this.evidence.findByIds(this.db, wanted);
    const missing = wanted.find((id) => !rows.some((r) => r.id === id));
    if (missing !== undefined) throw noSuchItem(missing);
    const deleted = rows.find((r) => r.deleted_at);
    if (deleted) {
      throw new AppError(
        'evidence_deleted',
        `Item ${deleted.id} was deleted; it cannot be linked.`,
      );
    }
    const already = rows.filter((r) => r.complaint_ids.includes(complaint.id)).map((r) => r.id);
    const toLink = wanted.filter((id) => !already.includes(id));
    if (toLink.length === 0)
      return { complaintId: complaint.id, linked: [], alreadyLinked: already };
    const { suggestions } = await this.collect(complaint);
    const reasons: Record<string, string[]> = {};
    for (const s of suggestions) {
      if (toLink.includes(s.item.id)) reasons[s.item.id] = s.reasons.map((r) => r.code);
    }
    await this.db.transaction().execute(async (tx) => {
      for (const id of toLink) {
        await this.evidence.addLinks(
          tx,
          id,
          [{ type: 'complaint', ref: complaint.id }],
          actor.keyId,
        );
      }
      await this.audit.append(tx, [
        {
          action: 'evidence.link',
          actor,
          itemIds: toLink,
          complaintId: complaint.id,
          details: { complaintIds: [complaint.id], suggested: reasons },
        },
      ]);
    });
    return { complaintId: complaint.id, linked: toLink, alreadyLinked: already };
  }

  /** `id` as `complaintIdParam` parses it. */
  private async complaint(id: string): Promise<ComplaintRow> {
    const row = await this.complaints.find(this.db, id);
    if (!row) throw new AppError('not_found', `No complaint with id ${JSON.stringify(id)}.`);
    return row;
  }

  /** Every unlinked item the complaint's orders, numbers and customer's phone point at. */
  private async collect(complaint: ComplaintRow): Promise<{
    suggestions: Suggestion[];
    callWindow: { from: Date; to: Date } | null;
  }> {
    const orders = complaint.order_ids;
    const numbers = complaint.tracking_numbers;
    const [linked, viaOrders, segments, byTracking] = await Promise.all([
      this.evidence.listByLink(this.db, 'complaint', complaint.id, ITEM_LIMIT),
      this.evidence.listByLinks(this.db, 'order', orders, ITEM_LIMIT),
      this.segments.listForOrdersOrTracking(this.db, orders, numbers, ITEM_LIMIT),
      this.evidence.listByTrackingNumbers(this.db, numbers, ITEM_LIMIT),
    ]);
    const items = new Map<string, EvidenceRow>();
    for (const row of [...viaOrders, ...byTracking]) items.set(row.id, row);
    await this.addMissing(items, segments);

    const { calls, callWindow } = await this.customerCalls(complaint, [...items.values()]);
    for (const row of calls) items.set(row.id, row);

    const found = new Map<string, Suggestion>();
    const suggest = (row: EvidenceRow, reason: SuggestionReason, segment?: SegmentRow) => {
      const s = found.get(row.id) ?? { item: toEvidenceView(row), segments: [], reasons: [] };
      found.set(row.id, s);
      if (segment && !s.segments.some((x) => x.id === segment.id)) {
        s.segments.push(toSegmentView(segment));
      }
      if (!s.reasons.some((r) => JSON.stringify(r) === JSON.stringify(reason)))
        s.reasons.push(reason);
    };
    for (const row of viaOrders) {
      for (const orderId of row.order_ids.filter((o) => orders.includes(o))) {
        suggest(row, { code: 'order', orderId, detail: `Linked to order ${orderId}.` });
      }
    }
    for (const seg of segments) {
      const row = items.get(seg.item_id);
      if (!row) continue;
      if (orders.includes(seg.order_id)) {
        suggest(
          row,
          {
            code: 'order_segment',
            orderId: seg.order_id,
            segmentId: seg.id,
            detail: `Segment ${Number(seg.start_sec)}–${Number(seg.end_sec)} s is order ${seg.order_id}.`,
          },
          seg,
        );
      }
      if (seg.tracking_number && numbers.includes(seg.tracking_number)) {
        suggest(
          row,
          {
            code: 'tracking_number',
            trackingNumber: seg.tracking_number,
            segmentId: seg.id,
            detail: `Segment ${Number(seg.start_sec)}–${Number(seg.end_sec)} s scanned tracking number ${seg.tracking_number}.`,
          },
          seg,
        );
      }
    }
    for (const row of byTracking) {
      suggest(row, {
        code: 'tracking_number',
        trackingNumber: row.tracking_number!,
        detail: `Recorded with tracking number ${row.tracking_number}.`,
      });
    }
    for (const row of calls) {
      const fromCustomer = row.from_number_e164 === complaint.customer_phone_e164;
      suggest(row, {
        code: 'customer_phone',
        direction: fromCustomer ? 'from_customer' : 'to_customer',
        phone: complaint.customer_phone_e164!,
        detail: `A call ${fromCustomer ? 'from' : 'to'} the customer's number ${complaint.customer_phone_e164} on ${new Date(row.captured_at).toISOString()}.`,
      });
    }
    const linkedIds = new Set(linked.map((r) => r.id));
    const suggestions = [...found.values()]
      .filter((s) => !linkedIds.has(s.item.id) && s.item.status !== 'deleted')
      .sort(
        (a, b) =>
          a.item.capturedAt.localeCompare(b.item.capturedAt) || a.item.id.localeCompare(b.item.id),
      );
    return { suggestions, callWindow };
  }

  /**
   * Calls from or to the customer's number, within SUGGESTION_WINDOW_DAYS before the earliest and
   * after the latest of the complaint's opening and its orders' items' capture times.
   */
  private async customerCalls(
    complaint: ComplaintRow,
    orderItems: EvidenceRow[],
  ): Promise<{ calls: EvidenceRow[]; callWindow: { from: Date; to: Date } | null }> {
    if (!complaint.customer_phone_e164) return { calls: [], callWindow: null };
    const anchors = [new Date(complaint.opened_at).getTime()];
    for (const row of orderItems) anchors.push(new Date(row.captured_at).getTime());
    const span = this.opts.suggestionWindowDays * DAY_MS;
    const callWindow = {
      from: new Date(Math.min(...anchors) - span),
      to: new Date(Math.max(...anchors) + span),
    };
    const calls = await this.evidence.listCallsWithNumber(
      this.db,
      complaint.customer_phone_e164,
      callWindow.from,
      callWindow.to,
      ITEM_LIMIT,
    );
    return { calls: calls.filter((c) => !c.deleted_at), callWindow };
  }

  /** Adds the clips that segments belong to but that no link brought in. */
  private async addMissing(items: Map<string, EvidenceRow>, segments: SegmentRow[]): Promise<void> {
    const missing = [...new Set(segments.map((s) => s.item_id))].filter((id) => !items.has(id));
    for (const row of await this.evidence.findByIds(this.db, missing)) items.set(row.id, row);
  }
}

function groupBy<T>(list: T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const t of list) out.set(key(t), [...(out.get(key(t)) ?? []), t]);
  return out;
}
