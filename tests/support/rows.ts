import type { AuditRow } from '../../src/base/audit.repository';
import type { ComplaintRow } from '../../src/complaints/complaint.repository';
import { SigningKey } from '../../src/custody/signing-key';
import type { EvidenceRow } from '../../src/evidence/evidence.repository';
import type { SegmentCutRow, SegmentRow } from '../../src/evidence/segment.repository';
import { blobKeyFor } from '../../src/storage/blob-store';

/**
 * Rows as the repositories return them, for the tests that run without a database (the pure
 * bundle plan, the service tier). Each builder fills every column with a plausible value; a test
 * overrides what it is about.
 */

/** A fixed Ed25519 key (for tests only): signatures, and so bundle bytes, are reproducible. */
export const TEST_SIGNING_KEY = SigningKey.fromPem(
  [
    '-----BEGIN PRIVATE KEY-----',
    'MC4CAQAwBQYDK2VwBCIEIOU2cBiKHNP+MKfuCMNYl1ftEnghVATYGw9woIHEaWew',
    '-----END PRIVATE KEY-----',
  ].join('\n'),
);

const hex = (n: number, len: number) => n.toString(16).padStart(len, '0');
/** A UUID whose last digits are `n`: ids that sort in the order they were made. */
export const uuid = (n: number, prefix = '00000000') => `${prefix}-0000-4000-8000-${hex(n, 12)}`;

export function evidenceRow(o: Partial<EvidenceRow> & { id: string }): EvidenceRow {
  const sha256 = o.sha256 ?? hex(parseInt(o.id.slice(-8), 16), 64);
  return {
    kind: 'call_recording',
    sha256,
    size_bytes: 1000,
    content_type: 'audio/mpeg',
    blob_key: blobKeyFor(sha256),
    original_filename: 'call.mp3',
    captured_at: new Date('2026-01-10T09:00:00Z'),
    received_at: new Date('2026-01-10T09:05:00Z'),
    source: 'asterisk-1',
    created_by_key_id: 'key-ingest',
    call_id: null,
    from_number: null,
    from_number_e164: null,
    to_number: null,
    to_number_e164: null,
    agent_id: null,
    direction: null,
    station_id: null,
    operator_id: null,
    tracking_number: null,
    verified_at: null,
    verify_status: null,
    verify_detail: null,
    deleted_at: null,
    deletion_reason: null,
    deleted_by: null,
    blob_purged_at: null,
    worm_status: null,
    worm_mode: null,
    worm_retain_until: null,
    damaged_at: null,
    damage_detail: null,
    repaired_at: null,
    order_ids: [],
    complaint_ids: [],
    ...o,
  };
}

export function complaintRow(o: Partial<ComplaintRow> & { id: string }): ComplaintRow {
  return {
    status: 'open',
    customer_phone: null,
    customer_phone_e164: null,
    order_ids: [],
    opened_at: new Date('2026-01-12T10:00:00Z'),
    closed_at: null,
    updated_at: new Date('2026-01-12T10:00:00Z'),
    tracking_numbers: [],
    channel: null,
    topic: null,
    claim_url: null,
    description: null,
    ...o,
  };
}

export function segmentRow(o: Partial<SegmentRow> & { id: string; item_id: string }): SegmentRow {
  return {
    order_id: 'ORD-1',
    tracking_number: null,
    start_sec: '0',
    end_sec: '4',
    created_by_key_id: 'key-ingest',
    created_at: new Date('2026-01-10T09:06:00Z'),
    ...o,
  };
}

/** A segment's cut, ready to be bundled. */
export function cutRow(
  seg: SegmentRow,
  parent: EvidenceRow,
  o: Partial<SegmentCutRow> = {},
): SegmentCutRow & { sha256: string; blob_key: string } {
  const sha256 = o.sha256 ?? hex(parseInt(seg.id.slice(-8), 16) + 0xc0000, 64);
  return {
    segment_id: seg.id,
    item_id: seg.item_id,
    status: 'ready',
    source_sha256: parent.sha256,
    size_bytes: 400,
    content_type: 'video/mp4',
    detail: null,
    params: { startSec: Number(seg.start_sec), endSec: Number(seg.end_sec), method: 'copy' },
    created_at: new Date('2026-01-10T09:07:00Z'),
    updated_at: new Date('2026-01-10T09:07:00Z'),
    ...o,
    sha256,
    blob_key: o.blob_key ?? `derived/${sha256}`,
  };
}

export function auditRow(o: Partial<AuditRow> & { seq: number }): AuditRow {
  return {
    occurred_at: new Date(Date.UTC(2026, 0, 10, 9, 0, o.seq)),
    action: 'evidence.create',
    outcome: 'success',
    actor_key_id: 'key-ingest',
    actor_role: 'ingest',
    actor_name: 'station',
    item_ids: [],
    complaint_id: null,
    request_id: null,
    client_ip: null,
    details: {},
    prev_hash: hex(o.seq - 1, 64),
    hash: hex(o.seq, 64),
    ...o,
  };
}
