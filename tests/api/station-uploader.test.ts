import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { uploadFile, type UploaderOptions } from '../../src/cli/station-uploader';
import { WatchFolder } from '../../src/cli/watch-folder';
import { bearer, itemCount, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';

jest.setTimeout(60_000);

/**
 * Warehouse Wi-Fi between the station and the archive: the first `cuts` connections are cut after
 * `after` bytes from the station (mid-upload), or, with `afterRequest`, once the whole request
 * went through but before the answer came back.
 */
async function flakyLink(
  targetPort: number,
  plan: { cuts: number; after?: number; afterRequest?: boolean },
) {
  let connections = 0;
  let forwarded = 0;
  const server = net.createServer((client) => {
    const n = ++connections;
    const upstream = net.connect(targetPort, '127.0.0.1');
    let sent = 0;
    const cut = n <= plan.cuts;
    client.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      if (cut && plan.after !== undefined && sent > plan.after) {
        client.destroy();
        upstream.destroy();
        return;
      }
      forwarded += chunk.length;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cut && plan.afterRequest) {
        // The archive answered, but the answer never reaches the station.
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.end());
    upstream.on('close', () => client.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    connections: () => connections,
    /** Bytes the station got through to the archive. */
    forwarded: () => forwarded,
    close: () => server.close(),
  };
}

describe('the station uploader', () => {
  let app: TestApp;
  let dir: string;
  const lines: string[] = [];

  beforeAll(async () => {
    app = await startTestApp('fs');
  });
  afterAll(async () => {
    await app.close();
  });
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'evidence-station-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const options = (url: string): UploaderOptions => ({
    url,
    key: app.keys.ingest.key,
    kind: 'packing_video',
    orderIds: ['ORD-ST-1'],
    stationId: 'PK-03',
    maxAttempts: 6,
    backoffMs: 20,
    log: (l) => lines.push(l),
  });

  it('uploads a folder over a link that keeps dropping, each file exactly once, and moves each to done/ after the hashes match', async () => {
    const link = await flakyLink(Number(new URL(app.url).port), { cuts: 3, after: 100_000 });
    const clips = [1, 2, 3].map((i) => {
      const bytes = fakeMedia('mp4', 400_000);
      writeFileSync(path.join(dir, `clip-${i}.mp4`), bytes);
      return bytes;
    });
    writeFileSync(path.join(dir, 'clip-4.mp4.part'), fakeMedia('mp4')); // still being written
    writeFileSync(path.join(dir, 'notes.txt'), 'not a video');
    const before = await itemCount(app);
    const watch = () =>
      new WatchFolder(
        {
          dir,
          doneDir: path.join(dir, 'done'),
          rejectedDir: path.join(dir, 'rejected'),
          queueFile: path.join(dir, '.evidence-queue.json'),
          settleMs: 0,
        },
        options(link.url),
      );
    let watcher = watch();
    await watcher.load();
    for (let pass = 0; pass < 40 && (watcher.waiting > 0 || pass === 0); pass++) {
      await watcher.pass();
      if (pass === 1) {
        // The station restarts: the queue on disk carries on.
        watcher = watch();
        await watcher.load();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    link.close();
    expect(link.connections()).toBeGreaterThan(3); // some attempts were cut off
    expect(await itemCount(app)).toBe(before + 3);
    expect(readdirSync(path.join(dir, 'done')).sort()).toEqual([
      'clip-1.mp4',
      'clip-2.mp4',
      'clip-3.mp4',
    ]);
    expect(readdirSync(path.join(dir, 'rejected')).sort()).toEqual([
      'notes.txt',
      'notes.txt.reason.txt',
    ]);
    expect(readFileSync(path.join(dir, 'rejected', 'notes.txt.reason.txt'), 'utf8')).toMatch(/415/);
    expect(existsSync(path.join(dir, 'clip-4.mp4.part'))).toBe(true);
    for (const bytes of clips) {
      const found = await request(app.url)
        .get('/v1/orders/ORD-ST-1/evidence')
        .set(bearer(app.keys.support));
      expect(
        found.body.items.filter((i: { sha256: string }) => i.sha256 === sha256(bytes)),
      ).toHaveLength(1);
    }
  });

  it('retries an upload whose answer was lost and gets the same item back, not a second one', async () => {
    const link = await flakyLink(Number(new URL(app.url).port), { cuts: 1, afterRequest: true });
    const file = path.join(dir, 'lost-answer.mp4');
    const bytes = fakeMedia('mp4', 200_000);
    writeFileSync(file, bytes);
    const before = await itemCount(app);
    const result = await uploadFile(options(link.url), file);
    link.close();
    expect(result.sha256).toBe(sha256(bytes));
    expect(result.status).toBe(201); // the first answer, replayed for the same bytes
    expect(await itemCount(app)).toBe(before + 1);
  });

  it('resumes a large clip where the archive stopped receiving, in this run and after a restart', async () => {
    const MiB = 1024 * 1024;
    // Every connection of the first three dies 12 MiB in: without resuming, the clip never lands.
    const link = await flakyLink(Number(new URL(app.url).port), { cuts: 3, after: 12 * MiB });
    const bytes = fakeMedia('mp4', 40 * MiB);
    writeFileSync(path.join(dir, 'long-shift.mp4'), bytes);
    const queueFile = path.join(dir, '.evidence-queue.json');
    const watch = () =>
      new WatchFolder(
        {
          dir,
          doneDir: path.join(dir, 'done'),
          rejectedDir: path.join(dir, 'rejected'),
          queueFile,
          settleMs: 0,
        },
        { ...options(link.url), backoffMs: 1 },
      );
    let watcher = watch();
    await watcher.load();
    await watcher.pass(); // cut off: the queue remembers where the upload lives
    const queued = JSON.parse(readFileSync(queueFile, 'utf8'))['long-shift.mp4'];
    expect(queued.uploadUrl).toMatch(/\/v1\/uploads\/[0-9a-f]+$/);
    for (let pass = 0; pass < 20 && watcher.waiting > 0; pass++) {
      watcher = watch(); // the station restarts between passes
      await watcher.load();
      await new Promise((r) => setTimeout(r, 5));
      await watcher.pass();
    }
    link.close();
    expect(readdirSync(path.join(dir, 'done'))).toEqual(['long-shift.mp4']);
    const found = await request(app.url)
      .get('/v1/orders/ORD-ST-1/evidence')
      .set(bearer(app.keys.support));
    expect(
      found.body.items.filter((i: { sha256: string }) => i.sha256 === sha256(bytes)),
    ).toHaveLength(1);
    // Each cut costs at most the chunk in flight (8 MiB), never the whole clip again.
    expect(link.forwarded()).toBeLessThan(bytes.length + 3 * 8 * MiB + MiB);
  });
});
