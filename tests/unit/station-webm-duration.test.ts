import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebmProgress, webmSeconds, withDuration } from '../../web/src/station/webm-duration';

/**
 * The station writes into a MediaRecorder WebM the Duration its header lacks
 * (web/src/station/webm-duration.ts). Checked on a WebM laid out as Chromium's MediaRecorder
 * writes it (no SeekHead, Clusters of unknown size), and against ffprobe, which must read the
 * length written.
 */
const id = (hex: string) => Buffer.from(hex, 'hex');
const size = (n: number) => {
  // 8-byte size vint, as libwebm writes many of its sizes.
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  b[0] = 0x01;
  return b;
};
const el = (hex: string, ...data: Buffer[]) => {
  const body = Buffer.concat(data);
  return Buffer.concat([id(hex), size(body.length), body]);
};
const uint = (hex: string, n: number, bytes = 4) => {
  const b = Buffer.alloc(bytes);
  b.writeUIntBE(n, 0, bytes);
  return el(hex, b);
};
const UNKNOWN = id('01ffffffffffffff');

/** One SimpleBlock at `rel` ms into its cluster, of track 1 (video) or 2 (sound). */
const block = (rel: number, track = 1) => {
  const b = Buffer.alloc(4 + 20);
  b[0] = 0x80 | track;
  b.writeInt16BE(rel, 1);
  b[3] = 0x80;
  return el('a3', b);
};

function chromeLikeWebm(clusters: { at: number; blocks: number[]; sound?: number[] }[]): Buffer {
  const header = el(
    '1a45dfa3',
    uint('4286', 1, 1),
    uint('42f7', 1, 1),
    uint('42f2', 4, 1),
    uint('42f3', 8, 1),
    el('4282', Buffer.from('webm')),
    uint('4287', 4, 1),
    uint('4285', 2, 1),
  );
  const info = el('1549a966', uint('2ad7b1', 1_000_000, 3), el('4d80', Buffer.from('Chrome')));
  const tracks = el(
    '1654ae6b',
    el(
      'ae',
      uint('d7', 1, 1),
      uint('73c5', 1, 1),
      uint('83', 1, 1),
      el('86', Buffer.from('V_VP8')),
      el('e0', uint('b0', 320, 2), uint('ba', 240, 2)),
    ),
    el(
      'ae',
      uint('d7', 2, 1),
      uint('73c5', 2, 1),
      uint('83', 2, 1),
      el('86', Buffer.from('A_OPUS')),
    ),
  );
  const body = clusters.map((c) =>
    Buffer.concat([
      id('1f43b675'),
      UNKNOWN,
      uint('e7', c.at),
      ...c.blocks.map((t) => block(t)),
      ...(c.sound ?? []).map((t) => block(t, 2)),
    ]),
  );
  return Buffer.concat([header, id('18538067'), UNKNOWN, info, tracks, ...body]);
}

describe('the WebM duration a live recorder leaves out', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'station-webm-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const probe = (bytes: Uint8Array, entries = 'format=duration') => {
    const file = path.join(dir, `${Math.random()}.webm`);
    writeFileSync(file, bytes);
    return execFileSync(
      'ffprobe',
      ['-v', 'error', '-f', 'matroska', '-show_entries', entries, '-of', 'csv=p=0', file],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }, // its decoder's complaints: our blocks hold no picture
    ).trim();
  };

  const file = chromeLikeWebm([
    { at: 0, blocks: [0, 33, 66, 100] },
    // The sound runs on past the last frame, as on a busy PC: the video decides.
    { at: 5000, blocks: [0, 33, 1200, 2466], sound: [0, 2500, 2980] },
  ]);

  it('measures the blocks across clusters of unknown size', () => {
    expect(webmSeconds(file)).toBeCloseTo(7.466, 3);
    // Cut inside a block (a piece lost in a crash): the blocks before it count.
    expect(webmSeconds(file.subarray(0, file.length - 3 * 35 - 10))).toBeCloseTo(6.2, 3);
    expect(webmSeconds(Buffer.from('not a webm at all'))).toBeNull();
  });

  it('follows the recording piece by piece, however the pieces cut it', () => {
    for (const cut of [1, 7, 64, 1000]) {
      const progress = new WebmProgress();
      const seen: (number | null)[] = [];
      for (let at = 0; at < file.length; at += cut) {
        progress.push(file.subarray(at, at + cut));
        seen.push(progress.videoSeconds);
      }
      expect(progress.broken).toBe(false);
      expect(progress.videoSeconds).toBeCloseTo(7.466, 3);
      // It only ever grows, and the sound never counts.
      const known = seen.filter((s): s is number => s !== null);
      expect(known).toEqual([...known].sort((a, b) => a - b));
      if (cut < 100) expect(known).toContain(0.1); // seen before the second cluster came
    }
  });

  it('writes the Duration into Segment Info, where ffprobe reads it', () => {
    expect(probe(file)).toBe('N/A');
    const fixed = withDuration(file.subarray(0, 200), 7.466)!;
    expect(fixed).not.toBeNull();
    const whole = Buffer.concat([fixed, file.subarray(200)]);
    expect(Number(probe(whole))).toBeCloseTo(7.466, 3);
    // Nothing else moved: the blocks are read as before.
    expect(webmSeconds(whole)).toBeCloseTo(7.466, 3);
    // Once there, it is not written twice.
    expect(withDuration(whole, 9)).toBeNull();
  });

  it('leaves a file with an index alone rather than move what it points at', () => {
    // ffmpeg's live WebM has a SeekHead (positions in the Segment) and no room after Info.
    const live = execFileSync('ffmpeg', [
      ...['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10', '-t', '2'],
      ...['-c:v', 'libvpx', '-live', '1', '-f', 'webm', 'pipe:1'],
    ]);
    expect(probe(live)).toBe('N/A');
    const last = Math.max(...probe(live, 'packet=pts_time').split('\n').map(Number));
    expect(webmSeconds(live)).toBeCloseTo(last, 2);
    expect(withDuration(live, 2)).toBeNull();
  });
});
