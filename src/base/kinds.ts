import type { EvidenceKind } from '../db/database';

export const EVIDENCE_KINDS = ['packing_video', 'call_recording', 'photo'] as const;

/** What each kind of evidence may be, judged by sniffed type only. */
const ALLOWED_TYPE_PREFIX: Record<EvidenceKind, string> = {
  packing_video: 'video/',
  call_recording: 'audio/',
  photo: 'image/',
};

export function isAllowedType(kind: EvidenceKind, contentType: string): boolean {
  return contentType.startsWith(ALLOWED_TYPE_PREFIX[kind]);
}

export function describeAllowed(kind: EvidenceKind): string {
  return `${ALLOWED_TYPE_PREFIX[kind]}*`;
}
