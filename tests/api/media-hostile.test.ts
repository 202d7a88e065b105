import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { sql } from 'kysely';
import request from 'supertest';
import { bearer, startTestApp, storedKeys, type TestApp } from '../support/harness';
import {
  archive,
  claimDuration,
  emptyWav,
  getBytes,
  hlsBehindId3,
  hlsInMp4,
  MediaFiles,
  pngDeclaring,
} from '../support/media-files';

jest.setTimeout(60_000);

/** A TCP listener on loopback that counts every connection made to it. */
async function listener(): Promise<{ port: number; connections: () => number; close(): void }> {
  let count = 0;
  const server = net.createServer((socket) => {
    count++;
    socket.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => count,
    close: () => server.close(),
  };
}

/**
 * Files built to hurt whoever processes them. Each must end in a failure recorded on the item, with
 * a reason a person can read, while the service goes on serving; nothing is fetched from anywhere
 * and nothing of the machine's files reaches a derivative.
 */
describe('media pipeline against hostile files', () => {
  let app: TestApp;
  let trap: Awaited<ReturnType<typeof listener>>;
  const files = new MediaFiles();
  const passwd = readFileSync('/etc/passwd', 'utf8').split('\n')[0]!;

  beforeAll(async () => {
    trap = await listener();
    app = await startTestApp('fs');
  });
  afterAll(async () => {
    await app.close();
    trap.close();
    files.cleanup();
  });

  it('the playlist files are really hostile: ffprobe left to guess opens them as HLS', () => {
    // Without our guards (no forced format), ffmpeg skips the ID3 tag and reads a playlist: this
    // is what the forced demuxer and the protocol whitelist below are there to prevent.
    const file = path.join(files.dir, 'guess.mp3');
    writeFileSync(file, hlsBehindId3(trap.port));
    const guessed = spawnSync('ffprobe', ['-hide_banner', '-loglevel', 'debug', file], {
      encoding: 'utf8',
    });
    expect(guessed.stderr).toMatch(/Format hls probed/);
  });

  const cases: {
    name: string;
    kind: string;
    filename: string;
    bytes: () => Buffer;
    status: 'failed' | 'partial';
    reason: RegExp;
  }[] = [
    {
      name: 'an HLS playlist behind an MP4 ftyp box (sniffed as video) pointing at loopback and /etc/passwd',
      kind: 'packing_video',
      filename: 'innocent.mp4',
      bytes: () => hlsInMp4(trap.port),
      status: 'failed',
      reason: /ffprobe could not read the file/,
    },
    {
      name: 'an HLS playlist behind an ID3 tag (sniffed as MP3) pointing at loopback and /etc/passwd',
      kind: 'call_recording',
      filename: 'call.mp3',
      bytes: () => hlsBehindId3(trap.port),
      status: 'failed',
      reason: /ffprobe could not read the file|no audio stream|empty/,
    },
    {
      name: 'a PNG declaring 50,000 × 50,000 pixels',
      kind: 'photo',
      filename: 'bomb.png',
      bytes: () => pngDeclaring(50_000, 50_000),
      status: 'failed',
      reason: /pixel/,
    },
    {
      name: 'a truncated MP4 (its index was at the end)',
      kind: 'packing_video',
      filename: 'cut.mp4',
      bytes: () => {
        const whole = files.mp4(4);
        return whole.subarray(0, Math.floor(whole.length * 0.6));
      },
      status: 'failed',
      reason: /ffprobe could not read the file/,
    },
    {
      name: 'a truncated faststart MP4 (index intact, media data cut)',
      kind: 'packing_video',
      filename: 'cut-faststart.mp4',
      bytes: () => {
        const whole = files.mp4(8, { faststart: true, size: '640x360' });
        return whole.subarray(0, Math.floor(whole.length * 0.4));
      },
      status: 'partial',
      reason: /could be decoded/,
    },
    {
      name: 'a WAV whose audio stream holds zero samples',
      kind: 'call_recording',
      filename: 'silence.wav',
      bytes: () => emptyWav(),
      status: 'failed',
      reason: /empty/,
    },
    {
      name: 'a video whose header claims 10,000 seconds over a few KB of data',
      kind: 'packing_video',
      filename: 'forever.mp4',
      bytes: () => claimDuration(files.mp4(1, { faststart: true, size: '160x120' }), 10_000),
      status: 'failed',
      reason: /claims 10000 s of media/,
    },
  ];

  it.each(cases)('$name: a recorded failure, and the service keeps serving', async (c) => {
    const bytes = c.bytes();
    const id = await archive(app, bytes, c.kind, c.filename);
    expect(await app.ctx.media.process(id)).toBe(c.status);

    const item = (await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support)))
      .body;
    expect(item.media.status).toBe(c.status);
    expect(item.media.detail).toMatch(c.reason);
    // Our scratch paths never reach the reason shown to support staff.
    expect(item.media.detail).not.toContain(app.ctx.config.media.scratchDir);

    const list = (
      await request(app.url).get(`/v1/evidence/${id}/derivatives`).set(bearer(app.keys.support))
    ).body;
    expect(list.derivatives.some((d: { status: string }) => d.status === 'failed')).toBe(true);
    for (const d of list.derivatives) {
      if (d.status === 'failed') expect(d.detail).toBeTruthy();
      if (d.status !== 'ready') continue;
      const body = (await getBytes(app, d.url)).body;
      expect(body.includes(passwd)).toBe(false);
      expect(body.includes('root:x:0:0')).toBe(false);
    }
    // The custody trail says what happened.
    const trail = await request(app.url)
      .get(`/v1/evidence/${id}/audit`)
      .set(bearer(app.keys.admin));
    const derive = trail.body.events.find((e: { action: string }) => e.action === 'media.derive');
    expect(derive.details.status).toBe(c.status);

    // Nothing was fetched, and the original is still intact and served.
    expect(trap.connections()).toBe(0);
    const content = await getBytes(app, `/v1/evidence/${id}/content`);
    expect(content.body.equals(bytes)).toBe(true);
    expect((await request(app.url).get('/healthz')).status).toBe(200);
  });

  it('refuses to record a ready derivative of a deleted item (a job that raced the deletion)', async () => {
    const id = await archive(app, files.mov(1), 'packing_video', 'raced.mov');
    const del = await request(app.url)
      .delete(`/v1/evidence/${id}`)
      .set(bearer(app.keys.admin))
      .send({ reason: 'wrong shop' });
    expect(del.status).toBe(200);
    expect(await app.ctx.media.process(id)).toBe('skipped');
    const sha = (await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.admin))).body
      .sha256;
    await expect(
      sql`insert into derivatives (item_id, kind, status, source_sha256, sha256, size_bytes, content_type, blob_key)
        values (${id}, 'poster', 'ready', ${sha}, ${'a'.repeat(64)}, 1, 'image/jpeg', 'derived/x')`.execute(
        app.ctx.db,
      ),
    ).rejects.toThrow(/deleted/);
  });

  it('still processes honest files after all of them, and left no scratch files behind', async () => {
    const id = await archive(app, files.mov(2), 'packing_video', 'honest.mov');
    expect(await app.ctx.media.process(id)).toBe('done');
    expect(trap.connections()).toBe(0);
    const scratch = await app.ctx.scratch.sweep(new Date(Date.now() + 60_000));
    expect(scratch).toBe(0);
    // No staging leftovers from derivatives either.
    expect((await storedKeys(app)).filter((k) => k.startsWith('staging/'))).toEqual([]);
    // Failures and successes show in the metrics.
    const metrics = await request(app.url).get('/metrics').set(bearer(app.keys.admin));
    expect(metrics.text).toMatch(/evidence_media_items\{status="failed"\} [1-9]/);
    expect(metrics.text).toMatch(/evidence_media_items\{status="done"\} [1-9]/);
    expect(metrics.text).toMatch(/media_tools_available 1/);
  });

  it('kills a running ffmpeg at shutdown and leaves its job to be retried, not failed', async () => {
    const id = await archive(app, files.mov(30, '1280x720'), 'packing_video', 'long.mov');
    const running = app.ctx.media.process(id, { retryCount: 0, retryLimit: 3 });
    await new Promise((r) => setTimeout(r, 1500));
    app.ctx.media.stop();
    await expect(running).rejects.toThrow();
    const item = (await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support)))
      .body;
    expect(item.media.status).toBe('processing');
    expect(item.media.detail).toMatch(/attempt 1 failed .*; retrying/);
  });
});
