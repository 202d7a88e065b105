import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AUDIT,
  MANIFEST,
  MANIFEST_SIG,
  parseSums,
  PUBLIC_KEY,
  SUMS,
  SUMS_SIG,
  VERIFY,
} from '../../src/bundles/bundle-format';
import {
  bundleOrder,
  planBundle,
  zipLayout,
  type BundlePlanInput,
  type BundleSelection,
} from '../../src/bundles/bundle-plan';
import { buildZip } from '../../src/bundles/bundle-zip';
import { toAuditView } from '../../src/base/audit.service';
import { loadPublicKey, verifySignature } from '../../src/custody/signing-key';
import {
  auditRow,
  complaintRow,
  cutRow,
  evidenceRow,
  segmentRow,
  TEST_SIGNING_KEY,
  uuid,
} from '../support/rows';

/**
 * The dispute bundle decided from what was loaded, without a database: order, manifest, the small
 * files, their checksums and signatures, and the ZIP's size. A bundle's bytes never change once it
 * is made (its ETag is the manifest's hash), so the plan for fixed inputs is pinned to a digest.
 */

const complaint = complaintRow({
  id: 'CMP-7',
  order_ids: ['ORD-1', 'ORD-2'],
  customer_phone: '+44 20 7946 0958',
});
const call = evidenceRow({
  id: uuid(3),
  captured_at: new Date('2026-01-10T09:00:00Z'),
  complaint_ids: ['CMP-7'],
  call_id: '17.4',
});
const clip = evidenceRow({
  id: uuid(2),
  kind: 'packing_video',
  content_type: 'video/quicktime',
  original_filename: 'clip.mov',
  captured_at: new Date('2026-01-09T09:00:00Z'),
  order_ids: ['ORD-1', 'ORD-2'],
  verify_status: 'ok',
  verified_at: new Date('2026-01-11T00:00:00Z'),
});
const late = segmentRow({
  id: uuid(11),
  item_id: clip.id,
  order_id: 'ORD-2',
  start_sec: '4',
  end_sec: '8',
});
const early = segmentRow({
  id: uuid(10),
  item_id: clip.id,
  order_id: 'ORD-1',
  start_sec: '0',
  end_sec: '4',
});
const cutOf = (s: typeof late): BundleSelection => ({
  item: clip,
  segment: { row: s, cut: cutRow(s, clip) },
});

function input(files: BundleSelection[], o: Partial<BundlePlanInput> = {}): BundlePlanInput {
  return {
    bundleId: uuid(1, 'bbbbbbbb'),
    createdAt: new Date('2026-02-01T12:34:56.789Z'),
    createdBy: { keyId: 'key-sup', role: 'support', name: 'Sam' },
    complaintId: 'CMP-7',
    complaint,
    selection: { mode: 'selected', itemIds: [call.id], segmentIds: [late.id, early.id] },
    omitted: [],
    files,
    checkpoint: {
      checkpoint: {
        version: 1,
        type: 'evidence-archive.audit-checkpoint',
        seq: 9,
        hash: 'h9',
        signedAt: '2026-02-01T12:34:56.000Z',
        keyFingerprint: TEST_SIGNING_KEY.fingerprint,
        previous: null,
      },
      signature: 'c2ln',
      objectKey: 'checkpoints/9.json',
    },
    excerpt: {
      text: [
        auditRow({ seq: 5, item_ids: [call.id] }),
        auditRow({ seq: 9, complaint_id: 'CMP-7', action: 'complaint.write' }),
      ]
        .map((r) => `${JSON.stringify(toAuditView(r))}\n`)
        .join(''),
      count: 2,
      firstSeq: 5,
      lastSeq: 9,
    },
    signer: TEST_SIGNING_KEY,
    ...o,
  };
}

