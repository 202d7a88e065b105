import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import sharp from 'sharp';
import {
  CERTIFICATE,
  MANIFEST,
  parseSums,
  SUMS,
  VERIFY,
  sha256Hex,
} from '../../src/bundles/bundle-format';
import {
  planBundle,
  planCertifiedBundle,
  zipLayout,
  type BundlePlanInput,
  type BundleSelection,
} from '../../src/bundles/bundle-plan';
import { buildZip } from '../../src/bundles/bundle-zip';
import {
  buildCertificate,
  NO_TIMESTAMP,
  type CertificatePreview,
} from '../../src/bundles/certificate';
import {
  complaintRow,
  cutRow,
  evidenceRow,
  segmentRow,
  TEST_SIGNING_KEY,
  uuid,
} from '../support/rows';

/**
 * certificate.pdf: the same bytes for the same bundle (it is listed in the signed SHA256SUMS, and a
 * bundle's bytes never change), and real text: pdftotext (poppler-utils) shows every hash.
 */
jest.setTimeout(60_000);
const run = promisify(execFile);

const complaint = complaintRow({ id: 'CMP-42', order_ids: ['ORD-1', 'ORD-2'] });
const call = evidenceRow({ id: uuid(3), complaint_ids: ['CMP-42'], call_id: '17.4' });
const clip = evidenceRow({
  id: uuid(2),
  kind: 'packing_video',
  content_type: 'video/mp4',
  original_filename: 'clip.mp4',
  captured_at: new Date('2026-01-09T09:00:00Z'),
  order_ids: ['ORD-1', 'ORD-2'],
});
const photo = evidenceRow({
  id: uuid(4),
  kind: 'photo',
  content_type: 'image/jpeg',
  original_filename: 'parcel.jpg',
  captured_at: new Date('2026-01-11T09:00:00Z'),
  order_ids: ['ORD-2'],
});
const seg = segmentRow({
  id: uuid(10),
  item_id: clip.id,
  order_id: 'ORD-1',
  start_sec: '0',
  end_sec: '4',
});
const files = (): BundleSelection[] => [
  { item: call },
  { item: clip },
  { item: photo },
  { item: clip, segment: { row: seg, cut: cutRow(seg, clip) } },
];

function input(o: Partial<BundlePlanInput> = {}): BundlePlanInput {
  return {
    bundleId: uuid(1, 'bbbbbbbb'),
    createdAt: new Date('2026-02-01T12:34:56.789Z'),
    createdBy: { keyId: 'key-sup', role: 'support', name: 'Sam' },
    complaintId: 'CMP-42',
    complaint,
    selection: { mode: 'all_linked', itemIds: [], segmentIds: [] },
    omitted: [],
    files: files(),
    checkpoint: {
      checkpoint: {
        version: 1,
        type: 'evidence-archive.audit-checkpoint',
        seq: 9,
        hash: 'a'.repeat(64),
        signedAt: '2026-02-01T12:34:56.000Z',
        keyFingerprint: TEST_SIGNING_KEY.fingerprint,
        previous: null,
      },
      signature: 'c2ln',
      objectKey: 'checkpoints/9.json',
    },
    excerpt: { text: '', count: 0, firstSeq: null, lastSeq: null },
    signer: TEST_SIGNING_KEY,
    ...o,
  };
}

let dir: string;
let previews: Record<string, CertificatePreview>;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'certificate-'));
  const poster = await sharp({
    create: { width: 320, height: 180, channels: 3, background: { r: 40, g: 90, b: 160 } },
  })
    .jpeg()
    .toBuffer();
  // ffmpeg's waveforms are RGBA PNGs: pdfkit decodes those asynchronously.
  const waveform = await sharp({
    create: {
      width: 400,
      height: 80,
      channels: 4,
      background: { r: 43, g: 108, b: 176, alpha: 0.5 },
    },
  })
    .png()
    .toBuffer();
  previews = {
    [clip.id]: { kind: 'poster', bytes: poster },
    [call.id]: { kind: 'waveform', bytes: waveform },
    // the photo's thumbnail is not made: "no preview"
  };
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function pdfText(pdf: Buffer): Promise<string> {
  const file = path.join(dir, `${sha256Hex(pdf)}.pdf`);
  await writeFile(file, pdf);
  return (await run('pdftotext', ['-layout', file, '-'])).stdout;
}

