/** The API's shapes, as far as the app reads them (src/http/openapi.json has them all). */
import type { EvidenceItem, MediaSummary, Segment } from '../../src/contract/evidence.contract';

export type { Segment } from '../../src/contract/evidence.contract';
export type { KeyRow, MeWithSessions, SessionView } from '../../src/contract/console.contract';
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

export type { AuditEvent } from '../../src/contract/custody.contract';
export type { VerificationResult as Verification } from '../../src/contract/custody.contract';

export type { LookupMatch } from '../../src/contract/console.contract';

export type {
  ComplaintWorkspace as Complaint,
  Suggestion,
} from '../../src/contract/complaints.contract';
export type { BundleView as Bundle } from '../../src/contract/bundles.contract';

export type { HoldView as Hold } from '../../src/contract/holds.contract';
