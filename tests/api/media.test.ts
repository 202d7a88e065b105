import sharp from 'sharp';
import request from 'supertest';
import {
  bearer,
  deleteFromStore,
  DRIVERS,
  startTestApp,
  storedKeys,
  type Driver,
  type TestApp,
} from '../support/harness';
import { archive, getBytes, MediaFiles, probeBytes } from '../support/media-files';
import { sha256 } from '../support/media';

jest.setTimeout(60_000);

describe.each(DRIVERS)('media pipeline (%s store)', (driver: Driver) => {
  let app: TestApp;
  const files = new MediaFiles();

  beforeAll(async () => {
    app = await startTestApp(driver);
  });
  afterAll(async () => {
    await app.close();
    files.cleanup();
  });

  const derivatives = async (id: string) =>
    (await request(app.url).get(`/v1/evidence/${id}/derivatives`).set(bearer(app.keys.support)))
      .body;

  it('probes a phone MOV and makes its poster, contact sheet and an H.264/AAC preview; the original stays as it was', async () => {
    const original = files.mov(4, '1280x720');
    const id = await archive(app, original, 'packing_video', 'bench-03.mov');

    // Nothing derived yet: each derivative says so with a stable code.
    const early = await request(app.url)
      .get(`/v1/evidence/${id}/poster`)
      .set(bearer(app.keys.support));
    expect(early.status).toBe(404);
    expect(early.body.code).toBe('derivative_not_ready');
    expect(early.body.derivativeStatus).toBe('pending');

    expect(await app.ctx.media.process(id)).toBe('done');

    const item = (await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support)))
      .body;
    expect(item.media.status).toBe('done');
    expect(item.media.probe).toMatchObject({
      durationSeconds: expect.closeTo(4, 0),
      video: { codec: 'mpeg4', width: 1280, height: 720, frameRate: 25 },
      audio: { codec: 'pcm_s16le', sampleRate: 44100, channels: 1 },
    });
    expect(item.media.probe.container).toContain('mov');

    const list = await derivatives(id);
    expect(list.sourceSha256).toBe(sha256(original));
    expect(
      list.derivatives.map((d: { kind: string; status: string }) => [d.kind, d.status]),
    ).toEqual([
      ['poster', 'ready'],
      ['contact_sheet', 'ready'],
      ['preview', 'ready'],
    ]);
    expect(list.playback).toEqual({
      source: 'preview',
      url: `/v1/evidence/${id}/preview`,
      contentType: 'video/mp4',
    });

    // Each derivative is served with its own hash as ETag, and is what its listing says.
    for (const d of list.derivatives) {
      const res = await getBytes(app, d.url);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toContain(d.contentType);
      expect(res.headers.etag).toBe(`"${d.sha256}"`);
      expect(sha256(res.body)).toBe(d.sha256);
      expect(res.body.length).toBe(d.size);
    }
    const poster = await sharp((await getBytes(app, `/v1/evidence/${id}/poster`)).body).metadata();
    expect([poster.format, poster.width, poster.height]).toEqual(['jpeg', 1280, 720]);
    // A video's thumbnail is its poster.
    const thumb = await getBytes(app, `/v1/evidence/${id}/thumbnail`);
    expect(thumb.headers.etag).toBe(`"${list.derivatives[0].sha256}"`);

    const sheet = await sharp(
      (await getBytes(app, `/v1/evidence/${id}/contact-sheet`)).body,
    ).metadata();
    // 3×3 tiles of 320×180 with 4 px gaps.
    expect([sheet.format, sheet.width, sheet.height]).toEqual([
      'jpeg',
      3 * 320 + 4 * 4,
      3 * 180 + 4 * 4,
    ]);

    const preview = await getBytes(app, `/v1/evidence/${id}/preview`);
    const probed = probeBytes(files.dir, preview.body);
    const v = probed.streams.find((s: { codec_type: string }) => s.codec_type === 'video');
    const a = probed.streams.find((s: { codec_type: string }) => s.codec_type === 'audio');
    expect([v.codec_name, v.pix_fmt, v.width, v.height]).toEqual(['h264', 'yuv420p', 1280, 720]);
    expect(a.codec_name).toBe('aac');
    // faststart: the index (moov) comes before the media data, so a browser plays from byte 0.
    expect(preview.body.indexOf('moov')).toBeLessThan(preview.body.indexOf('mdat'));

    // Seeking: a range of the preview.
    const ranged = await getBytes(app, `/v1/evidence/${id}/preview`, { Range: 'bytes=100-199' });
    expect(ranged.status).toBe(206);
    expect(ranged.headers['content-range']).toBe(`bytes 100-199/${preview.body.length}`);
    expect(ranged.body.equals(preview.body.subarray(100, 200))).toBe(true);

    // The original is untouched.
    const content = await getBytes(app, `/v1/evidence/${id}/content`);
    expect(sha256(content.body)).toBe(sha256(original));

    // Derivatives live apart from originals, content-addressed.
    const keys = await storedKeys(app);
    for (const d of list.derivatives) {
      expect(keys).toContain(
        `derived/sha256/${d.sha256.slice(0, 2)}/${d.sha256.slice(2, 4)}/${d.sha256}`,
      );
    }

    // Every derivative read is in the item's custody trail, with what was read.
    const trail = await request(app.url)
      .get(`/v1/evidence/${id}/audit`)
      .set(bearer(app.keys.admin));
    const reads = trail.body.events.filter(
      (e: { action: string }) => e.action === 'derivative.download',
    );
    expect(reads.map((e: { details: { derivative: string } }) => e.details.derivative)).toEqual(
      expect.arrayContaining(['poster', 'contact_sheet', 'preview']),
    );
    expect(reads.find((e: { details: { range: string } }) => e.details.range)).toMatchObject({
      actor: { keyId: app.keys.support.id },
      details: { derivative: 'preview', range: 'bytes=100-199', sourceSha256: sha256(original) },
    });
    const derived = trail.body.events.find((e: { action: string }) => e.action === 'media.derive');
    expect(derived.details).toMatchObject({ status: 'done', sourceSha256: sha256(original) });
  });

  it.each(['mkv', 'webm', 'avi', 'hevc-mp4'] as const)(
    'makes an H.264/AAC preview of a %s clip',
    async (container) => {
      const id = await archive(app, files.video(container), 'packing_video', `clip.${container}`);
      expect(await app.ctx.media.process(id)).toBe('done');
      const preview = await getBytes(app, `/v1/evidence/${id}/preview`);
      const streams = probeBytes(files.dir, preview.body).streams as { codec_name: string }[];
      expect(streams.map((st) => st.codec_name).sort()).toEqual(['aac', 'h264']);
    },
  );

  it('makes no preview of an H.264/AAC MP4 (browsers play it): the player is pointed at the original', async () => {
    const id = await archive(app, files.mp4(2), 'packing_video', 'bench-04.mp4');
    expect(await app.ctx.media.process(id)).toBe('done');
    const list = await derivatives(id);
    const preview = list.derivatives.find((d: { kind: string }) => d.kind === 'preview');
    expect(preview).toMatchObject({ status: 'not_applicable', sha256: null });
    expect(list.playback).toEqual({
      source: 'original',
      url: `/v1/evidence/${id}/content`,
      contentType: 'video/mp4',
    });
    const res = await request(app.url)
      .get(`/v1/evidence/${id}/preview`)
      .set(bearer(app.keys.support));
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({
      code: 'derivative_not_applicable',
      contentUrl: `/v1/evidence/${id}/content`,
    });
  });

  it('draws a stereo PBX recording as one waveform lane per channel and makes an AAC preview of its mu-law audio', async () => {
    const id = await archive(app, files.mulawWav(3, 2), 'call_recording', 'call-4711.wav');
    expect(await app.ctx.media.process(id)).toBe('done');
    const list = await derivatives(id);
    expect(
      list.derivatives.map((d: { kind: string; status: string }) => [d.kind, d.status]),
    ).toEqual([
      ['waveform', 'ready'],
      ['preview', 'ready'],
    ]);
    const wave = await sharp((await getBytes(app, `/v1/evidence/${id}/waveform`)).body).metadata();
    expect([wave.format, wave.width, wave.height]).toEqual(['png', 1600, 320]);
    const preview = await getBytes(app, `/v1/evidence/${id}/preview`);
    expect(preview.headers['content-type']).toContain('audio/mp4');
    const [stream] = probeBytes(files.dir, preview.body).streams;
    expect([stream.codec_name, Number(stream.sample_rate), stream.channels]).toEqual([
      'aac',
      16000,
      2,
    ]);
    expect(list.playback.source).toBe('preview');
    // A call has no contact sheet.
    const sheet = await request(app.url)
      .get(`/v1/evidence/${id}/contact-sheet`)
      .set(bearer(app.keys.support));
    expect(sheet.status).toBe(404);
    expect(sheet.body.code).toBe('derivative_not_applicable');
  });

  it.each([
    ['an AMR-NB phone recording', 'call.amr', () => files.amr(3)],
    ['an A-law WAV', 'call-alaw.wav', () => files.alawWav(2)],
  ])('makes a waveform and an AAC preview of %s', async (_name, filename, make) => {
    const id = await archive(app, make(), 'call_recording', filename);
    expect(await app.ctx.media.process(id)).toBe('done');
    const list = await derivatives(id);
    expect(list.derivatives.map((d: { status: string }) => d.status)).toEqual(['ready', 'ready']);
    expect(list.playback).toMatchObject({ source: 'preview', contentType: 'audio/mp4' });
    const [stream] = probeBytes(
      files.dir,
      (await getBytes(app, `/v1/evidence/${id}/preview`)).body,
    ).streams;
    expect([stream.codec_name, Number(stream.sample_rate)]).toEqual(['aac', 16000]);
  });

  it('draws a mono MP3 call in one lane and plays the MP3 as it is', async () => {
    const id = await archive(app, files.mp3(2), 'call_recording', 'call.mp3');
    expect(await app.ctx.media.process(id)).toBe('done');
    const wave = await sharp((await getBytes(app, `/v1/evidence/${id}/waveform`)).body).metadata();
    expect(wave.height).toBe(160);
    const list = await derivatives(id);
    expect(list.playback).toMatchObject({ source: 'original', contentType: 'audio/mpeg' });
  });

  it('thumbnails a photo without its EXIF, while the original keeps every byte of it', async () => {
    const photo = await files.jpegWithExif();
    expect((await sharp(photo).metadata()).exif).toBeDefined();
    const id = await archive(app, photo, 'photo', 'parcel.jpg');
    expect(await app.ctx.media.process(id)).toBe('done');
    const thumb = await getBytes(app, `/v1/evidence/${id}/thumbnail`);
    expect(thumb.status).toBe(200);
    const meta = await sharp(thumb.body).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 480, 320]);
    expect(meta.exif).toBeUndefined();
    expect(thumb.body.includes('secret-serial-4711')).toBe(false);
    expect(thumb.body.includes('EvidenceCam')).toBe(false);
    const original = await getBytes(app, `/v1/evidence/${id}/content`);
    expect(original.body.equals(photo)).toBe(true);
    const item = (await request(app.url).get(`/v1/evidence/${id}`).set(bearer(app.keys.support)))
      .body;
    expect(item.media.probe).toMatchObject({
      container: 'jpeg',
      image: { width: 1200, height: 800 },
    });
  });

  it('rebuilds a derivative whose stored bytes vanished, on an admin’s request', async () => {
    const id = await archive(app, files.mov(2), 'packing_video', 'rebuild.mov');
    expect(await app.ctx.media.process(id)).toBe('done');
    const poster = (await derivatives(id)).derivatives[0];
    const key = `derived/sha256/${poster.sha256.slice(0, 2)}/${poster.sha256.slice(2, 4)}/${poster.sha256}`;
    await deleteFromStore(app, key);
    const gone = await request(app.url)
      .get(`/v1/evidence/${id}/poster`)
      .set(bearer(app.keys.support));
    expect(gone.status).toBe(500);
    expect(gone.body.code).toBe('evidence_unavailable');
    const denied = await request(app.url)
      .post(`/v1/evidence/${id}/derivatives/rebuild`)
      .set(bearer(app.keys.support));
    expect(denied.status).toBe(403);
    const rebuild = await request(app.url)
      .post(`/v1/evidence/${id}/derivatives/rebuild`)
      .set(bearer(app.keys.admin));
    expect(rebuild.status).toBe(202);
    expect(rebuild.body).toEqual({ itemId: id, status: 'queued', repaired: ['poster'] });
    expect(await app.ctx.media.process(id)).toBe('done');
    const back = await getBytes(app, `/v1/evidence/${id}/poster`);
    expect(back.status).toBe(200);
    expect(sha256(back.body)).toBe(poster.sha256);
  });

  it('keeps derivatives from ingest keys, and removes them with a deleted item', async () => {
    // Its own picture size and length: no other item of this suite shares its derivatives' bytes
    // (content addressing would rightly keep a blob another item still uses).
    const id = await archive(app, files.mov(3, '480x270'), 'packing_video', 'gone.mov');
    expect(await app.ctx.media.process(id)).toBe('done');
    const list = await derivatives(id);
    const forbidden = await request(app.url)
      .get(`/v1/evidence/${id}/poster`)
      .set(bearer(app.keys.ingest));
    expect(forbidden.status).toBe(403);

    const del = await request(app.url)
      .delete(`/v1/evidence/${id}`)
      .set(bearer(app.keys.admin))
      .send({ reason: 'uploaded to the wrong shop' });
    expect(del.status).toBe(200);
    const keys = await storedKeys(app);
    for (const d of list.derivatives.filter((x: { sha256: string | null }) => x.sha256)) {
      expect(keys.some((k) => k.endsWith(d.sha256))).toBe(false);
    }
    const res = await request(app.url)
      .get(`/v1/evidence/${id}/poster`)
      .set(bearer(app.keys.support));
    expect(res.status).toBe(410);
    expect(res.body.code).toBe('evidence_deleted');
  });
});