describe('certificate.pdf', () => {
  it('is the same bytes for the same bundle, whatever the order the files were loaded in', async () => {
    const a = await planCertifiedBundle(input(), { previews });
    const b = await planCertifiedBundle(input({ files: files().reverse() }), { previews });
    expect(a.texts[CERTIFICATE]).toBeDefined();
    expect(b.texts[CERTIFICATE]).toBe(a.texts[CERTIFICATE]);
    expect(b).toEqual(a);
    const pdf = Buffer.from(a.texts[CERTIFICATE]!, 'base64');
    expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
    // Its dates are the bundle's, its ID follows from them and the bundle's id: nothing of now.
    const info = (await run('pdfinfo', ['-isodates', await save(pdf)])).stdout;
    expect(info).toMatch(/CreationDate:\s+2026-02-01T12:34:56/);
    expect(info).toMatch(/ModDate:\s+2026-02-01T12:34:56/);
    const other = await planCertifiedBundle(input({ bundleId: uuid(2, 'bbbbbbbb') }), { previews });
    expect(other.texts[CERTIFICATE]).not.toBe(a.texts[CERTIFICATE]);
    const id = (p: Buffer) => /\/ID \[<([0-9a-f]+)>/.exec(p.toString('latin1'))?.[1];
    expect(id(pdf)).toMatch(/^[0-9a-f]{32}$/);
    expect(id(Buffer.from(other.texts[CERTIFICATE]!, 'base64'))).not.toBe(id(pdf));
  });

  it('shows the complaint, the orders, every SHA-256, the key and the time it does not carry, as text', async () => {
    const plan = await planCertifiedBundle(input(), { previews });
    const text = await pdfText(Buffer.from(plan.texts[CERTIFICATE]!, 'base64'));
    expect(text).toContain('CMP-42');
    expect(text).toContain('ORD-1, ORD-2');
    expect(plan.manifest.files).toHaveLength(4);
    for (const f of plan.manifest.files) {
      expect(text).toContain(f.sha256);
      expect(text).toContain(f.path);
    }
    expect(text).toContain(TEST_SIGNING_KEY.fingerprint);
    expect(text).toContain(NO_TIMESTAMP);
    expect(text).toContain('2026-01-09 09:00:00 UTC'); // the clip's capture
    expect(text).toContain('1,000 bytes');
    // One file has no preview made (the photo); the others show theirs.
    expect(text.match(/no preview/g)).toHaveLength(1);
    expect(text).toContain('sha256sum -c SHA256SUMS');
    expect(text).toContain('openssl pkeyutl -verify');
    expect(text).toContain('npm run verify-bundle');
    // One page for a handful of files.
    expect(text.split('\f').filter((p) => p.trim()).length).toBe(1);
  });

  it('names the timestamp authority and its time when one stamped the bundle', async () => {
    const { manifest } = planBundle(input());
    const pdf = await buildCertificate({
      manifest,
      previews: {},
      timestamp: { authority: 'Test TSA', time: '2026-02-01T12:35:01Z' },
    });
    const text = await pdfText(pdf);
    expect(text).toContain('Test TSA, 2026-02-01 12:35:01 UTC');
    expect(text).not.toContain(NO_TIMESTAMP);
    expect(text.match(/no preview/g)).toHaveLength(4);
  });

  it('takes as many pages as the files need, every hash still text', async () => {
    const many = Array.from({ length: 30 }, (_, i) => ({
      item: evidenceRow({ id: uuid(100 + i) }),
    }));
    const plan = await planCertifiedBundle(input({ files: many }), { previews: {} });
    const text = await pdfText(Buffer.from(plan.texts[CERTIFICATE]!, 'base64'));
    for (const f of plan.manifest.files) expect(text).toContain(f.sha256);
    expect(text.split('\f').filter((p) => p.trim()).length).toBeGreaterThan(1);
  });

  it('shows "no preview" for an image it cannot read, rather than failing the bundle', async () => {
    const { manifest } = planBundle(input());
    const broken = { kind: 'poster' as const, bytes: Buffer.from('not an image') };
    const pdf = await buildCertificate({ manifest, previews: { [clip.id]: broken } });
    expect((await pdfText(pdf)).match(/no preview/g)).toHaveLength(4);
  });

  it('is in the ZIP after VERIFY.txt and listed in SHA256SUMS, so sha256sum -c covers it', async () => {
    const without = planBundle(input());
    const plan = await planCertifiedBundle(input(), { previews });
    // The manifest (format version 1) is the same: only SHA256SUMS, its signature and the ZIP grow.
    expect(plan.manifestText).toBe(without.manifestText);
    expect(without.texts[CERTIFICATE]).toBeUndefined();
    const pdf = Buffer.from(plan.texts[CERTIFICATE]!, 'base64');
    const sums = parseSums(plan.texts[SUMS]!) as Map<string, string>;
    expect(sums.get(CERTIFICATE)).toBe(sha256Hex(pdf));
    expect([...sums.keys()].slice(-2)).toEqual([VERIFY, CERTIFICATE]);
    expect(sums.size).toBe((parseSums(without.texts[SUMS]!) as Map<string, string>).size + 1);
    const layout = zipLayout(plan.manifestText, plan.texts, plan.entries, async (e) =>
      Readable.from([Buffer.alloc(e.size, 7)]),
    );
    expect(layout.slice(0, 3).map((e) => e.path)).toEqual([VERIFY, CERTIFICATE, MANIFEST]);
    expect((layout[1] as { data: Buffer }).data.equals(pdf)).toBe(true);
    const { size, stream } = buildZip(layout, input().createdAt);
    let streamed = 0;
    for await (const chunk of stream) streamed += (chunk as Buffer).length;
    expect(streamed).toBe(plan.zipBytes);
    expect(size).toBe(plan.zipBytes);
    // A stored file entry costs its bytes, a local header (30 + name) and a directory entry (46 +
    // name); SHA256SUMS grows by one line of the same layout.
    const line = `${sha256Hex(pdf)}  ${CERTIFICATE}\n`.length;
    expect(plan.zipBytes - without.zipBytes).toBe(
      pdf.length + 30 + 46 + 2 * CERTIFICATE.length + line,
    );
  });
});

async function save(pdf: Buffer): Promise<string> {
  const file = path.join(dir, `info-${sha256Hex(pdf)}.pdf`);
  await writeFile(file, pdf);
  return file;
}
