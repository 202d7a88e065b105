import type { DuplicateReceipt, EvidenceItem } from '../contract/evidence.contract';
import { wormStatusAt } from '../storage/worm';
import type { EvidenceRow, OrderSegmentJson } from './evidence.repository';
import { toSegmentView, type SegmentView } from './segments';

/** An item as the API answers it (the contract's `EvidenceItem`). */
export type EvidenceView = EvidenceItem;

const iso = (d: Date | string) => (d instanceof Date ? d : new Date(d)).toISOString();

export function toEvidenceView(r: EvidenceRow): EvidenceView {
  return {
    id: r.id,
    kind: r.kind,
    sha256: r.sha256,
    size: r.size_bytes,
    contentType: r.content_type,
    originalFilename: r.original_filename,
    capturedAt: iso(r.captured_at),
    receivedAt: iso(r.received_at),
    source: r.source,
    orderIds: r.order_ids,
    complaintIds: r.complaint_ids,
    callId: r.call_id,
    fromNumber: r.from_number,
    toNumber: r.to_number,
    fromNumberE164: r.from_number_e164,
    toNumberE164: r.to_number_e164,
    agentId: r.agent_id,
    direction: r.direction,
    stationId: r.station_id,
    operatorId: r.operator_id,
    trackingNumber: r.tracking_number,
    contentUrl: `/v1/evidence/${r.id}/content`,
    status: r.deleted_at ? 'deleted' : 'archived',
    deletedAt: r.deleted_at ? iso(r.deleted_at) : null,
    deletionReason: r.deletion_reason,
    lastVerification:
      r.verify_status && r.verified_at
        ? { status: r.verify_status, checkedAt: iso(r.verified_at) }
        : null,
    worm: r.worm_status
      ? {
          status: wormStatusAt(r.worm_status, r.worm_retain_until),
          mode: r.worm_mode,
          retainUntil: r.worm_retain_until ? iso(r.worm_retain_until) : null,
        }
      : null,
    integrity: r.damaged_at
      ? 'damaged'
      : !r.verify_status
        ? 'unverified'
        : r.verify_status === 'ok'
          ? 'ok'
          : 'problem',
    damagedAt: r.damaged_at ? iso(r.damaged_at) : null,
  };
}

/** An item found by its order, with that order's segments of it (GET /v1/orders/{id}/evidence). */
export function toOrderItemView(
  r: EvidenceRow & { order_segments: OrderSegmentJson[] },
): EvidenceView & { segments: SegmentView[] } {
  return { ...toEvidenceView(r), segments: r.order_segments.map(toSegmentView) };
}

/**
 * What a key that delivered bytes another key archived first may know of the item: its id, the
 * bytes' hash and size, and the links it added itself. Nothing of the first upload (numbers, agent,
 * other orders, complaints) leaks to whoever happens to hold the same bytes.
 */
export type { DuplicateReceipt };

export function toDuplicateReceipt(
  r: Pick<EvidenceRow, 'id' | 'sha256' | 'size_bytes'>,
  links: { type: 'order' | 'complaint'; ref: string }[],
): DuplicateReceipt {
  const refs = (type: 'order' | 'complaint') =>
    [...new Set(links.filter((l) => l.type === type).map((l) => l.ref))].sort();
  return {
    id: r.id,
    sha256: r.sha256,
    size: r.size_bytes,
    orderIds: refs('order'),
    complaintIds: refs('complaint'),
    duplicate: true,
  };
}
