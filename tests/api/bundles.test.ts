import { execFile } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import request from 'supertest';
import { createDb } from '../../src/db/database';
import {
  auditEvents,
  bearer,
  DRIVERS,
  startTestApp,
  tamperWithBlob,
  type Driver,
  type TestApp,
} from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { getBytes, MediaFiles } from '../support/media-files';
import { upload } from '../support/multipart';
import { shell, verifyCli } from '../support/bundle-cli';
import { extractTo, unzipToMemory, zipEntries } from '../support/zip';

jest.setTimeout(120_000);

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');
const FIXED = [
  'VERIFY.txt',
  'certificate.pdf',
  'manifest.json',
  'manifest.json.sig',
  'SHA256SUMS',
  'SHA256SUMS.sig',
  'public-key.pem',
  'audit.jsonl',
];

describe.each(DRIVERS)('dispute bundles (%s store)', (driver: Driver) => {
  let app: TestApp;
  const files = new MediaFiles();
  const work = mkdtempSync(path.join(tmpdir(), 'bundle-test-'));
  const ids: { call: string; clip: string; photo: string; other: string; gone: string } = {
    call: '',
    clip: '',
    photo: '',
    other: '',
    gone: '',
  };
  const bytes: Record<string, Buffer> = {};
  let segmentId = '';
  let otherOrderSegmentId = '';

  const post = (complaintId: string, body: unknown, key = app.keys.support) =>
    request(app.url)
      .post(`/v1/complaints/${complaintId}/bundles`)
      .set(bearer(key))
      .send(body as object);
  const put = (complaintId: string, body: object) =>
    request(app.url).put(`/v1/complaints/${complaintId}`).set(bearer(app.keys.support)).send(body);
  const archive = async (
    content: Buffer,
    fields: [string, string][],
    filename: string,
  ): Promise<string> => {
    const res = await upload(app.url, app.keys.ingest.key, fields, { filename, content });
    expect(res.status).toBe(201);
    const id = res.json().id as string;
    bytes[id] = content;
    return id;
  };
  const download = (id: string) => getBytes(app, `/v1/bundles/${id}/content`);
  const bundleRows = async () =>
    Number(
      (
        await app.ctx.db
          .selectFrom('bundles')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const events = (action: string) => auditEvents(app, action);

  beforeAll(async () => {
    app = await startTestApp(driver);
    expect((await put('C-1', { status: 'open', orderIds: ['ORD-1'] })).status).toBe(201);
    ids.call = await archive(
      fakeMedia('wav', 200_000),
      [
        ['kind', 'call_recording'],
        ['complaintId', 'C-1'],
        ['callId', 'CALL-9'],
        ['fromNumber', '+442071838750'],
        ['direction', 'inbound'],
        ['capturedAt', '2026-11-20T10:00:00Z'],
        ['source', 'asterisk'],
      ],
      'call.wav',
    );
    ids.clip = await archive(
      files.mov(8, '320x240'),
      [
        ['kind', 'packing_video'],
        ['complaintId', 'C-1'],
        ['stationId', 'PK-03'],
        ['capturedAt', '2026-11-19T08:00:00Z'],
        [
          'segments',
          JSON.stringify([
            { orderId: 'ORD-1', trackingNumber: '1Z999', startSec: 2, endSec: 5 },
            { orderId: 'ORD-2', startSec: 5, endSec: 8 },
          ]),
        ],
      ],
      'shift.mov',
    );
    // Linked through the complaint's order only: the complaint's, but not "linked directly".
    ids.photo = await archive(
      fakeMedia('jpeg', 5_000),
      [
        ['kind', 'photo'],
        ['orderId', 'ORD-1'],
        ['capturedAt', '2026-11-21T09:00:00Z'],
      ],
      'box.jpg',
    );
    ids.other = await archive(
      fakeMedia('mp4', 10_000),
      [
        ['kind', 'packing_video'],
        ['complaintId', 'C-OTHER'],
      ],
      'other.mp4',
    );
    ids.gone = await archive(
      fakeMedia('mp4', 10_000),
      [
        ['kind', 'packing_video'],
        ['complaintId', 'C-1'],
      ],
      'gone.mp4',
    );
    const del = await request(app.url)
      .delete(`/v1/evidence/${ids.gone}`)
      .set(bearer(app.keys.admin))
      .send({ reason: 'recorded the wrong bench' });
    expect(del.status).toBe(200);
    const item = await request(app.url)
      .get(`/v1/evidence/${ids.clip}`)
      .set(bearer(app.keys.support));
    segmentId = item.body.segments.find((s: { orderId: string }) => s.orderId === 'ORD-1').id;
    otherOrderSegmentId = item.body.segments.find(
      (s: { orderId: string }) => s.orderId === 'ORD-2',
    ).id;
  });

  afterAll(async () => {
    await app.close();
    files.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it('bundles every item linked to the complaint, the same bytes on every download, checkable with sha256sum and openssl', async () => {
    const before = (await events('bundle.create')).length;
    const created = await post('C-1', {});
    expect(created.status).toBe(201);
    const b = created.body;
    expect(created.headers.location).toBe(`/v1/bundles/${b.id}`);
    expect(b).toMatchObject({
      complaintId: 'C-1',
      createdBy: { keyId: app.keys.support.id, role: 'support', name: 'Agent Ana' },
      fileCount: 2,
      totalBytes: bytes[ids.call]!.length + bytes[ids.clip]!.length,
      downloadUrl: `/v1/bundles/${b.id}/content`,
    });
    expect(b.manifestSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(
      (await request(app.url).get(`/v1/bundles/${b.id}`).set(bearer(app.keys.admin))).body,
    ).toEqual(b);

    const first = await download(b.id);
    expect(first.status).toBe(200);
    expect(first.headers['content-type']).toBe('application/zip');
    expect(first.headers['content-disposition']).toBe(
      `attachment; filename="bundle-C-1-${b.id}.zip"`,
    );
    expect(Number(first.headers['content-length'])).toBe(b.zipBytes);
    expect(first.body.length).toBe(b.zipBytes);
    expect(first.headers.etag).toBe(`"${b.manifestSha256}"`);
    const second = await download(b.id);
    expect(sha256(second.body)).toBe(sha256(first.body));

    const entries = await unzipToMemory(first.body);
    const names = [...entries.keys()];
    expect(names.slice(0, FIXED.length)).toEqual(FIXED);
    const manifest = JSON.parse(entries.get('manifest.json')!.toString('utf8'));
    expect(sha256(entries.get('manifest.json')!)).toBe(b.manifestSha256);
    // Oldest capture first; each file is the archived bytes.
    expect(manifest.files.map((f: { itemId: string }) => f.itemId)).toEqual([ids.clip, ids.call]);
    for (const f of manifest.files) {
      expect(entries.get(f.path)).toEqual(bytes[f.itemId]);
      expect(f.sha256).toBe(sha256(bytes[f.itemId]!));
      expect(f.size).toBe(bytes[f.itemId]!.length);
    }
    expect(names.slice(FIXED.length).sort()).toEqual(
      manifest.files.map((f: { path: string }) => f.path).sort(),
    );
    const call = manifest.files.find((f: { itemId: string }) => f.itemId === ids.call);
    expect(call).toMatchObject({
      type: 'original',
      kind: 'call_recording',
      contentType: 'audio/wav',
      capturedAt: '2026-11-20T10:00:00.000Z',
      source: 'asterisk',
      callId: 'CALL-9',
      direction: 'inbound',
      complaintIds: ['C-1'],
    });
    expect(call.path).toMatch(new RegExp(`^files/\\d{2}-${ids.call}\\.wav$`));
    expect(manifest).toMatchObject({
      format: 'evidence-archive.dispute-bundle',
      version: 1,
      bundleId: b.id,
      complaintId: 'C-1',
      complaint: { id: 'C-1', status: 'open', orderIds: ['ORD-1'] },
      selection: { mode: 'all_linked' },
      fileCount: 2,
      omitted: [{ itemId: ids.gone, reason: 'deleted', deletedAt: expect.any(String) }],
    });

    // The key: the archive's, as published.
    const published = (await request(app.url).get('/v1/custody/public-key')).body;
    expect(entries.get('public-key.pem')!.toString()).toBe(published.publicKeyPem);
    expect(manifest.signing.publicKeyFingerprint).toBe(published.fingerprint);

    // The checkpoint covers the newest event of these items: every excerpt event is at or before it.
    const excerpt = entries
      .get('audit.jsonl')!
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const seqs = excerpt.map((e: { seq: number }) => e.seq);
    const cp = manifest.checkpoint.checkpoint;
    expect(Math.max(...seqs)).toBeLessThanOrEqual(cp.seq);
    await app.ctx.audit.settle(); // every event answered, linked
    const newestOfItems = await app.ctx.db
      .selectFrom('audit_events')
      .select((eb) => eb.fn.max('seq').as('seq'))
      .where('seq', '<', (await events('bundle.create')).at(-1)!.seq)
      .executeTakeFirstOrThrow();
    expect(cp.seq).toBe(Number(newestOfItems.seq));
    expect(excerpt.map((e: { action: string }) => e.action)).toEqual(
      expect.arrayContaining(['complaint.write', 'evidence.create']),
    );
    for (const e of excerpt) {
      expect(
        e.itemIds.includes(ids.call) || e.itemIds.includes(ids.clip) || e.complaintId === 'C-1',
      ).toBe(true);
    }
    expect(manifest.auditExcerpt).toMatchObject({
      path: 'audit.jsonl',
      sha256: sha256(entries.get('audit.jsonl')!),
      events: excerpt.length,
    });
    expect(cp.keyFingerprint).toBe(published.fingerprint);

    // VERIFY.txt's own commands, run as written, on the unpacked bundle.
    const dir = path.join(work, `good-${b.id}`);
    extractTo(dir, entries);
    const verifyTxt = entries.get('VERIFY.txt')!.toString('utf8');
    const commands = verifyTxt
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => /^(openssl|sha256sum) /.test(l));
    expect(commands).toHaveLength(4);
    const [fingerprintCmd, ...checks] = commands;
    const fp = shell(fingerprintCmd!, dir);
    expect(fp.code).toBe(0);
    expect(fp.out).toContain(published.fingerprint);
    expect(verifyTxt).toContain(published.fingerprint);
    for (const cmd of checks) {
      const r = shell(cmd, dir);
      expect({ cmd, code: r.code }).toEqual({ cmd, code: 0 });
      if (cmd.startsWith('openssl')) expect(r.out).toContain('Signature Verified Successfully');
    }
    const sums = shell('sha256sum -c SHA256SUMS', dir).out;
    for (const f of [...names.filter((n) => !n.startsWith('SHA256SUMS'))]) {
      expect(sums).toContain(`${f}: OK`);
    }

    // The same commands fail on a changed byte and on an edited manifest.
    const evidenceFile = path.join(dir, manifest.files[0].path);
    const original = readFileSync(evidenceFile);
    const flipped = Buffer.from(original);
    flipped[flipped.length - 1] = flipped[flipped.length - 1]! ^ 1;
    writeFileSync(evidenceFile, flipped);
    expect(shell('sha256sum -c SHA256SUMS', dir).code).not.toBe(0);
    writeFileSync(evidenceFile, original);
    writeFileSync(
      path.join(dir, 'manifest.json'),
      entries.get('manifest.json')!.toString().replace('"source": "asterisk"', '"source": "other"'),
    );
    const edited = shell(checks[0]!, dir);
    expect(edited.code).not.toBe(0);
    expect(edited.out).not.toContain('Signature Verified Successfully');

    // Creation and both downloads are in the trail, with the bundle and its items.
    const created_ = (await events('bundle.create')).slice(before);
    expect(created_).toHaveLength(1);
    expect(created_[0]).toMatchObject({
      outcome: 'success',
      complaint_id: 'C-1',
      actor_key_id: app.keys.support.id,
      details: expect.objectContaining({ bundleId: b.id, manifestSha256: b.manifestSha256 }),
    });
    expect([...created_[0]!.item_ids].sort()).toEqual([ids.call, ids.clip].sort());
    const downloads = (await events('bundle.download')).filter(
      (e) => (e.details as { bundleId?: string }).bundleId === b.id,
    );
    expect(downloads).toHaveLength(2);
    expect(downloads[0]).toMatchObject({ outcome: 'success', complaint_id: 'C-1' });
    // ...and visible in each item's custody history.
    const trail = await request(app.url)
      .get(`/v1/evidence/${ids.call}/audit`)
      .set(bearer(app.keys.support));
    expect(trail.body.events.map((e: { action: string }) => e.action)).toEqual(
      expect.arrayContaining(['bundle.create', 'bundle.download']),
    );

    // A bundle is a record: the service's database role may not change it, nor may the owner.
    await expect(
      app.ctx.db
        .updateTable('bundles')
        .set({ complaint_id: 'C-X' })
        .where('id', '=', b.id)
        .execute(),
    ).rejects.toThrow(/permission denied|never changed/);
    const owner = createDb(app.databaseUrl, 1);
    try {
      await expect(owner.deleteFrom('bundles').where('id', '=', b.id).execute()).rejects.toThrow(
        /never changed/,
      );
    } finally {
      await owner.destroy();
    }
  });

  it('carries certificate.pdf, listed in SHA256SUMS, served by its own route with the same bytes', async () => {
    // The clip's poster is made (the call's fake WAV gets no waveform: "no preview").
    await app.ctx.media.process(ids.clip);
    const poster = await app.ctx.db
      .selectFrom('derivatives')
      .select('status')
      .where('item_id', '=', ids.clip)
      .where('kind', '=', 'poster')
      .executeTakeFirst();
    expect(poster?.status).toBe('ready');
    const created = await post('C-1', {});
    expect(created.status).toBe(201);
    const b = created.body;
    const zip = await download(b.id);
    expect(zip.status).toBe(200);
    const entries = await unzipToMemory(zip.body);
    const pdf = entries.get('certificate.pdf')!;
    expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
    const sums = entries.get('SHA256SUMS')!.toString('utf8');
    expect(sums).toContain(`${sha256(pdf)}  certificate.pdf\n`);
    const dir = path.join(work, `certificate-${b.id}`);
    extractTo(dir, entries);
    const check = shell('sha256sum -c SHA256SUMS', dir);
    expect(check.code).toBe(0);
    expect(check.out).toContain('certificate.pdf: OK');
    writeFileSync(path.join(work, `certificate-${b.id}.zip`), zip.body);
    const verified = await verifyCli([path.join(work, `certificate-${b.id}.zip`)]);
    expect({ code: verified.code, out: verified.out }).toEqual({ code: 0, out: verified.out });

    // What a reviewer reads: every hash, the complaint, the key, and no third-party time (yet).
    const manifest = JSON.parse(entries.get('manifest.json')!.toString('utf8'));
    const text = (await run('pdftotext', ['-layout', path.join(dir, 'certificate.pdf'), '-']))
      .stdout;
    expect(text).toContain('C-1');
    expect(text).toContain('ORD-1');
    expect(text).toContain(manifest.signing.publicKeyFingerprint);
    for (const f of manifest.files) expect(text).toContain(f.sha256);
    expect(text).toContain('no timestamp authority configured');
    expect(text.match(/no preview/g)).toHaveLength(1);

    // The route: the same bytes, a PDF, its hash as ETag, ranges, and every download recorded.
    const before = (await events('bundle.download')).length;
    const got = await getBytes(app, `/v1/bundles/${b.id}/certificate.pdf`);
    expect(got.status).toBe(200);
    expect(got.headers['content-type']).toBe('application/pdf');
    expect(got.headers['content-disposition']).toBe(
      `attachment; filename="certificate-C-1-${b.id}.pdf"`,
    );
    expect(got.headers.etag).toBe(`"${sha256(pdf)}"`);
    expect(Buffer.compare(got.body, pdf)).toBe(0);
    const part = await getBytes(app, `/v1/bundles/${b.id}/certificate.pdf`, {
      Range: 'bytes=0-99',
    });
    expect(part.status).toBe(206);
    expect(Buffer.compare(part.body, pdf.subarray(0, 100))).toBe(0);
    const recorded = (await events('bundle.download')).slice(before);
    expect(recorded).toHaveLength(2);
    expect(recorded[0]).toMatchObject({
      outcome: 'success',
      complaint_id: 'C-1',
      details: expect.objectContaining({ bundleId: b.id, file: 'certificate.pdf' }),
    });

    // docs/bundles.md's certificate commands, run as written.
    const page = readFileSync(path.join(ROOT, 'docs', 'bundles.md'), 'utf8');
    const block = /```sh\n([\s\S]*?)```/.exec(
      page.slice(page.indexOf('**The certificate.**')),
    )?.[1];
    expect(block).toContain('pdftotext');
    const docDir = mkdtempSync(path.join(work, 'certificate-doc-'));
    // Not spawnSync: the service answers from this very process.
    const shown = await run(
      'bash',
      [
        '-e',
        '-c',
        block!.replaceAll('http://127.0.0.1:8080', app.url).replaceAll('<bundle id>', b.id),
      ],
      { cwd: docDir, env: { ...process.env, SUPPORT: app.keys.support.key } },
    );
    expect(readFileSync(path.join(docDir, 'certificate.pdf')).equals(pdf)).toBe(true);
    for (const f of manifest.files) expect(shown.stdout).toContain(f.sha256);

    // The bundle's permissions: an ingest key reads none; an unknown bundle is 404.
    const refused = await request(app.url)
      .get(`/v1/bundles/${b.id}/certificate.pdf`)
      .set(bearer(app.keys.ingest));
    expect(refused.status).toBe(403);
    const unknown = await request(app.url)
      .get(`/v1/bundles/00000000-0000-4000-8000-000000000000/certificate.pdf`)
      .set(bearer(app.keys.support));
    expect(unknown.status).toBe(404);
    // A bundle made before bundles carried a certificate (its stored files without one): 404.
    const row = await app.ctx.db
      .selectFrom('bundles')
      .selectAll()
      .where('id', '=', b.id)
      .executeTakeFirstOrThrow();
    const { 'certificate.pdf': _pdf, ...olderTexts } = row.texts;
    const older = '00000000-0000-4000-8000-0000000000ce';
    await app.ctx.db
      .insertInto('bundles')
      .values({
        ...row,
        id: older,
        texts: JSON.stringify(olderTexts),
        entries: JSON.stringify(row.entries),
      })
      .execute();
    const none = await request(app.url)
      .get(`/v1/bundles/${older}/certificate.pdf`)
      .set(bearer(app.keys.support));
    expect(none.status).toBe(404);
    expect(none.body.detail).toContain('made before bundles carried a certificate.pdf');
  });

  it('bundles selected items and a segment cut (made on demand), recording the parent and offsets', async () => {
    const res = await post('C-1', { itemIds: [ids.photo], segmentIds: [segmentId] });
    expect(res.status).toBe(201);
    expect(res.body.fileCount).toBe(2);
    const zip = (await download(res.body.id)).body;
    const entries = await unzipToMemory(zip);
    const manifest = JSON.parse(entries.get('manifest.json')!.toString('utf8'));
    expect(manifest.selection).toEqual({
      mode: 'selected',
      itemIds: [ids.photo],
      segmentIds: [segmentId],
    });
    const seg = manifest.files.find((f: { type: string }) => f.type === 'segment');
    expect(seg.path).toMatch(new RegExp(`^files/\\d{2}-segment-${segmentId}\\.mov$`));
    expect(seg).toMatchObject({
      itemId: ids.clip,
      contentType: 'video/quicktime',
      segment: {
        segmentId,
        orderId: 'ORD-1',
        trackingNumber: '1Z999',
        startSec: 2,
        endSec: 5,
        parentItemId: ids.clip,
        parentSha256: sha256(bytes[ids.clip]!),
        parentSize: bytes[ids.clip]!.length,
      },
    });
    // The cut in the bundle is the cut the archive serves, and not the whole recording.
    const served = await getBytes(app, `/v1/evidence/${ids.clip}/content?segment=${segmentId}`);
    expect(served.status).toBe(200);
    expect(entries.get(seg.path)).toEqual(served.body);
    expect(seg.sha256).toBe(sha256(served.body));
    expect(seg.size).toBeLessThan(bytes[ids.clip]!.length);
    const photo = manifest.files.find((f: { itemId: string }) => f.itemId === ids.photo);
    expect(photo.path).toMatch(/\.jpg$/);
    expect(entries.get(photo.path)).toEqual(bytes[ids.photo]);
    // The excerpt covers the recording the segment was cut from.
    const excerpt = entries.get('audit.jsonl')!.toString('utf8');
    expect(excerpt).toContain(ids.clip);
  });

  it('verify-bundle passes a good bundle and fails a swapped file, an edited manifest and a wrong key', async () => {
    const res = await post('C-1', {});
    const zip = (await download(res.body.id)).body;
    const published = (await request(app.url).get('/v1/custody/public-key')).body;
    const keyFile = path.join(work, `archive-${res.body.id}.pem`);
    writeFileSync(keyFile, published.publicKeyPem);
    const good = path.join(work, `good-${res.body.id}.zip`);
    writeFileSync(good, zip);

    const ok = await verifyCli([good, '--public-key', keyFile]);
    expect(ok.out).toContain('OK: both signatures are valid');
    expect(ok.code).toBe(0);
    const embedded = await verifyCli([good]);
    expect(embedded.code).toBe(0);
    expect(embedded.out).toContain('WARNING');
    expect(embedded.out).toContain(published.fingerprint);

    const entries = await unzipToMemory(zip);
    const manifest = JSON.parse(entries.get('manifest.json')!.toString('utf8'));
    const tampered = async (name: string, change: (m: Map<string, Buffer>) => void) => {
      const copy = new Map(entries);
      change(copy);
      const file = path.join(work, `${name}-${res.body.id}.zip`);
      writeFileSync(file, await zipEntries(copy));
      return file;
    };

    // Two evidence files swapped: every name is still there, the bytes are not where they were.
    const [a, b] = manifest.files.map((f: { path: string }) => f.path);
    const swapped = await tampered('swapped', (m) => {
      m.set(a, entries.get(b)!);
      m.set(b, entries.get(a)!);
    });
    const r1 = await verifyCli([swapped, '--public-key', keyFile]);
    expect(r1.code).toBe(1);
    expect(r1.out).toContain(`${a}: SHA-256`);

    // One file replaced by other bytes of the same length.
    const replaced = await tampered('replaced', (m) => {
      const fake = Buffer.from(entries.get(a)!);
      fake[100] = fake[100]! ^ 0xff;
      m.set(a, fake);
    });
    expect((await verifyCli([replaced, '--public-key', keyFile])).code).toBe(1);

    // The manifest edited (a capture time moved), its hash list updated to match: the signature fails.
    const edited = await tampered('edited', (m) => {
      const text = entries
        .get('manifest.json')!
        .toString()
        .replace(manifest.files[0].capturedAt, '2026-01-01T00:00:00.000Z');
      m.set('manifest.json', Buffer.from(text));
    });
    const r2 = await verifyCli([edited, '--public-key', keyFile]);
    expect(r2.code).toBe(1);
    expect(r2.out).toContain('manifest.json.sig is not a valid signature of manifest.json');

    // A file added that the manifest does not list.
    const extra = await tampered('extra', (m) =>
      m.set('files/99-extra.mp4', fakeMedia('mp4', 100)),
    );
    const r3 = await verifyCli([extra, '--public-key', keyFile]);
    expect(r3.code).toBe(1);
    expect(r3.out).toContain('not in manifest.json: files/99-extra.mp4');

    // A wrong key: checking the real bundle against another key fails...
    const other = generateKeyPairSync('ed25519');
    const otherFile = path.join(work, `other-${res.body.id}.pem`);
    writeFileSync(otherFile, other.publicKey.export({ type: 'spki', format: 'pem' }).toString());
    const r4 = await verifyCli([good, '--public-key', otherFile]);
    expect(r4.code).toBe(1);
    expect(r4.out).toContain('is not a valid signature');

    // ...and so does a forgery re-signed with another key and shipped with that key, when checked
    // against the archive's key; without it, the forger's fingerprint is what the report shows.
    const forged = await tampered('forged', (m) => {
      const text = Buffer.from(entries.get('manifest.json')!.toString().replace('"C-1"', '"C-1 "'));
      m.set('manifest.json', text);
      m.set('manifest.json.sig', sign(null, text, other.privateKey));
      m.set('public-key.pem', Buffer.from(other.publicKey.export({ type: 'spki', format: 'pem' })));
    });
    expect((await verifyCli([forged, '--public-key', keyFile])).code).toBe(1);
    const unchecked = await verifyCli([forged]);
    expect(unchecked.code).toBe(1); // the manifest still names the archive's key
    expect(unchecked.out).not.toContain(`fingerprint ${published.fingerprint}`);
  });

  it('refuses bad requests with stable codes and stores nothing', async () => {
    const rows = await bundleRows();
    const expectProblem = async (
      res: request.Response,
      status: number,
      code: string,
    ): Promise<void> => {
      expect({ status: res.status, code: res.body.code }).toEqual({ status, code });
      expect(res.headers['content-type']).toContain('application/problem+json');
    };
    const unknown = '00000000-0000-4000-8000-000000000000';
    await expectProblem(await post('C-1', { itemIds: [unknown] }), 422, 'bundle_unknown_items');
    await expectProblem(await post('C-1', { segmentIds: [unknown] }), 422, 'bundle_unknown_items');
    await expectProblem(await post('C-1', { segmentIds: [ids.call] }), 422, 'bundle_unknown_items');
    await expectProblem(await post('C-1', { itemIds: [ids.gone] }), 422, 'bundle_item_deleted');
    await expectProblem(await post('C-1', { itemIds: [ids.other] }), 422, 'bundle_item_not_linked');
    // The long recording is linked to C-1's order, but this part of it is another customer's.
    await expectProblem(
      await post('C-1', { segmentIds: [otherOrderSegmentId] }),
      422,
      'bundle_item_not_linked',
    );
    await expectProblem(await post('C-NOPE', {}), 404, 'not_found');
    expect((await put('C-EMPTY', { status: 'open' })).status).toBe(201);
    await expectProblem(await post('C-EMPTY', {}), 422, 'bundle_empty');
    await expectProblem(await post('C-1', { itemIds: 'x' }), 400, 'validation_failed');
    await expectProblem(await post('C-1', { itemIds: [1, 2] }), 400, 'validation_failed');
    await expectProblem(
      await post('C-1', { itemIds: ['../../etc/passwd'] }),
      400,
      'validation_failed',
    );
    await expectProblem(await post('C-1', { orderIds: ['ORD-1'] }), 400, 'validation_failed');
    const huge = Array.from({ length: 1001 }, () => unknown);
    await expectProblem(await post('C-1', { itemIds: huge }), 400, 'validation_failed');
    await expectProblem(await post('C-1', [ids.call]), 400, 'validation_failed');
    await expectProblem(await post('x'.repeat(200), {}), 400, 'validation_failed');
    const notJson = await request(app.url)
      .post('/v1/complaints/C-1/bundles')
      .set(bearer(app.keys.support))
      .set('Content-Type', 'application/json')
      .send('{"itemIds": [');
    await expectProblem(notJson, 400, 'invalid_json');

    // Roles: ingest keys neither make nor read bundles; no key is 401.
    await expectProblem(await post('C-1', {}, app.keys.ingest), 403, 'forbidden');
    await expectProblem(
      await request(app.url).post('/v1/complaints/C-1/bundles').send({}),
      401,
      'unauthorized',
    );
    await expectProblem(
      await request(app.url).get(`/v1/bundles/${unknown}/content`).set(bearer(app.keys.support)),
      404,
      'not_found',
    );
    await expectProblem(
      await request(app.url).get('/v1/bundles/not-an-id').set(bearer(app.keys.support)),
      404,
      'not_found',
    );
    expect(await bundleRows()).toBe(rows);

    // The refusals are in the trail too.
    const refused = (await events('bundle.create')).filter((e) => e.outcome !== 'success');
    expect(refused.map((e) => e.outcome)).toEqual(expect.arrayContaining(['denied', 'failed']));

    const made = await post('C-1', {});
    expect(made.status).toBe(201);
    const url = `/v1/bundles/${made.body.id}/content`;
    await expectProblem(
      await request(app.url).get(url).set(bearer(app.keys.ingest)),
      403,
      'forbidden',
    );
    await expectProblem(await request(app.url).get(url), 401, 'unauthorized');
    await expectProblem(
      await request(app.url).get(`/v1/bundles/${made.body.id}`).set(bearer(app.keys.ingest)),
      403,
      'forbidden',
    );
    const denied = (await events('bundle.download')).filter((e) => e.outcome === 'denied');
    expect(denied.length).toBeGreaterThanOrEqual(2);
  });

  it('serves nothing of a bundle whose stored bytes are damaged or whose item was deleted since', async () => {
    const id = await archive(
      fakeMedia('mp4', 50_000),
      [
        ['kind', 'packing_video'],
        ['complaintId', 'C-LATE'],
      ],
      'late.mp4',
    );
    const made = await post('C-LATE', {});
    expect(made.status).toBe(201);
    const row = await app.ctx.db
      .selectFrom('evidence_items')
      .select('blob_key')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    await tamperWithBlob(app, row.blob_key, fakeMedia('mp4', 1_000));
    const damaged = await download(made.body.id);
    expect(damaged.status).toBe(500);
    expect(damaged.body.toString()).toContain('evidence_unavailable');

    await tamperWithBlob(app, row.blob_key, bytes[id]!);
    expect((await download(made.body.id)).status).toBe(200);
    const del = await request(app.url)
      .delete(`/v1/evidence/${id}`)
      .set(bearer(app.keys.admin))
      .send({ reason: 'test' });
    expect(del.status).toBe(200);
    const gone = await download(made.body.id);
    expect(gone.status).toBe(410);
    expect(gone.body.toString()).toContain('evidence_deleted');
    const goneCertificate = await getBytes(app, `/v1/bundles/${made.body.id}/certificate.pdf`);
    expect(goneCertificate.status).toBe(410);
    expect(goneCertificate.body.toString()).toContain('evidence_deleted');
    // The record of the bundle stays.
    expect(
      (await request(app.url).get(`/v1/bundles/${made.body.id}`).set(bearer(app.keys.support)))
        .status,
    ).toBe(200);
  });

  it('opens a bundle for a share link, recording the link in the download event', async () => {
    const made = await post('C-1', { itemIds: [ids.call] });
    const opened = await app.ctx.bundles.open(
      { keyId: null, role: 'share_link', name: 'share link L-1', clientIp: '203.0.113.9' },
      made.body.id,
      { shareLinkId: 'L-1', clientAddress: '203.0.113.9' },
    );
    const chunks: Buffer[] = [];
    for await (const c of opened.body) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).length).toBe(opened.size);
    expect(opened.size).toBe(made.body.zipBytes);
    expect(opened.filename).toBe(`bundle-C-1-${made.body.id}.zip`);
    const last = (await events('bundle.download')).at(-1)!;
    expect(last).toMatchObject({
      actor_role: 'share_link',
      actor_key_id: null,
      details: expect.objectContaining({
        bundleId: made.body.id,
        via: { shareLinkId: 'L-1', clientAddress: '203.0.113.9' },
      }),
    });
    // A key whose role may not read bundles is refused here too.
    await expect(
      app.ctx.bundles.open({ ...app.keys.ingest, keyId: app.keys.ingest.id }, made.body.id),
    ).rejects.toMatchObject({ code: 'forbidden' });
  });

  it('lists a complaint’s bundles, newest first', async () => {
    const first = await post('C-1', { itemIds: [ids.call] });
    const second = await post('C-1', { itemIds: [ids.clip] });
    const list = await request(app.url)
      .get('/v1/complaints/C-1/bundles')
      .set(bearer(app.keys.support));
    expect(list.status).toBe(200);
    const listed = list.body.items.map((b: { id: string }) => b.id);
    expect(listed.indexOf(second.body.id)).toBeLessThan(listed.indexOf(first.body.id));
    expect(list.body.items[0]).toMatchObject({
      complaintId: 'C-1',
      downloadUrl: expect.any(String),
    });
    const none = await request(app.url)
      .get('/v1/complaints/C-NONE/bundles')
      .set(bearer(app.keys.support));
    expect(none.body).toEqual({ complaintId: 'C-NONE', items: [] });
    expect(
      (await request(app.url).get('/v1/complaints/C-1/bundles').set(bearer(app.keys.ingest)))
        .status,
    ).toBe(403);
  });
});
