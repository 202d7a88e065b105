import { execFile, spawnSync } from 'node:child_process';
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import request from 'supertest';
import {
  auditEvents,
  bearer,
  startTestApp,
  tamperWithBlob,
  type TestApp,
} from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { upload } from '../support/multipart';

/**
 * Resumable, cacheable bundle downloads (issue 15, finding 4) and conditions on served content
 * (finding 5's If-Match), over HTTP as curl and download managers speak it (RFC 9110 §13, §14).
 */
jest.setTimeout(120_000);

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');

const binary = (res: request.Response, cb: (err: Error | null, body: Buffer) => void) => {
  const stream = res as unknown as NodeJS.ReadableStream;
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => cb(null, Buffer.concat(chunks)));
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads a download until at least `cut` bytes came, then drops the connection, as a bad Wi-Fi does. */
function cutDownload(url: string, headers: Record<string, string>, cut: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      expect(res.statusCode).toBe(200);
      const chunks: Buffer[] = [];
      let got = 0;
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got >= cut) {
          req.destroy();
          resolve(Buffer.concat(chunks));
        }
      });
      res.on('end', () => reject(new Error('the download was not cut: it ended')));
    });
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
  });
}

describe('bundle downloads: Range, If-Range, conditions, HEAD', () => {
  let app: TestApp;
  const work = mkdtempSync(path.join(tmpdir(), 'bundle-downloads-'));
  const items: { id: string; bytes: Buffer }[] = [];
  let bundle: { id: string; zipBytes: number; manifestSha256: string; createdAt: string };
  let full: Buffer;
  let etag: string;
  let contentUrl: string;
  let shareUrl: string;
  let itemShareUrl: string;

  const get = (url: string, headers: Record<string, string> = {}, key = app.keys.support) =>
    request(app.url).get(url).set(bearer(key)).set(headers).buffer(true).parse(binary);
  const anon = (url: string, headers: Record<string, string> = {}) =>
    request(app.url).get(url).set(headers).buffer(true).parse(binary);
  const problemCode = (res: request.Response) => JSON.parse((res.body as Buffer).toString()).code;

  beforeAll(async () => {
    app = await startTestApp('fs');
    await request(app.url)
      .put('/v1/complaints/C-DL')
      .set(bearer(app.keys.support))
      .send({ status: 'open', orderIds: ['ORD-DL'] });
    for (const [kind, type, size, name] of [
      ['packing_video', 'mp4', 700_000, 'a.mp4'],
      ['call_recording', 'wav', 500_000, 'b.wav'],
    ] as const) {
      const bytes = fakeMedia(type, size);
      const res = await upload(
        app.url,
        app.keys.ingest.key,
        [
          ['kind', kind],
          ['complaintId', 'C-DL'],
        ],
        { filename: name, content: bytes },
      );
      expect(res.status).toBe(201);
      items.push({ id: res.json().id, bytes });
    }
    const made = await request(app.url)
      .post('/v1/complaints/C-DL/bundles')
      .set(bearer(app.keys.support))
      .send({});
    expect(made.status).toBe(201);
    bundle = made.body;
    contentUrl = `/v1/bundles/${bundle.id}/content`;
    const first = await get(contentUrl);
    expect(first.status).toBe(200);
    full = first.body as Buffer;
    etag = first.headers.etag!;
    const link = await request(app.url)
      .post('/v1/share-links')
      .set(bearer(app.keys.support))
      .send({ bundleId: bundle.id });
    expect(link.status).toBe(201);
    shareUrl = link.body.url;
    const itemLink = await request(app.url)
      .post('/v1/share-links')
      .set(bearer(app.keys.support))
      .send({ itemId: items[0]!.id, complaintId: 'C-DL' });
    expect(itemLink.status).toBe(201);
    itemShareUrl = itemLink.body.url;
    // A Last-Modified of this very second is a weak validator (RFC 9110 §8.8.2.2).
    const age = Date.now() - new Date(bundle.createdAt).getTime();
    if (age < 1100) await sleep(1100 - age);
  });

  afterAll(async () => {
    await app.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('sends the same bytes on every download, with a strong ETag, Last-Modified and Accept-Ranges', async () => {
    expect(full.length).toBe(bundle.zipBytes);
    expect(etag).toBe(`"${bundle.manifestSha256}"`);
    const again = await get(contentUrl);
    expect(sha256(again.body as Buffer)).toBe(sha256(full));
    expect(again.headers['accept-ranges']).toBe('bytes');
    expect(again.headers['last-modified']).toBe(
      new Date(Math.floor(new Date(bundle.createdAt).getTime() / 1000) * 1000).toUTCString(),
    );
    const shared = await anon(shareUrl);
    expect(shared.status).toBe(200);
    expect(sha256(shared.body as Buffer)).toBe(sha256(full));
    expect(shared.headers.etag).toBe(etag);
    expect(shared.headers['accept-ranges']).toBe('bytes');
  });

  it('resumes a download cut in the middle with Range + If-Range into the very same ZIP, which unzip -t and verify-bundle accept', async () => {
    const headers = { Authorization: `Bearer ${app.keys.support.key}` };
    const part = await cutDownload(`${app.url}${contentUrl}`, headers, Math.floor(full.length / 2));
    expect(part.length).toBeLessThan(full.length);
    const rest = await get(contentUrl, { Range: `bytes=${part.length}-`, 'If-Range': etag });
    expect(rest.status).toBe(206);
    expect(rest.headers['content-range']).toBe(
      `bytes ${part.length}-${full.length - 1}/${full.length}`,
    );
    expect(Number(rest.headers['content-length'])).toBe(full.length - part.length);
    const resumed = Buffer.concat([part, rest.body as Buffer]);
    expect(sha256(resumed)).toBe(sha256(full));

    const file = path.join(work, 'resumed.zip');
    writeFileSync(file, resumed);
    const tested = spawnSync('unzip', ['-t', file], { encoding: 'utf8' });
    expect(tested.stdout).toContain('No errors detected');
    expect(tested.status).toBe(0);
    const key = (await request(app.url).get('/v1/custody/public-key')).body.publicKeyPem;
    writeFileSync(path.join(work, 'key.pem'), key);
    const { stdout } = await run(
      process.execPath,
      [
        path.join(ROOT, 'tests/support/run-ts.js'),
        'src/cli/verify-bundle.cli.ts',
        file,
        '--public-key',
        path.join(work, 'key.pem'),
      ],
      { cwd: ROOT },
    );
    expect(stdout).toContain('OK: both signatures are valid');

    // The same through a share link, with no key.
    const sharedPart = await cutDownload(`${app.url}${shareUrl}`, {}, 300_000);
    const sharedRest = await anon(shareUrl, {
      Range: `bytes=${sharedPart.length}-`,
      'If-Range': etag,
    });
    expect(sharedRest.status).toBe(206);
    expect(sha256(Buffer.concat([sharedPart, sharedRest.body as Buffer]))).toBe(sha256(full));

    // Each range is a recorded download, naming its range.
    const last = (await auditEvents(app, 'bundle.download')).at(-1)!;
    expect(last.details).toMatchObject({
      bundleId: bundle.id,
      status: 206,
      range: `bytes=${sharedPart.length}-${full.length - 1}`,
      via: expect.objectContaining({ shareLinkId: expect.any(String) }),
    });
  });

  it('resumes with curl -C - as docs/bundles.md shows, run as written', async () => {
    const readme = readFileSync(path.join(ROOT, 'docs', 'bundles.md'), 'utf8');
    const snippet = /^curl [^\n]*-C - [^\n]*\/content\n/m.exec(readme)?.[0];
    expect(snippet).toBeDefined();
    const dir = mkdtempSync(path.join(work, 'curl-'));
    writeFileSync(path.join(dir, 'bundle.zip'), full.subarray(0, 123_457));
    const cmd = snippet!
      .replaceAll('http://127.0.0.1:8080', app.url)
      .replaceAll('<bundle id>', bundle.id);
    // Not spawnSync: the service answers from this very process.
    await run('bash', ['-c', cmd], {
      cwd: dir,
      env: { ...process.env, SUPPORT: app.keys.support.key },
    });
    expect(sha256(readFileSync(path.join(dir, 'bundle.zip')))).toBe(sha256(full));
  });

  it('checks the bundle with the standard tools of docs/bundles.md, run as written', async () => {
    const page = readFileSync(path.join(ROOT, 'docs', 'bundles.md'), 'utf8');
    const section = page.slice(page.indexOf('**Checking a bundle with standard tools**'));
    const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
    expect(block).toContain('sha256sum -c SHA256SUMS');
    const dir = mkdtempSync(path.join(work, 'verify-'));
    writeFileSync(path.join(dir, 'bundle.zip'), full);
    const { stdout } = await run('bash', ['-e', '-o', 'pipefail', '-c', block!], { cwd: dir });
    const published = (await fetch(`${app.url}/v1/custody/public-key`).then((r) => r.json())) as {
      fingerprint: string;
    };
    expect(stdout).toContain(`${published.fingerprint}  -`);
    expect(stdout.match(/^Signature Verified Successfully$/gm)).toHaveLength(2);
    expect(stdout).not.toMatch(/FAILED/);
    expect(stdout).toMatch(/^files\/01-[^\n]*: OK$/m);
  });

  it('runs docs/bundles.md’s resuming commands as written: curl -C - and curl -r with If-Range', async () => {
    const readme = readFileSync(path.join(ROOT, 'docs', 'bundles.md'), 'utf8');
    const section = readme.slice(readme.indexOf('**Resuming and caching.**'));
    const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
    expect(block).toContain('-C -');
    expect(block).toContain('If-Range');
    const dir = mkdtempSync(path.join(work, 'readme-'));
    writeFileSync(path.join(dir, 'bundle.zip'), full.subarray(0, 654_321));
    const cmd = block!
      .replaceAll('http://127.0.0.1:8080', app.url)
      .replaceAll('<bundle id>', bundle.id)
      .replaceAll('<manifestSha256>', bundle.manifestSha256);
    await run('bash', ['-e', '-c', cmd], {
      cwd: dir,
      env: { ...process.env, SUPPORT: app.keys.support.key },
    });
    expect(sha256(readFileSync(path.join(dir, 'bundle.zip')))).toBe(sha256(full));
    expect(readFileSync(path.join(dir, 'rest.part')).equals(full.subarray(1_000_000))).toBe(true);
  });

  it.each<[string, string, number, number]>([
    ['first byte', 'bytes=0-0', 0, 0],
    ['a middle part', 'bytes=1000-99999', 1000, 99999],
    ['a suffix', 'bytes=-22', -22, -1],
    ['a suffix longer than the whole', 'bytes=-99999999', 0, -1],
    ['an open end', 'bytes=1200000-', 1200000, -1],
    ['an end past the end', 'bytes=5-999999999999999999999', 5, -1],
    ['the last byte', 'bytes=LAST-LAST', -1, -1],
    ['a unit in capitals', 'BYTES=10-19', 10, 19],
  ])('Range (%s) gives 206 with exactly those bytes', async (_what, spec, from, to) => {
    const size = full.length;
    const abs = (n: number) => (n < 0 ? size + n : n);
    const range = spec.replaceAll('LAST', String(size - 1));
    for (const res of [
      await get(contentUrl, { Range: range }),
      await anon(shareUrl, { Range: range }),
    ]) {
      expect(res.status).toBe(206);
      const [start, end] = [abs(from), abs(to)];
      expect(res.headers['content-range']).toBe(`bytes ${start}-${end}/${size}`);
      expect(res.headers['content-type']).toBe('application/zip');
      expect(res.headers.etag).toBe(etag);
      expect((res.body as Buffer).equals(full.subarray(start, end + 1))).toBe(true);
    }
  });

  it.each(['bytes=-0', 'bytes=SIZE-', 'bytes=SIZE-99999999', 'bytes=99999999999999999999999-'])(
    'Range %s is unsatisfiable: 416 with Content-Range bytes */size',
    async (spec) => {
      const range = spec.replace('SIZE', String(full.length));
      for (const res of [
        await get(contentUrl, { Range: range }),
        await anon(shareUrl, { Range: range }),
      ]) {
        expect(res.status).toBe(416);
        expect(res.headers['content-range']).toBe(`bytes */${full.length}`);
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(problemCode(res)).toBe('range_not_satisfiable');
      }
    },
  );

  // Several ranges are answered with the whole (RFC 9110 §14.2 lets a server ignore Range), not
  // multipart/byteranges: no download client needs them for a ZIP, and each would rebuild it.
  it.each([
    'bytes=0-9,20-29',
    'bytes=0-9, -5',
    'bytes=5-1',
    'bytes=abc',
    'bytes=1e3-',
    'bytes=-',
    'items=0-9',
    'bytes=99999999999999999999999999-1',
  ])('Range %s is ignored: the whole ZIP with 200', async (range) => {
    for (const res of [
      await get(contentUrl, { Range: range }),
      await anon(shareUrl, { Range: range }),
    ]) {
      expect(res.status).toBe(200);
      expect(res.headers['content-range']).toBeUndefined();
      expect(sha256(res.body as Buffer)).toBe(sha256(full));
    }
  });

  it('applies a range only when If-Range names this ZIP strongly: the ETag or the exact Last-Modified', async () => {
    const lastModified = (await get(contentUrl, { Range: 'bytes=0-0' })).headers['last-modified']!;
    const earlier = new Date(new Date(lastModified).getTime() - 1000).toUTCString();
    const cases: [string, number][] = [
      [etag, 206],
      [lastModified, 206],
      [`W/${etag}`, 200], // a weak validator never qualifies (RFC 9110 §13.1.5)
      ['"another"', 200],
      [earlier, 200],
      ['garbage', 200],
      [`${etag}, "another"`, 200],
      ['2026-12-03T10:00:00Z', 200],
    ];
    for (const [ifRange, status] of cases) {
      for (const res of [
        await get(contentUrl, { Range: 'bytes=10-19', 'If-Range': ifRange }),
        await anon(shareUrl, { Range: 'bytes=10-19', 'If-Range': ifRange }),
      ]) {
        expect([ifRange, res.status]).toEqual([ifRange, status]);
        const want = status === 206 ? full.subarray(10, 20) : full;
        expect((res.body as Buffer).equals(want)).toBe(true);
      }
    }
    // An If-Range that does not hold turns an unsatisfiable range into the whole, not a 416.
    const stale = await get(contentUrl, { Range: 'bytes=-0', 'If-Range': '"another"' });
    expect(stale.status).toBe(200);
  });

  it('answers If-None-Match and If-Modified-Since with 304: the ETag, no body', async () => {
    const lastModified = (await get(contentUrl, { Range: 'bytes=0-0' })).headers['last-modified']!;
    const notModified: Record<string, string>[] = [
      { 'If-None-Match': etag },
      { 'If-None-Match': `W/${etag}` },
      { 'If-None-Match': `"a", W/"b", ${etag}` },
      { 'If-None-Match': `W/"a",W/${etag}` },
      { 'If-None-Match': '*' },
      { 'If-Modified-Since': lastModified },
      { 'If-None-Match': etag, Range: 'bytes=0-9' },
    ];
    for (const headers of notModified) {
      for (const res of [await get(contentUrl, headers), await anon(shareUrl, headers)]) {
        expect([headers, res.status]).toEqual([headers, 304]);
        expect(res.headers.etag).toBe(etag);
        expect((res.body as Buffer).length).toBe(0);
      }
    }
    const modified: Record<string, string>[] = [
      { 'If-None-Match': '"a", W/"b"' },
      { 'If-None-Match': etag.slice(0, -2) + '"' },
      { 'If-None-Match': 'garbage' },
      // If-None-Match present: If-Modified-Since is not looked at (RFC 9110 §13.2.2).
      { 'If-None-Match': '"a"', 'If-Modified-Since': lastModified },
      { 'If-Modified-Since': 'Thu, 01 Jan 1970 00:00:00 GMT' },
      { 'If-Modified-Since': 'not a date' },
    ];
    for (const headers of modified) {
      const res = await get(contentUrl, headers);
      expect([headers, res.status]).toEqual([headers, 200]);
      expect(sha256(res.body as Buffer)).toBe(sha256(full));
    }
    const recorded = (await auditEvents(app, 'bundle.download')).filter(
      (e) => (e.details as { status?: number }).status === 304,
    );
    expect(recorded.length).toBeGreaterThanOrEqual(notModified.length * 2);
  });

  it('evaluates If-Match strongly and If-Unmodified-Since: 412 precondition_failed', async () => {
    const lastModified = (await get(contentUrl, { Range: 'bytes=0-0' })).headers['last-modified']!;
    const earlier = new Date(new Date(lastModified).getTime() - 60_000).toUTCString();
    const failed: Record<string, string>[] = [
      { 'If-Match': '"another"' },
      { 'If-Match': `W/${etag}` },
      { 'If-Match': 'garbage' },
      { 'If-Unmodified-Since': earlier },
      // If-Match is evaluated before If-None-Match and Range.
      { 'If-Match': '"another"', 'If-None-Match': etag },
      { 'If-Match': '"another"', Range: 'bytes=0-9' },
    ];
    for (const headers of failed) {
      for (const res of [await get(contentUrl, headers), await anon(shareUrl, headers)]) {
        expect([headers, res.status]).toEqual([headers, 412]);
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(problemCode(res)).toBe('precondition_failed');
      }
    }
    const passed: [Record<string, string>, number][] = [
      [{ 'If-Match': etag }, 200],
      [{ 'If-Match': '*' }, 200],
      [{ 'If-Match': `"a", ${etag}` }, 200],
      [{ 'If-Match': etag, Range: 'bytes=0-9' }, 206],
      [{ 'If-Match': etag, 'If-None-Match': etag }, 304],
      // If-Match present: If-Unmodified-Since is not looked at.
      [{ 'If-Match': etag, 'If-Unmodified-Since': earlier }, 200],
      [{ 'If-Unmodified-Since': lastModified }, 200],
      [{ 'If-Unmodified-Since': 'not a date' }, 200],
    ];
    for (const [headers, status] of passed) {
      for (const res of [await get(contentUrl, headers), await anon(shareUrl, headers)]) {
        expect([headers, res.status]).toEqual([headers, status]);
      }
    }
  });

  it('evaluates If-Match on evidence content and on a shared item too', async () => {
    const item = items[0]!;
    const itemEtag = `"${sha256(item.bytes)}"`;
    for (const url of [`/v1/evidence/${item.id}/content`, itemShareUrl]) {
      const fetch = (h: Record<string, string>) =>
        url.startsWith('/s/') ? anon(url, h) : get(url, h);
      for (const h of [{ 'If-Match': '"another"' }, { 'If-Match': `W/${itemEtag}` }]) {
        const res = await fetch(h);
        expect([url, h, res.status]).toEqual([url, h, 412]);
        expect(problemCode(res)).toBe('precondition_failed');
      }
      const ok = await fetch({ 'If-Match': `"x", ${itemEtag}` });
      expect(ok.status).toBe(200);
      expect((ok.body as Buffer).equals(item.bytes)).toBe(true);
      expect((await fetch({ 'If-Match': '*', Range: 'bytes=0-1' })).status).toBe(206);
      expect((await fetch({ 'If-None-Match': `W/"a", W/${itemEtag}` })).status).toBe(304);
    }
  });

  it('counts a bundle share link as used only for answers it served (200/206/304), naming status and range', async () => {
    const linkId = () =>
      app.ctx.db
        .selectFrom('share_links')
        .select(['id', 'use_count as useCount'])
        .where('bundle_id', '=', bundle.id)
        .executeTakeFirstOrThrow();
    const uses = async () =>
      (await auditEvents(app, 'share_link.use')).filter((e) => e.outcome === 'success');
    const before = await linkId();
    const eventsBefore = (await uses()).length;

    // Refused answers: a failed condition, a range outside the ZIP. Not uses of the link.
    const refused: [Record<string, string>, number][] = [
      [{ 'If-Match': '"another"' }, 412],
      [{ Range: `bytes=${bundle.zipBytes + 5}-` }, 416],
    ];
    for (const [headers, status] of refused) {
      expect([headers, (await anon(shareUrl, headers)).status]).toEqual([headers, status]);
    }
    expect((await linkId()).useCount).toBe(before.useCount);
    expect((await uses()).length).toBe(eventsBefore);

    // Served answers: each one use, with its status and range.
    expect((await anon(shareUrl, { Range: 'bytes=10-19' })).status).toBe(206);
    expect((await anon(shareUrl, { 'If-None-Match': etag })).status).toBe(304);
    expect((await anon(shareUrl)).status).toBe(200);
    expect((await linkId()).useCount).toBe(before.useCount + 3);
    const served = (await uses()).slice(eventsBefore).map((e) => e.details);
    expect(served).toEqual([
      expect.objectContaining({ shareLinkId: before.id, status: 206, range: 'bytes=10-19' }),
      expect.objectContaining({ shareLinkId: before.id, status: 304 }),
      expect.objectContaining({ shareLinkId: before.id, status: 200, range: null }),
    ]);
  });

  it('answers HEAD with the headers of GET and no body', async () => {
    const headOf = (url: string, headers: Record<string, string> = {}, key = true) => {
      const r = request(app.url).head(url).set(headers);
      return key ? r.set(bearer(app.keys.support)) : r;
    };
    for (const [url, key] of [
      [contentUrl, true],
      [shareUrl, false],
    ] as const) {
      const got = key ? await get(url) : await anon(url);
      const head = await headOf(url, {}, key);
      expect(head.status).toBe(200);
      for (const h of [
        'content-type',
        'content-length',
        'etag',
        'last-modified',
        'accept-ranges',
        'content-disposition',
        'cache-control',
      ]) {
        expect([h, head.headers[h]]).toEqual([h, got.headers[h]]);
      }
      expect(head.text ?? '').toBe('');
      expect((await headOf(url, { 'If-None-Match': etag }, key)).status).toBe(304);
      expect((await headOf(url, { 'If-Match': '"x"' }, key)).status).toBe(412);
      // Range is for GET only (RFC 9110 §14.2): a HEAD gets the whole's headers, never 206/416.
      for (const range of ['bytes=-10', 'bytes=0-0', `bytes=${bundle.zipBytes + 10}-`]) {
        const ranged = await headOf(url, { Range: range, 'If-Range': etag }, key);
        expect([range, ranged.status]).toEqual([range, 200]);
        expect(ranged.headers['content-length']).toBe(String(bundle.zipBytes));
        expect(ranged.headers['content-range']).toBeUndefined();
      }
    }
  });

  it('never lets a 304, a HEAD or a range stand in for a bundle whose evidence is damaged', async () => {
    const victim = items[1]!;
    const row = await app.ctx.db
      .selectFrom('evidence_items')
      .select(['blob_key'])
      .where('id', '=', victim.id)
      .executeTakeFirstOrThrow();
    const flipped = Buffer.from(victim.bytes);
    flipped[1000] = flipped[1000]! ^ 0xff;
    await tamperWithBlob(app, row.blob_key, flipped);

    // Not known yet: a range past the damaged file (the ZIP's directory, at its end) still has
    // that file's bytes read and hashed on the way, so it is refused and the item marked damaged.
    const tail = await get(contentUrl, { Range: 'bytes=-100', 'If-Range': etag });
    expect(tail.status).toBe(500);
    expect(problemCode(tail)).toBe('evidence_damaged');
    expect(tail.headers.etag).toBeUndefined();
    expect(tail.headers['content-range']).toBeUndefined();
    let marked = false;
    for (let i = 0; i < 50 && !marked; i++) {
      const view = await request(app.url)
        .get(`/v1/evidence/${victim.id}`)
        .set(bearer(app.keys.support));
      marked = view.body.integrity === 'damaged';
      if (!marked) await sleep(100);
    }
    expect(marked).toBe(true);

    // Known: nothing of the bundle is served, not even "your copy is current".
    const expectDamaged = (res: request.Response) => {
      expect(res.status).toBe(500);
      expect(res.headers.etag).toBeUndefined();
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    };
    const refused: Record<string, string>[] = [
      { 'If-None-Match': etag },
      { Range: 'bytes=0-99', 'If-Range': etag },
      { Range: 'bytes=-10' },
      { 'If-Match': etag },
    ];
    for (const headers of refused) {
      expectDamaged(await get(contentUrl, headers));
      expectDamaged(await anon(shareUrl, headers));
    }
    expect((await request(app.url).head(contentUrl).set(bearer(app.keys.support))).status).toBe(
      500,
    );
    expect((await request(app.url).head(shareUrl)).status).toBe(500);
    const itemContent = await get(`/v1/evidence/${victim.id}/content`, {
      'If-None-Match': `"${sha256(victim.bytes)}"`,
    });
    expectDamaged(itemContent);
  });
});

describe('bundle ranges abandoned by the client while they are prepared', () => {
  let app: TestApp;
  /** Every store read: the real read stream (fs), and how many bytes it gave. */
  const reads: { stream: Readable; bytes: number }[] = [];
  let contentUrl = '';
  let evidenceBytes = 0;
  let zipBytes = 0;

  beforeAll(async () => {
    // The real disk store, its reads slowed down (as a remote store's are) so that the bytes
    // before a range's start take a while to come.
    app = await startTestApp(
      'fs',
      {},
      {
        wrapBlobStore: (store) =>
          Object.assign(Object.create(store) as typeof store, {
            read: async (...args: Parameters<typeof store.read>) => {
              const stream = await store.read(...args);
              const read = { stream, bytes: 0 };
              reads.push(read);
              stream.on('data', (c: Buffer) => (read.bytes += c.length));
              return stream.pipe(
                new Transform({
                  highWaterMark: 1,
                  // 16 KiB every 10 ms, whatever the size of the disk's reads.
                  transform(chunk: Buffer, _enc, cb) {
                    void (async () => {
                      for (let at = 0; at < chunk.length; at += 16_384) {
                        await sleep(10);
                        this.push(chunk.subarray(at, at + 16_384));
                      }
                    })().then(() => cb(), cb);
                  },
                  destroy(err, cb) {
                    stream.destroy();
                    cb(err);
                  },
                }),
              );
            },
          }),
      },
    );
    await request(app.url)
      .put('/v1/complaints/C-GONE')
      .set(bearer(app.keys.support))
      .send({ status: 'open', orderIds: ['ORD-GONE'] });
    for (const [kind, type, name] of [
      ['packing_video', 'mp4', 'a.mp4'],
      ['call_recording', 'wav', 'b.wav'],
    ] as const) {
      const bytes = fakeMedia(type, 1_500_000);
      evidenceBytes += bytes.length;
      const res = await upload(
        app.url,
        app.keys.ingest.key,
        [
          ['kind', kind],
          ['complaintId', 'C-GONE'],
        ],
        { filename: name, content: bytes },
      );
      expect(res.status).toBe(201);
    }
    const made = await request(app.url)
      .post('/v1/complaints/C-GONE/bundles')
      .set(bearer(app.keys.support))
      .send({});
    expect(made.status).toBe(201);
    contentUrl = `${app.url}/v1/bundles/${made.body.id}/content`;
    zipBytes = made.body.zipBytes;
  });

  afterAll(async () => {
    await app.close();
  });

  /** Asks for the ZIP's last bytes and goes away after `ms`, before any answer came. */
  const abandon = (ms: number, range = 'bytes=-10') =>
    new Promise<void>((resolve, reject) => {
      const req = http.get(contentUrl, {
        headers: { Authorization: `Bearer ${app.keys.support.key}`, Range: range },
      });
      req.on('response', (res) =>
        reject(new Error(`answered (${res.statusCode}) before the client went away`)),
      );
      req.on('error', () => undefined);
      setTimeout(() => {
        req.destroy();
        resolve();
      }, ms);
    });

  /** Open file descriptors on stored files (the data directories of test apps), not sockets. */
  const fds = () =>
    readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).startsWith(
          path.join(tmpdir(), 'evidence-data-'),
        );
      } catch {
        return false; // closed meanwhile (the directory listing's own descriptor)
      }
    }).length;

  it('stops reading the stored files once the client is gone, and closes them', async () => {
    reads.length = 0;
    await abandon(150);
    await sleep(300);
    expect(reads.length).toBeGreaterThan(0);
    const got = reads.reduce((n, r) => n + r.bytes, 0);
    await sleep(500);
    // Nothing more was read after the client left, far from everything before the range's start.
    expect(reads.reduce((n, r) => n + r.bytes, 0)).toBe(got);
    expect(got).toBeLessThan(evidenceBytes);
    expect(reads.every((r) => r.stream.destroyed)).toBe(true);
  });

  it('leaves no file descriptor open after ranged reads abandoned on the way to their start', async () => {
    await sleep(200);
    const before = fds();
    // Ranges starting inside the last file: its read is open when the range's first byte is.
    const range = `bytes=${zipBytes - 700_000}-`;
    await Promise.all([50, 100, 200, 300, 400].map((ms) => abandon(ms, range)));
    // Long enough for a read that was not stopped to reach the range's start (about 2 s here).
    await sleep(4000);
    const now = fds();
    expect(now).toBeLessThanOrEqual(before);
  });
});
