/** The API's shapes, as far as the app reads them (src/http/openapi.json has them all). */
import type { EvidenceItem, MediaSummary, Segment } from '../../src/contract/evidence.contract';

export type { Segment } from '../../src/contract/evidence.contract';
export type { KeyRow } from '../../src/contract/console.contract';
export type {
  DerivativeView as Derivative,
  DerivativeList as Derivatives,
} from '../../src/contract/media.contract';
export type {
  CreatedShareLink,
  ShareLinkView as ShareLink,
} from '../../src/contract/share.contract';

/**
 * An evidence item as the app reads it: the contract's `EvidenceItem`, with the `segments` an
 * order's list and a lookup add, and the `media` of `GET /v1/evidence/{id}`.
 */
export type Item = EvidenceItem & { segments?: Segment[]; media?: MediaSummary };

export interface AuditEvent {
  seq: number;
  occurredAt: string;
  action: string;
  outcome: string;
  actor: { keyId: string | null; role: string | null; name: string | null };
  clientIp: string | null;
  details: Record<string, unknown>;
}

export interface Verification {
  status: string;
  checkedAt: string;
  expected: { sha256: string; size: number };
  computed: { sha256: string; size: number } | null;
  problems: string[];
}

// The contract's LookupMatch once Item is the contract's EvidenceItem (it lacks a few members).
export interface LookupMatch {
  type: 'complaint' | 'order' | 'tracking_number' | 'phone';
  value: string;
  items: Item[];
}

export interface Complaint {
  id: string;
  status: 'open' | 'closed';
  customerPhone: string | null;
  orderIds: string[];
  trackingNumbers: string[];
  channel: string | null;
  topic: string | null;
  claimUrl: string | null;
  description: string | null;
  openedAt: string;
  closedAt: string | null;
  updatedAt: string;
  evidence: Item[];
  timeline: {
    at: string;
    type: string;
    item: Item;
    segment?: Segment;
    linkedToComplaint: boolean;
    orderIds: string[];
  }[];
}

export interface Suggestion {
  item: Item;
  segments: Segment[];
  reasons: { code: string; detail: string }[];
}

export interface Bundle {
  id: string;
  complaintId: string;
  createdAt: string;
  fileCount: number;
  totalBytes: number;
  zipBytes?: number;
  manifestSha256: string;
  downloadUrl: string;
}

export interface Hold {
  id: string;
  reason: string;
  placedBy: string;
  placedAt: string;
  active: boolean;
}
