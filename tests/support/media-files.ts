import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import request from 'supertest';
import { bearer, type TestApp } from './harness';
import { sha256 } from './media';
import { upload } from './multipart';

/**
 * Real media made by the system's ffmpeg for the tests (the same binary the service uses). Each
 * file carries a random title tag, so every call gives new bytes: new evidence, not a duplicate.
 */
export class MediaFiles {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'evidence-media-fixtures-'));

  private ffmpeg(args: string[], name: string): Buffer {
    const out = path.join(this.dir, name);
    execFileSync(
      'ffmpeg',
      [
        ...['-hide_banner', '-loglevel', 'error', '-nostdin'],
        ...args,
        ...['-metadata', `title=${randomBytes(8).toString('hex')}`, '-y', out],
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    return readFileSync(out);
  }

  /** MPEG-4 Part 2 video with PCM audio in a QuickTime MOV: browsers cannot play it. */
  mov(seconds = 4, size = '640x360'): Buffer {
    return this.ffmpeg(
      [
        ...['-f', 'lavfi', '-i', `testsrc2=s=${size}:d=${seconds}:r=25`],
        ...['-f', 'lavfi', '-i', `sine=f=300:d=${seconds}`],
        ...['-c:v', 'mpeg4', '-c:a', 'pcm_s16le', '-shortest', '-f', 'mov'],
      ],
      'clip.mov',
    );
  }

  /** A short clip in another container or codec (MKV, WebM, AVI, HEVC in MP4). */
  video(container: 'mkv' | 'webm' | 'avi' | 'hevc-mp4', seconds = 2): Buffer {
    const codecs: Record<typeof container, string[]> = {
      mkv: ['-c:v', 'libx264', '-preset', 'ultrafast', '-c:a', 'aac', '-f', 'matroska'],
      webm: ['-c:v', 'libvpx', '-b:v', '300k', '-c:a', 'libopus', '-f', 'webm'],
      avi: ['-c:v', 'mpeg4', '-c:a', 'pcm_s16le', '-f', 'avi'],
      'hevc-mp4': [
        '-c:v',
        'libx265',
        '-preset',
        'ultrafast',
        '-tag:v',
        'hvc1',
        '-c:a',
        'aac',
        '-f',
        'mp4',
      ],
    };
    return this.ffmpeg(
      [
        ...['-f', 'lavfi', '-i', `testsrc2=s=320x240:d=${seconds}:r=25`],
        ...['-f', 'lavfi', '-i', `sine=f=500:d=${seconds}`, '-shortest'],
        ...codecs[container],
      ],
      `clip.${container}`,
    );
  }

  /** H.264/AAC MP4, as browsers play it; `faststart` puts the index first. */
  mp4(seconds = 3, opts: { faststart?: boolean; size?: string } = {}): Buffer {
    return this.ffmpeg(
      [
        ...['-f', 'lavfi', '-i', `testsrc2=s=${opts.size ?? '320x240'}:d=${seconds}:r=25`],
        ...['-f', 'lavfi', '-i', `sine=f=500:d=${seconds}`],
        ...['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p'],
        ...['-c:a', 'aac', '-shortest'],
        ...(opts.faststart ? ['-movflags', '+faststart'] : []),
        ...['-f', 'mp4'],
      ],
      'clip.mp4',
    );
  }

  /** A PBX recording: 8 kHz mu-law WAV, agent and customer on separate channels when stereo. */
  mulawWav(seconds = 3, channels: 1 | 2 = 2): Buffer {
    const inputs =
      channels === 2
        ? [
            '-f',
            'lavfi',
            '-i',
            `sine=f=400:d=${seconds}`,
            '-f',
            'lavfi',
            '-i',
            `sine=f=900:d=${seconds}`,
          ]
        : ['-f', 'lavfi', '-i', `sine=f=400:d=${seconds}`];
    return this.ffmpeg(
      [
        ...inputs,
        ...(channels === 2 ? ['-filter_complex', '[0][1]amerge=inputs=2'] : []),
        ...['-ar', '8000', '-c:a', 'pcm_mulaw', '-f', 'wav'],
      ],
      'call.wav',
    );
  }

  /** A PBX recording in A-law (European phone networks). */
  alawWav(seconds = 2): Buffer {
    return this.ffmpeg(
      [
        ...['-f', 'lavfi', '-i', `sine=f=500:d=${seconds}`],
        ...['-ar', '8000', '-c:a', 'pcm_alaw', '-f', 'wav'],
      ],
      'alaw.wav',
    );
  }

  /**
   * An AMR-NB recording as phones make it (Debian's ffmpeg decodes AMR but cannot encode it):
   * 12.2 kbit/s frames, 50 a second, each a header byte and 31 bytes of speech data.
   */
  amr(seconds = 3): Buffer {
    const frames: Buffer[] = [Buffer.from('#!AMR\n', 'latin1')];
    for (let i = 0; i < seconds * 50; i++) frames.push(Buffer.from([0x3c]), randomBytes(31));
    return Buffer.concat(frames);
  }

  /** An MP3 call: browsers play it as it is. */
  mp3(seconds = 2): Buffer {
    return this.ffmpeg(
      [
        ...['-f', 'lavfi', '-i', `sine=f=600:d=${seconds}`],
        ...['-c:a', 'libmp3lame', '-b:a', '64k', '-f', 'mp3'],
      ],
      'call.mp3',
    );
  }

  /** A JPEG photo carrying EXIF (camera and a GPS position) that thumbnails must not carry. */
  async jpegWithExif(): Promise<Buffer> {
    return sharp({
      create: { width: 1200, height: 800, channels: 3, background: randomColour() },
    })
      .withExif({
        IFD0: { Make: 'EvidenceCam', Model: 'PK-03', Copyright: 'secret-serial-4711' },
        IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '52/1 31/1 0/1' },
      })
      .jpeg()
      .toBuffer();
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const randomColour = () => ({ r: randomInt(), g: randomInt(), b: randomInt() });
const randomInt = () => randomBytes(1)[0]!;

// --- Hostile files ---------------------------------------------------------------------------

/** An HLS playlist whose segments are a loopback URL and a local file. */
export function hlsPlaylist(port: number): Buffer {
  return Buffer.from(
    [
      '#EXTM3U',
      '#EXT-X-MEDIA-SEQUENCE:0',
      '#EXT-X-TARGETDURATION:10',
      '#EXTINF:10.0,',
      `http://127.0.0.1:${port}/segment0.ts`,
      '#EXTINF:10.0,',
      'file:///etc/passwd',
      '#EXTINF:10.0,',
      `http://127.0.0.1:${port}/segment1.ts`,
      '#EXT-X-ENDLIST',
      `# ${randomBytes(8).toString('hex')}`,
      '',
    ].join('\n'),
  );
}

/** The playlist behind an MP4 `ftyp` box: sniffed as video/mp4. */
export function hlsInMp4(port: number): Buffer {
  const ftyp = Buffer.from('00000018667479706d703432000000006d703432', 'hex');
  return Buffer.concat([ftyp, hlsPlaylist(port)]);
}

/**
 * The playlist behind an ID3v2 tag: sniffed as audio/mpeg, while ffmpeg left to guess skips the
 * tag and opens the playlist (the classic way a "recording" makes ffmpeg fetch URLs).
 */
export function hlsBehindId3(port: number): Buffer {
  const tag = Buffer.concat([
    Buffer.from('ID3\x04\x00\x00\x00\x00\x00\x0a', 'latin1'),
    Buffer.alloc(10),
  ]);
  return Buffer.concat([tag, hlsPlaylist(port)]);
}

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A valid PNG header declaring width × height pixels, with a few bytes of image data. */
export function pngDeclaring(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([
    Buffer.from('89504e470d0a1a0a', 'hex'),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', randomBytes(64)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A WAV whose data chunk holds zero samples. */
export function emptyWav(): Buffer {
  const fmt = Buffer.alloc(16);
  fmt.writeUInt16LE(1, 0); // PCM
  fmt.writeUInt16LE(1, 2); // mono
  fmt.writeUInt32LE(8000, 4);
  fmt.writeUInt32LE(16000, 8);
  fmt.writeUInt16LE(2, 12);
  fmt.writeUInt16LE(16, 14);
  // A JUNK chunk of random bytes (readers skip it) makes each file new evidence.
  const junk = Buffer.concat([Buffer.from('JUNK\x08\x00\x00\x00', 'latin1'), randomBytes(8)]);
  const chunks = Buffer.concat([
    Buffer.from('WAVEfmt '),
    Buffer.from([16, 0, 0, 0]),
    fmt,
    junk,
    Buffer.from('data'),
    Buffer.alloc(4),
  ]);
  const riff = Buffer.alloc(8);
  riff.write('RIFF', 0, 'latin1');
  riff.writeUInt32LE(chunks.length, 4);
  return Buffer.concat([riff, chunks]);
}

/** Rewrites the movie header (mvhd) of an MP4 so it claims `seconds` of duration. */
export function claimDuration(mp4: Buffer, seconds: number): Buffer {
  const out = Buffer.from(mp4);
  const at = out.indexOf('mvhd');
  if (at < 0 || out[at + 4] !== 0) throw new Error('expected a version 0 mvhd box');
  const timescale = out.readUInt32BE(at + 16);
  out.writeUInt32BE(timescale * seconds, at + 20);
  return out;
}

// --- Through the API -------------------------------------------------------------------------

/** Archives bytes as evidence through the API and returns the new item's id. */
export async function archive(
  app: TestApp,
  bytes: Buffer,
  kind: string,
  filename: string,
): Promise<string> {
  const res = await upload(app.url, app.keys.ingest.key, [['kind', kind]], {
    filename,
    content: bytes,
  });
  expect(res.status).toBe(201);
  return res.json().id as string;
}

/** A binary GET through the API (supertest buffers the body). */
export function getBytes(app: TestApp, url: string, headers: Record<string, string> = {}) {
  return request(app.url)
    .get(url)
    .set(bearer(app.keys.support))
    .set(headers)
    .buffer(true)
    .parse((res, cb) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => cb(null, Buffer.concat(chunks)));
    });
}

/** ffprobe's view of bytes we were served, for checking what a derivative really is. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function probeBytes(dir: string, bytes: Buffer): Record<string, any> {
  const file = path.join(dir, `probe-${sha256(bytes)}`);
  writeFileSync(file, bytes);
  const out = execFileSync('ffprobe', [
    ...['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', file],
  ]);
  return JSON.parse(out.toString());
}