const selection = (): BundleSelection[] => [{ item: call }, cutOf(late), cutOf(early)];
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('planBundle', () => {
  it('makes the same plan for the same inputs, byte for byte (a recorded digest)', () => {
    const a = planBundle(input(selection(), { bundleId: uuid(2, 'bbbbbbbb') }));
    const b = planBundle(input(selection().reverse(), { bundleId: uuid(2, 'bbbbbbbb') }));
    expect(b).toEqual(a);
    // Recorded from BundleService.create before the plan was taken out of it, for these inputs:
    // a change here changes the bytes of bundles made from now on, and needs a new format version.
    expect(a.manifestSha256).toBe(
      '877e9b1f56287de0a7e32e251ea2e3bdd722efd10a0caea0e88bad53bb41fac9',
    );
    expect(a.zipBytes).toBe(14197);
  });

  it('orders originals by capture time, each followed by its segment cuts in time order', () => {
    const other = evidenceRow({ id: uuid(1), captured_at: call.captured_at });
    const order = bundleOrder([{ item: call }, cutOf(late), { item: other }, cutOf(early)]);
    expect(order.map((s) => s.segment?.row.id ?? s.item.id)).toEqual([
      early.id, // the clip was captured first: its cuts, by start
      late.id,
      other.id, // then the two captured together, by id
      call.id,
    ]);
    const plan = planBundle(input([{ item: call }, cutOf(late), { item: other }, cutOf(early)]));
    expect(plan.manifest.files.map((f) => f.path)).toEqual([
      `files/01-segment-${early.id}.mp4`,
      `files/02-segment-${late.id}.mp4`,
      `files/03-${other.id}.mp3`,
      `files/04-${call.id}.mp3`,
    ]);
    expect(plan.entries.map((e) => e.path)).toEqual(plan.manifest.files.map((f) => f.path));
    // Each item once, in bundle order, even with two cuts of it.
    expect(plan.itemIds).toEqual([clip.id, other.id, call.id]);
  });

  it('numbers files with as many digits as the count needs (at least two)', () => {
    const many = Array.from({ length: 100 }, (_, i) => ({
      item: evidenceRow({ id: uuid(100 + i) }),
    }));
    const paths = planBundle(input(many)).manifest.files.map((f) => f.path);
    expect(paths[0]).toBe(`files/001-${uuid(100)}.mp3`);
    expect(paths[99]).toBe(`files/100-${uuid(199)}.mp3`);
  });

  it('describes a segment cut by its parent, and points its entry at the cut, not the original', () => {
    const plan = planBundle(input(selection()));
    const f = plan.manifest.files.find((x) => x.segment?.segmentId === late.id)!;
    const cut = cutRow(late, clip);
    expect(f).toMatchObject({
      type: 'segment',
      itemId: clip.id,
      sha256: cut.sha256,
      size: 400,
      contentType: 'video/mp4',
      segment: {
        orderId: 'ORD-2',
        startSec: 4,
        endSec: 8,
        cutStartSec: 4,
        cutEndSec: 8,
        method: 'copy',
        parentItemId: clip.id,
        parentSha256: clip.sha256,
        parentSize: clip.size_bytes,
        parentContentType: 'video/quicktime',
      },
    });
    expect(plan.entries.find((e) => e.path === f.path)).toEqual({
      path: f.path,
      blobKey: cut.blob_key,
      size: 400,
      sha256: cut.sha256,
    });
    expect(plan.entries.find((e) => e.path.endsWith('.mp3'))!.blobKey).toBe(call.blob_key);
    expect(plan.totalBytes).toBe(1000 + 400 + 400);
    expect(plan.manifest).toMatchObject({ fileCount: 3, totalBytes: 1800 });
  });

  it('signs the manifest and SHA256SUMS, which lists every file of the ZIP but itself and its signature', () => {
    const plan = planBundle(input(selection()));
    const key = loadPublicKey(plan.texts[PUBLIC_KEY]!);
    expect(verifySignature(key, plan.manifestText, plan.texts[MANIFEST_SIG]!)).toBe(true);
    expect(verifySignature(key, plan.texts[SUMS]!, plan.texts[SUMS_SIG]!)).toBe(true);
    expect(verifySignature(key, `${plan.manifestText} `, plan.texts[MANIFEST_SIG]!)).toBe(false);
    expect(plan.manifestSha256).toBe(sha256(plan.manifestText));
    expect(JSON.parse(plan.manifestText)).toEqual(plan.manifest);

    const sums = parseSums(plan.texts[SUMS]!) as Map<string, string>;
    expect([...sums.keys()]).toEqual([
      ...plan.entries.map((e) => e.path),
      MANIFEST,
      MANIFEST_SIG,
      PUBLIC_KEY,
      AUDIT,
      VERIFY,
    ]);
    for (const e of plan.entries) expect(sums.get(e.path)).toBe(e.sha256);
    expect(sums.get(MANIFEST)).toBe(plan.manifestSha256);
    // The signature file holds the raw 64 bytes, so its checksum is of those, not of the base64.
    expect(sums.get(MANIFEST_SIG)).toBe(sha256(Buffer.from(plan.texts[MANIFEST_SIG]!, 'base64')));
    expect(sums.get(AUDIT)).toBe(sha256(plan.texts[AUDIT]!));
    expect(sums.get(VERIFY)).toBe(sha256(plan.texts[VERIFY]!));
  });

  it('records the audit excerpt and the checkpoint it ends at, and says so in VERIFY.txt', () => {
    const i = input(selection());
    const plan = planBundle(i);
    expect(plan.texts[AUDIT]).toBe(i.excerpt.text);
    expect(plan.manifest.auditExcerpt).toMatchObject({
      path: AUDIT,
      sha256: sha256(i.excerpt.text),
      size: Buffer.byteLength(i.excerpt.text),
      events: 2,
      firstSeq: 5,
      lastSeq: 9,
    });
    expect(plan.manifest.checkpoint).toEqual(i.checkpoint);
    expect(plan.texts[VERIFY]).toContain(TEST_SIGNING_KEY.fingerprint);
    expect(plan.texts[VERIFY]).toContain(i.bundleId);
  });

  it('keeps the selection, the omitted items and the complaint as given', () => {
    const omitted = [{ itemId: uuid(4), reason: 'deleted' as const, deletedAt: 'x' }];
    const plan = planBundle(
      input([{ item: call }], {
        selection: { mode: 'all_linked', itemIds: [], segmentIds: [] },
        omitted,
        complaint: undefined,
      }),
    );
    expect(plan.manifest).toMatchObject({
      bundleId: uuid(1, 'bbbbbbbb'),
      createdAt: '2026-02-01T12:34:56.789Z',
      createdBy: { keyId: 'key-sup', role: 'support', name: 'Sam' },
      complaintId: 'CMP-7',
      complaint: null,
      selection: { mode: 'all_linked', itemIds: [], segmentIds: [] },
      omitted,
    });
    expect(planBundle(input([{ item: call }])).manifest.complaint).toMatchObject({
      id: 'CMP-7',
      orderIds: ['ORD-1', 'ORD-2'],
    });
  });

  it('gives the exact size of the ZIP the download streams', async () => {
    const plan = planBundle(input(selection()));
    const { size, stream } = buildZip(
      zipLayout(plan.manifestText, plan.texts, plan.entries, async (e) =>
        Readable.from([Buffer.alloc(e.size, 7)]),
      ),
      new Date('2026-02-01T12:34:56.789Z'),
    );
    let streamed = 0;
    for await (const chunk of stream) streamed += (chunk as Buffer).length;
    expect(size).toBe(plan.zipBytes);
    expect(streamed).toBe(plan.zipBytes);
  });
});
