import type { ComplaintRepository } from '../complaints/complaint.repository';
import type { RequestActor } from '../base/actor';
import type { AuditLog } from '../base/audit.service';
import type { Db, EvidenceKind } from '../db/database';
import type { EvidenceRepository, EvidenceRow } from '../evidence/evidence.repository';
import { toEvidenceView } from '../evidence/evidence.view';
import { toE164 } from '../evidence/phone-number';
import type { SegmentRepository, SegmentRow } from '../evidence/segment.repository';
import { toSegmentView, type SegmentView } from '../evidence/segments';
import type {
  LookupMatch,
  LookupMatchType,
  LookupQuery,
  LookupResult,
} from '../contract/console.contract';

export type { LookupMatch, LookupResult };

/** Most items one match answers with (a lookup is for one dispute, not a report). */
const MATCH_LIMIT = 200;

// The answer's shape is console.contract's LookupResult; its items are typed by the evidence
// view here until that view is the contract's EvidenceItem type.

export interface LookupServiceDeps {
  db: Db;
  evidence: EvidenceRepository;
  segments: SegmentRepository;
  complaintRepo: ComplaintRepository;
  audit: AuditLog;
  opts?: { defaultPhoneRegion?: string };
}

/**
 * One search box: decides what the text is (a complaint, an order, a tracking number, a phone
 * number in any common format) and answers with every kind that matches, each with its evidence.
 * Every query is an index lookup: links by (type, ref), tracking numbers, E.164 numbers.
 */
export class LookupService {
  private readonly db: Db;
  private readonly evidence: EvidenceRepository;
  private readonly segments: SegmentRepository;
  private readonly complaintRepo: ComplaintRepository;
  private readonly audit: AuditLog;
  private readonly opts: NonNullable<LookupServiceDeps['opts']>;

  constructor(deps: LookupServiceDeps) {
    this.db = deps.db;
    this.evidence = deps.evidence;
    this.segments = deps.segments;
    this.complaintRepo = deps.complaintRepo;
    this.audit = deps.audit;
    this.opts = deps.opts ?? {};
  }

  async lookup(actor: RequestActor, q: LookupQuery): Promise<LookupResult> {
    // Ids are matched as typed and in capitals ("ord-1001" finds ORD-1001).
    const spellings = [...new Set([q.q, q.q.toUpperCase()])];
    const keep = (r: EvidenceRow) =>
      (!q.kind || r.kind === (q.kind as EvidenceKind)) &&
      (!q.stationId || r.station_id === q.stationId) &&
      (!q.from || new Date(r.captured_at) >= q.from) &&
      (!q.to || new Date(r.captured_at) < q.to);

    const [complaints, orders, tracking, phone] = await Promise.all([
      this.complaints(spellings),
      this.orders(spellings),
      this.trackingNumbers(spellings),
      this.phone(q.q),
    ]);
    const matches: LookupMatch[] = [];
    for (const found of [...complaints, ...orders, ...tracking, ...(phone ? [phone] : [])]) {
      matches.push({
        type: found.type,
        value: found.value,
        items: found.rows.filter(keep).map((r) => {
          const segs = found.segments?.get(r.id);
          return segs ? { ...toEvidenceView(r), segments: segs } : toEvidenceView(r);
        }),
      });
    }
    const itemIds = [...new Set(matches.flatMap((m) => m.items.map((i) => i.id)))];
    await this.audit.recordRead({
      action: 'evidence.list',
      actor,
      itemIds,
      details: {
        lookup: {
          matches: matches.map((m) => ({ type: m.type, value: m.value, count: m.items.length })),
          kind: q.kind,
          stationId: q.stationId,
          from: q.from,
          to: q.to,
        },
        count: itemIds.length,
      },
    });
    return { query: q.q, matches };
  }

  /** A complaint on record, or a complaint id evidence is linked to, with its evidence. */
  private async complaints(spellings: string[]): Promise<Found[]> {
    const [rows, linked] = await Promise.all([
      this.complaintRepo.ordersOfAny(this.db, spellings),
      this.linkedRefs('complaint', spellings),
    ]);
    const ids = [...new Set([...rows.map((r) => r.id), ...linked])];
    return Promise.all(
      ids.map(async (id) => {
        const orders = rows.find((r) => r.id === id)?.order_ids ?? [];
        const [direct, viaOrders] = await Promise.all([
          this.evidence.listByLink(this.db, 'complaint', id, MATCH_LIMIT),
          this.evidence.listByLinks(this.db, 'order', orders, MATCH_LIMIT),
        ]);
        return {
          type: 'complaint' as const,
          value: id,
          rows: byCapture([...direct, ...viaOrders]),
        };
      }),
    );
  }

