import {
  BUNDLE_FORMAT,
  BUNDLE_FORMAT_VERSION,
  manifestV1,
  type BundleManifest,
} from '../../src/bundles/bundle-format';
import { manifestFormatProblem } from '../../src/bundles/bundle-verifier';

const hex = (c: string) => c.repeat(64);

function manifest(): BundleManifest {
  return {
    format: BUNDLE_FORMAT,
    version: BUNDLE_FORMAT_VERSION,
    bundleId: '0f9b5c0e-52a4-4d4f-9d55-8b2d0c3f1a10',
    createdAt: '2026-11-02T14:03:00.000Z',
    createdBy: { keyId: 'k1', role: 'support', name: 'desk' },
    complaintId: 'C-1',
    complaint: { id: 'C-1', status: 'open' },
    selection: { mode: 'all_linked', itemIds: [], segmentIds: [] },
    omitted: [{ itemId: 'i-2', reason: 'deleted', deletedAt: null }],
    fileCount: 1,
    totalBytes: 3,
    files: [
      {
        path: 'files/01-segment-s1.mp4',
        type: 'segment',
        itemId: 'i-1',
        kind: 'packing_video',
        originalFilename: null,
        capturedAt: '2026-11-02T14:00:00.000Z',
        receivedAt: '2026-11-02T14:01:00.000Z',
        source: null,
        orderIds: ['O-1'],
        complaintIds: ['C-1'],
        callId: null,
        fromNumber: null,
        toNumber: null,
        fromNumberE164: null,
        toNumberE164: null,
        agentId: null,
        direction: null,
        stationId: 'PK-03',
        operatorId: null,
        trackingNumber: null,
        lastVerification: { status: 'ok', checkedAt: '2026-11-02T14:02:00.000Z' },
        sha256: hex('a'),
        size: 3,
        contentType: 'video/mp4',
        segment: {
          segmentId: 's1',
          orderId: 'O-1',
          trackingNumber: null,
          startSec: 0,
          endSec: 10,
          cutStartSec: 0,
          cutEndSec: 10,
          method: 'stream_copy',
          parentItemId: 'i-1',
          parentSha256: hex('b'),
          parentSize: 100,
          parentContentType: 'video/mp4',
        },
      },
    ],
    auditExcerpt: {
      path: 'audit.jsonl',
      sha256: hex('c'),
      size: 10,
      events: 1,
      firstSeq: 1,
      lastSeq: 1,
      covers: 'every audit event naming one of the bundled items',
    },
    checkpoint: {
      checkpoint: {
        version: 1,
        type: 'evidence-archive.audit-checkpoint',
        seq: 1,
        hash: hex('d'),
        signedAt: '2026-11-02T14:03:00.000Z',
        keyFingerprint: hex('e'),
        previous: null,
      },
      signature: 'c2ln',
      objectKey: 'custody/checkpoints/00000000000000000001.json',
    },
    signing: {
      algorithm: 'Ed25519',
      publicKeyFile: 'public-key.pem',
      publicKeyFingerprint: hex('e'),
      fingerprintMethod: 'SHA-256 of the DER-encoded public key',
      signatures: { 'manifest.json': 'manifest.json.sig', SHA256SUMS: 'SHA256SUMS.sig' },
    },
  };
}

describe('the version-1 bundle manifest schema', () => {
  it('accepts a manifest as the builder writes it', () => {
    expect(manifestV1.safeParse(manifest()).success).toBe(true);
    expect(manifestFormatProblem(JSON.parse(JSON.stringify(manifest())))).toBeUndefined();
  });

  it('refuses a member the format does not have, one it requires, or a wrong type', () => {
    const extra = { ...manifest(), note: 'added later' };
    expect(manifestFormatProblem(extra)).toMatch(
      /^manifest\.json does not follow the version 1 manifest format: .*note/,
    );
    const { totalBytes: _gone, ...missing } = manifest();
    expect(manifestFormatProblem(missing)).toMatch(/totalBytes: Required/);
    const bad = manifest();
    (bad.files[0] as { sha256: string }).sha256 = 'not a hash';
    expect(manifestFormatProblem(bad)).toMatch(/files\.0\.sha256/);
  });

  it('names a version it cannot read', () => {
    expect(manifestFormatProblem({ ...manifest(), version: 2 })).toBe(
      'manifest.json has format version 2; this verifier reads version 1',
    );
    expect(manifestFormatProblem(null)).toMatch(/has format version null/);
  });
});
