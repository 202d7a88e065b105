/** The API's shapes, as far as the app reads them (src/http/openapi.json has them all). */
import type { EvidenceItem, MediaSummary, Segment } from '../../src/contract/evidence.contract';

export type { Segment } from '../../src/contract/evidence.contract';

/**
 * An evidence item as the app reads it: the contract's `EvidenceItem`, with the `segments` an
 * order's list and a lookup add, and the `media` of `GET /v1/evidence/{id}`.
 */
export type Item = EvidenceItem & { segments?: Segment[]; media?: MediaSummary };

export interface Derivative {
  kind: string;
  status: string;
  url: string;
  contentType: string | null;
  width: number | null;
  height: number | null;
  detail: string | null;
}

export interface Derivatives {
  itemId: string;
  media: {
    status: string;
    detail?: string | null;
    probe?: { durationSeconds?: number } | null;
  } | null;
  derivatives: Derivative[];
  playback: { source: 'preview' | 'original'; url: string; contentType: string } | null;
}

export type { AuditEvent } from '../../src/contract/custody.contract';
export type { VerificationResult as Verification } from '../../src/contract/custody.contract';

export interface LookupMatch {
  type: 'complaint' | 'order' | 'tracking_number' | 'phone';
  value: string;
  items: Item[];
}

export type {
  ComplaintWorkspace as Complaint,
  Suggestion,
} from '../../src/contract/complaints.contract';
export type { BundleView as Bundle } from '../../src/contract/bundles.contract';

export interface ShareLink {
  id: string;
  target: {
    type: string;
    itemId: string | null;
    segmentId: string | null;
    bundleId: string | null;
  };
  note: string | null;
  createdAt: string;
  createdBy: string;
  expiresAt: string;
  status: 'active' | 'expired' | 'revoked';
  useCount: number;
  lastUsedAt: string | null;
  token?: string;
  url?: string;
}

export type { HoldView as Hold } from '../../src/contract/holds.contract';

export interface KeyRow {
  id: string;
  name: string;
  role: string;
  createdAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
}