  private async orders(spellings: string[]): Promise<Found[]> {
    const refs = await this.linkedRefs('order', spellings);
    return Promise.all(
      refs.map(async (ref) => {
        const rows = await this.evidence.listByLink(this.db, 'order', ref, MATCH_LIMIT);
        const segs = await this.segments.listForOrder(
          this.db,
          ref,
          rows.map((r) => r.id),
        );
        return { type: 'order' as const, value: ref, rows, segments: groupSegments(segs) };
      }),
    );
  }

  /** Items carrying the tracking number, and long recordings with a segment that does. */
  private async trackingNumbers(spellings: string[]): Promise<Found[]> {
    const [own, segs] = await Promise.all([
      this.evidence.listByTrackingNumbers(this.db, spellings, MATCH_LIMIT),
      this.segments.listForOrdersOrTracking(this.db, [], spellings, MATCH_LIMIT),
    ]);
    const values = new Set([
      ...own.map((r) => r.tracking_number!),
      ...segs.map((s) => s.tracking_number!),
    ]);
    const found: Found[] = [];
    for (const value of values) {
      const mine = segs.filter((s) => s.tracking_number === value);
      const missing = [...new Set(mine.map((s) => s.item_id))].filter(
        (id) => !own.some((r) => r.id === id && r.tracking_number === value),
      );
      const rows = [
        ...own.filter((r) => r.tracking_number === value),
        ...(await this.evidence.findByIds(this.db, missing)),
      ];
      found.push({
        type: 'tracking_number',
        value,
        rows: byCapture(rows),
        segments: groupSegments(mine),
      });
    }
    return found;
  }

  /** Calls from or to the number, written any common way ("+44 20 7946 0958", "0044 …", "(020) …"). */
  private async phone(raw: string): Promise<Found | undefined> {
    const e164 = phoneNumberOf(raw, this.opts.defaultPhoneRegion);
    if (!e164) return undefined;
    const rows = await this.evidence.search(this.db, { phoneE164: e164 }, undefined, MATCH_LIMIT);
    if (rows.length === 0) return undefined;
    return { type: 'phone', value: e164, rows: byCapture(rows) };
  }

  private async linkedRefs(type: 'order' | 'complaint', spellings: string[]): Promise<string[]> {
    const rows = await this.evidence.linkedRefs(this.db, type, spellings);
    return rows.map((r) => r.ref);
  }
}

interface Found {
  type: LookupMatchType;
  value: string;
  rows: EvidenceRow[];
  segments?: Map<string, SegmentView[]>;
}

/**
 * The E.164 form of text that looks like a phone number (digits with the usual separators, at
 * least 6 digits), or undefined. "00" is read as the international prefix.
 */
export function phoneNumberOf(raw: string, defaultRegion?: string): string | undefined {
  const text = raw.trim();
  if (!/^\+?[\d\s().\-/]+$/.test(text)) return undefined;
  const digits = text.replace(/\D/g, '');
  if (digits.length < 6 || digits.length > 17) return undefined;
  const international = text.startsWith('00') ? `+${text.slice(2)}` : text;
  return toE164(international, defaultRegion);
}

function groupSegments(rows: SegmentRow[]): Map<string, SegmentView[]> {
  const byItem = new Map<string, SegmentView[]>();
  for (const s of rows) byItem.set(s.item_id, [...(byItem.get(s.item_id) ?? []), toSegmentView(s)]);
  return byItem;
}

function byCapture(rows: EvidenceRow[]): EvidenceRow[] {
  const seen = new Set<string>();
  return rows
    .filter((r) => !seen.has(r.id) && seen.add(r.id))
    .sort(
      (a, b) =>
        new Date(a.captured_at).getTime() - new Date(b.captured_at).getTime() ||
        a.id.localeCompare(b.id),
    );
}
