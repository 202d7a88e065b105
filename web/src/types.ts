/** The API's shapes, as far as the app reads them (src/http/openapi.json has them all). */

export interface Segment {
  id: string;
  orderId: string;
  trackingNumber: string | null;
  startSec: number;
  endSec: number;
  contentUrl: string;
}

export interface Item {
  id: string;
  kind: string;
  sha256: string;
  size: number;
  contentType: string;
  originalFilename: string | null;
  capturedAt: string;
  receivedAt: string;
  source: string | null;
  orderIds: string[];
  complaintIds: string[];
  callId: string | null;
  fromNumber: string | null;
  toNumber: string | null;
  agentId: string | null;
  direction: string | null;
  stationId: string | null;
  operatorId: string | null;
  trackingNumber: string | null;
  contentUrl: string;
  status: 'archived' | 'deleted';
  deletedAt: string | null;
  deletionReason: string | null;
  lastVerification: { status: string; checkedAt: string } | null;
  /** `damaged`: the stored bytes do not match the hash; nothing of them is served. */
  integrity?: 'unverified' | 'ok' | 'problem' | 'damaged';
  damagedAt?: string | null;
  segments?: Segment[];
  media?: { status: string; probe?: { durationSeconds?: number } | null } | null;
}

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
