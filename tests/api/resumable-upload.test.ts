import { createHash } from 'node:crypto';
import {
  bearer,
  DRIVERS,
  settledStaging,
  startTestApp,
  storedKeys,
  type TestApp,
} from '../support/harness';
import { fakeMedia } from '../support/media';
import { AbortedUpload, refusal, tusUpload } from '../support/tus';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

async function leftovers(app: TestApp): Promise<string[]> {
  await settledStaging(app);
  return (await storedKeys(app)).filter(
    (k) => k.startsWith('resumable/') || k.startsWith('staging/'),
  );
}

async function content(app: TestApp, itemId: string): Promise<Buffer> {
  const res = await fetch(`${app.url}/v1/evidence/${itemId}/content`, {
    headers: bearer(app.keys.support),
  });
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

describe.each(DRIVERS)('resumable uploads (tus) on %s', (driver) => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp(driver);
  });
  afterAll(async () => {
    await app.close();
  });

  it('archives a chunked upload once every byte is in, with the fields of a multipart upload', async () => {
    const clip = fakeMedia('mp4', 12 * MiB + 12345);
    const result = await tusUpload(
      app.url,
      app.keys.ingest,
      clip,
      {
        filename: 'bench-3.mp4',
        kind: 'packing_video',
        orderId: 'ORD-T1,ORD-T2',
        stationId: 'PK-03',
        sha256: sha(clip),
      },
      { chunkSize: 3 * MiB },
    );
    expect(result.status).toBe('created');
    expect(result.digest).toBe(`sha-256=:${createHash('sha256').update(clip).digest('base64')}:`);
    const item = await fetch(`${app.url}/v1/evidence/${result.itemId}`, {
      headers: bearer(app.keys.support),
    }).then((r) => r.json());
    expect(item).toMatchObject({
      sha256: sha(clip),
      size: clip.length,
      contentType: 'video/mp4',
      originalFilename: 'bench-3.mp4',
      stationId: 'PK-03',
    });
    expect((await content(app, result.itemId!)).equals(clip)).toBe(true);
    const orders = await fetch(`${app.url}/v1/orders/ORD-T2/evidence`, {
      headers: bearer(app.keys.support),
    }).then((r) => r.json());
    expect(JSON.stringify(orders)).toContain(result.itemId);
    // HEAD after completion still names the item (a client whose last answer was lost).
    const head = await fetch(`${app.url}${new URL(result.url, app.url).pathname}`, {
      method: 'HEAD',
      headers: { ...bearer(app.keys.ingest), 'Tus-Resumable': '1.0.0' },
    });
    expect(head.status).toBe(200);
    expect(head.headers.get('upload-offset')).toBe(String(clip.length));
    expect(head.headers.get('evidence-item-id')).toBe(result.itemId);
    expect(await leftovers(app)).toEqual([]);
  });

  it('creation-with-upload archives a small file in one request', async () => {
    const call = fakeMedia('wav', 40_000);
    const result = await tusUpload(
      app.url,
      app.keys.ingest,
      call,
      { kind: 'call_recording', callId: 'tus-call-1', fromNumber: '+4930123456' },
      { uploadDataDuringCreation: true, chunkSize: 1 * MiB },
    );
    expect(result.status).toBe('created');
    expect((await content(app, result.itemId!)).equals(call)).toBe(true);
  });

  it('resumes an interrupted upload from the server offset', async () => {
    const clip = fakeMedia('mov', 7 * MiB);
    const meta = { kind: 'packing_video', orderId: 'ORD-RESUME' };
    const first = await tusUpload(app.url, app.keys.ingest, clip, meta, {
      chunkSize: 2 * MiB,
      abortAfter: 2 * MiB,
    }).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(AbortedUpload);
    const url = (first as AbortedUpload).url;
    const head = await fetch(new URL(url, app.url), {
      method: 'HEAD',
      headers: { ...bearer(app.keys.ingest), 'Tus-Resumable': '1.0.0' },
    });
    const offset = Number(head.headers.get('upload-offset'));
    expect(offset).toBeGreaterThanOrEqual(2 * MiB);
    expect(offset).toBeLessThan(clip.length);
    const resumed = await tusUpload(app.url, app.keys.ingest, clip, meta, {
      chunkSize: 2 * MiB,
      uploadUrl: new URL(url, app.url).href,
    });
    expect((await content(app, resumed.itemId!)).equals(clip)).toBe(true);
    expect(await leftovers(app)).toEqual([]);
  });

  it('terminates an upload on DELETE and keeps nothing of it', async () => {
    const clip = fakeMedia('mp4', 3 * MiB);
    const started = await tusUpload(
      app.url,
      app.keys.ingest,
      clip,
      { kind: 'packing_video' },
      {
        chunkSize: MiB,
        abortAfter: MiB,
      },
    ).catch((e: AbortedUpload) => e);
    const url = new URL(started.url, app.url);
    const tusHeaders = { ...bearer(app.keys.ingest), 'Tus-Resumable': '1.0.0' };
    // Not the owner: no such upload.
    const foreign = await fetch(url, {
      method: 'DELETE',
      headers: { ...bearer(app.keys.ingest2), 'Tus-Resumable': '1.0.0' },
    });
    expect(foreign.status).toBe(404);
    expect(foreign.headers.get('content-type')).toContain('application/problem+json');
    const del = await fetch(url, { method: 'DELETE', headers: tusHeaders });
    expect(del.status).toBe(204);
    const head = await fetch(url, { method: 'HEAD', headers: tusHeaders });
    expect(head.status).toBe(404);
    expect(await leftovers(app)).toEqual([]);
  });

  it('accepts the metadata tus clients add by habit (Uppy, tus-js-client) and trusts none of it', async () => {
    const item = async (id: string | null) =>
      (await fetch(`${app.url}/v1/evidence/${id}`, { headers: bearer(app.keys.support) }).then(
        (r) => r.json(),
      )) as Record<string, unknown>;
    // Uppy's defaults: name, type, relativePath (the string "null" for a file not from a folder),
    // copied to filename and filetype; the types lie, and an empty value has no value at all.
    const call = fakeMedia('wav', 30_000);
    const uppyLike = await tusUpload(app.url, app.keys.ingest, call, {
      kind: 'call_recording',
      callId: 'habit-1',
      name: 'call 7.wav',
      type: 'video/mp4',
      filename: 'call 7.wav',
      filetype: 'image/png',
      relativePath: 'null',
      stationId: '',
    });
    expect(uppyLike.status).toBe('created');
    const archived = await item(uppyLike.itemId);
    expect(archived).toMatchObject({ originalFilename: 'call 7.wav', sha256: sha(call) });
    expect(archived.contentType).toMatch(/^audio\//);
    expect(archived.stationId ?? null).toBeNull();

    // `name` alone is the file name, sanitized as `filename` is; `filename` wins over `name`.
    const a = fakeMedia('mp4', 20_000);
    const named = await tusUpload(app.url, app.keys.ingest, a, {
      kind: 'packing_video',
      name: 'bench\u202egpj.mp4',
      type: 'text/html',
    });
    expect(await item(named.itemId)).toMatchObject({
      originalFilename: 'benchgpj.mp4',
      contentType: 'video/mp4',
    });
    const b = fakeMedia('mp4', 21_000);
    const both = await tusUpload(app.url, app.keys.ingest, b, {
      kind: 'packing_video',
      name: 'from-name.mp4',
      filename: 'from-filename.mp4',
    });
    expect(await item(both.itemId)).toMatchObject({ originalFilename: 'from-filename.mp4' });

    // A hostile name is refused like a hostile filename, before a byte is stored.
    for (const name of ['../../etc/passwd', 'a\r\nb.mp4', 'x'.repeat(300)]) {
      const refused = await refusal(
        tusUpload(app.url, app.keys.ingest, a, { kind: 'packing_video', name }),
      );
      expect(refused.status).toBe(400);
      expect(JSON.parse(refused.body!)).toMatchObject({ code: 'invalid_filename' });
    }

    // tus 1.0: a key with no value at all ("key" alone, no space): accepted, and carries nothing.
    const meta = (pairs: [string, string?][]) =>
      pairs
        .map(([k, v]) => (v === undefined ? k : `${k} ${Buffer.from(v).toString('base64')}`))
        .join(',');
    const bare = await fetch(`${app.url}/v1/uploads`, {
      method: 'POST',
      headers: {
        ...bearer(app.keys.ingest),
        'Tus-Resumable': '1.0.0',
        'Upload-Length': '1000',
        'Upload-Metadata': meta([
          ['kind', 'packing_video'],
          ['relativePath'],
          ['stationId'],
          ['is_public'],
        ]),
      },
    });
    expect(bare.status).toBe(201);
    const del = await fetch(new URL(bare.headers.get('location')!, app.url), {
      method: 'DELETE',
      headers: { ...bearer(app.keys.ingest), 'Tus-Resumable': '1.0.0' },
    });
    expect(del.status).toBe(204);

    // A key that is none of these, with a value, is still refused, and `allowed` names them all.
    const typo = await refusal(
      tusUpload(app.url, app.keys.ingest, a, { kind: 'packing_video', orderID: 'ORD-1' }),
    );
    expect(typo.status).toBe(400);
    const problem = JSON.parse(typo.body!);
    expect(problem).toMatchObject({ code: 'unknown_field', field: 'orderID' });
    expect(problem.allowed).toEqual(
      expect.arrayContaining([
        'kind',
        'orderId',
        'complaintId',
        'segments',
        'filename',
        'name',
        'type',
        'filetype',
        'relativePath',
      ]),
    );
    expect(await leftovers(app)).toEqual([]);
  });

  it('refuses bad metadata at creation, a wrong type at the first bytes and a wrong hash at the end', async () => {
    const clip = fakeMedia('mp4', 2 * MiB);
    const unknown = await refusal(
      tusUpload(app.url, app.keys.ingest, clip, {
        kind: 'packing_video',
        orderID: 'typo',
      }),
    );
    expect(unknown.status).toBe(400);
    expect(JSON.parse(unknown.body!)).toMatchObject({ code: 'unknown_field' });

    const wav = fakeMedia('wav', 2 * MiB);
    const wrongType = await refusal(
      tusUpload(app.url, app.keys.ingest, wav, {
        kind: 'packing_video',
      }),
    );
    expect(wrongType.status).toBe(415);
    expect(JSON.parse(wrongType.body!)).toMatchObject({ code: 'unsupported_media_type' });

    const mismatch = await refusal(
      tusUpload(app.url, app.keys.ingest, clip, {
        kind: 'packing_video',
        sha256: 'a'.repeat(64),
      }),
    );
    expect(mismatch.status).toBe(422);
    expect(JSON.parse(mismatch.body!)).toMatchObject({ code: 'checksum_mismatch' });

    const noKey = await fetch(`${app.url}/v1/uploads`, {
      method: 'POST',
      headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': '10' },
    });
    expect(noKey.status).toBe(401);
    const support = await fetch(`${app.url}/v1/uploads`, {
      method: 'POST',
      headers: { ...bearer(app.keys.support), 'Tus-Resumable': '1.0.0', 'Upload-Length': '10' },
    });
    expect(support.status).toBe(403);
    expect(await leftovers(app)).toEqual([]);
    const rows = await app.ctx.db
      .selectFrom('resumable_uploads')
      .select('id')
      .where('item_id', 'is', null)
      .execute();
    expect(rows).toEqual([]);
  });

  it('expires abandoned uploads and removes their bytes', async () => {
    const clip = fakeMedia('mp4', 6 * MiB);
    const started = await tusUpload(
      app.url,
      app.keys.ingest,
      clip,
      { kind: 'packing_video' },
      {
        chunkSize: 3 * MiB,
        abortAfter: 3 * MiB,
      },
    ).catch((e: AbortedUpload) => e);
    expect((await storedKeys(app)).some((k) => k.startsWith('resumable/'))).toBe(true);
    await app.ctx.db
      .updateTable('resumable_uploads')
      .set({ created_at: new Date(Date.now() - 100 * 3600_000) } as never)
      .where('item_id', 'is', null)
      .execute();
    await app.ctx.db
      .updateTable('resumable_uploads')
      .set({ expires_at: new Date(Date.now() - 1000) } as never)
      .where('item_id', 'is', null)
      .execute();
    const patch = await fetch(new URL(started.url, app.url), {
      method: 'PATCH',
      headers: {
        ...bearer(app.keys.ingest),
        'Tus-Resumable': '1.0.0',
        'Upload-Offset': String(3 * MiB),
        'Content-Type': 'application/offset+octet-stream',
      },
      body: clip.subarray(3 * MiB),
    });
    expect(patch.status).toBe(410);
    expect(await app.ctx.uploads.deleteExpired()).toBeGreaterThanOrEqual(1);
    expect(await leftovers(app)).toEqual([]);
  });
});
