import type { Db } from '../db/database';
import type { RequestActor } from '../base/actor';
import type { AuditLog } from '../base/audit.service';
import type { HoldRepository } from '../custody/hold.repository';
import { AppError } from '../base/errors';
import { toE164 } from '../evidence/phone-number';
import { identifier, parseWith } from '../base/fields';
import type { ComplaintBody, ComplaintView } from '../contract/complaints.contract';

export type { ComplaintView };
import type { ComplaintRepository, ComplaintRow } from './complaint.repository';

const iso = (d: Date | string) => new Date(d).toISOString();

export function toComplaintView(r: ComplaintRow): ComplaintView {
  return {
    id: r.id,
    status: r.status,
    customerPhone: r.customer_phone,
    customerPhoneE164: r.customer_phone_e164,
    orderIds: r.order_ids,
    trackingNumbers: r.tracking_numbers,
    channel: r.channel,
    topic: r.topic,
    claimUrl: r.claim_url,
    description: r.description,
    openedAt: iso(r.opened_at),
    closedAt: r.closed_at ? iso(r.closed_at) : null,
    updatedAt: iso(r.updated_at),
  };
}

export interface ComplaintServiceDeps {
  db: Db;
  repo: ComplaintRepository;
  holds: HoldRepository;
  audit: AuditLog;
  opts?: { defaultPhoneRegion?: string; now?: () => Date };
}

/**
 * Complaints: the disputes custody follows. While a complaint is open its evidence (linked to it,
 * or to one of its orders) never expires; once closed it is kept RETENTION_AFTER_CLOSE_DAYS more.
 */
export class ComplaintService {
  private readonly db: Db;
  private readonly repo: ComplaintRepository;
  private readonly holds: HoldRepository;
  private readonly audit: AuditLog;
  private readonly opts: NonNullable<ComplaintServiceDeps['opts']>;

  constructor(deps: ComplaintServiceDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.holds = deps.holds;
    this.audit = deps.audit;
    this.opts = deps.opts ?? {};
  }

  /** Creates or replaces a complaint (PUT semantics); `created` tells which. */
  async put(
    actor: RequestActor,
    id: string,
    b: ComplaintBody,
  ): Promise<{ complaint: ComplaintView; created: boolean }> {
    let phoneE164: string | null = null;
    if (b.customerPhone) {
      phoneE164 = toE164(b.customerPhone, this.opts.defaultPhoneRegion) ?? null;
      if (!phoneE164) {
        throw new AppError(
          'invalid_phone_number',
          `"${b.customerPhone}" is not a phone number that can be put in E.164 form; include the country code (+44...).`,
        );
      }
    }
    const orderIds = [...new Set(b.orderIds)].sort();
    const trackingNumbers = [...new Set(b.trackingNumbers)].sort();
    return this.db.transaction().execute(async (tx) => {
      // The complaint's orders decide which evidence a hold on it covers: changing them waits for
      // deletions in flight, as placing a hold does.
      await this.holds.lockForPlacement(tx);
      const now = this.opts.now?.() ?? new Date();
      const before = await this.repo.findForUpdate(tx, id);
      const dropped = before?.order_ids.filter((o) => !orderIds.includes(o)) ?? [];
      if (dropped.length > 0 && (await this.holds.activeOnComplaint(tx, id))) {
        throw new AppError(
          'legal_hold',
          `Complaint ${id} is under legal hold; its orders (${dropped.join(', ')}) cannot be removed until the hold is released.`,
        );
      }
      // Closing keeps the first closing time (retention counts from it); reopening clears it.
      const closedAt = b.status === 'closed' ? (before?.closed_at ?? now) : null;
      const row = await this.repo.upsert(tx, {
        id,
        status: b.status,
        customer_phone: b.customerPhone ?? null,
        customer_phone_e164: phoneE164,
        order_ids: orderIds,
        tracking_numbers: trackingNumbers,
        channel: b.channel ?? null,
        topic: b.topic ?? null,
        claim_url: b.claimUrl ?? null,
        description: b.description ?? null,
        opened_at: b.openedAt ? new Date(b.openedAt) : (before?.opened_at ?? now),
        closed_at: closedAt,
        updated_at: now,
      });
      await this.audit.append(tx, [
        {
          action: 'complaint.write',
          actor,
          complaintId: id,
          details: {
            status: b.status,
            previousStatus: before?.status ?? null,
            orderIds,
            trackingNumbers,
            customerPhone: b.customerPhone ?? null,
            channel: b.channel ?? null,
            topic: b.topic ?? null,
            claimUrl: b.claimUrl ?? null,
          },
        },
      ]);
      return { complaint: toComplaintView(row), created: !before };
    });
  }

  async get(actor: RequestActor, rawId: string): Promise<ComplaintView> {
    const id = parseWith(identifier(), rawId);
    const row = await this.repo.find(this.db, id);
    if (!row) throw new AppError('not_found', `No complaint with id ${JSON.stringify(id)}.`);
    await this.audit.recordRead({ action: 'complaint.view', actor, complaintId: id });
    return toComplaintView(row);
  }
}
