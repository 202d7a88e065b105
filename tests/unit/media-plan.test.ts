import {
  contactSheetTimes,
  demuxerFor,
  formatTimestamp,
  implausibility,
  isBrowserPlayable,
  posterTime,
  previewSampleRate,
  type MediaProbe,
} from '../../src/media/media-plan';
import { sniffContentType } from '../../src/ingest/content-sniffer';

const probe = (p: Partial<MediaProbe>): MediaProbe => ({
  container: null,
  durationSeconds: 10,
  bitRate: null,
  video: null,
  audio: null,
  creationTime: null,
  tags: {},
  ...p,
});
const video = (codec: string, pixelFormat = 'yuv420p') => ({
  codec,
  profile: null,
  width: 1920,
  height: 1080,
  displayWidth: 1920,
  displayHeight: 1080,
  rotation: 0,
  frameRate: 30,
  pixelFormat,
  bitRate: null,
});
const audio = (codec: string) => ({
  codec,
  sampleRate: 8000,
  channels: 1,
  channelLayout: 'mono',
  bitRate: null,
});

describe('media plan', () => {
  it('forces a demuxer for every audio and video type the sniffer recognises', () => {
    const heads: Buffer[] = [
      Buffer.from('00000018667479706d703432', 'hex'), // mp4
      Buffer.from('000000146674797071742020', 'hex'), // mov
      Buffer.from('0000001466747970336770', 'hex'), // 3gp
      Buffer.from('000000146674797033673261', 'hex'), // 3g2
      Buffer.from('00000014667479704d344120', 'hex'), // m4a
      Buffer.concat([Buffer.from('1a45dfa3', 'hex'), Buffer.from('....webm')]),
      Buffer.from('1a45dfa3', 'hex'),
      Buffer.from('RIFF\0\0\0\0WAVE'),
      Buffer.from('RIFF\0\0\0\0AVI '),
      Buffer.from('FORM\0\0\0\0AIFF'),
      Buffer.from('caff'),
      Buffer.from('OggS'),
      Buffer.from('fLaC'),
      Buffer.from('#!AMR\n'),
      Buffer.from('#!AMR-WB\n'),
      Buffer.from('ID3'),
      Buffer.from('FLV'),
      Buffer.from('000001ba', 'hex'),
      Buffer.from('fff1', 'hex'),
      Buffer.from('fffb', 'hex'),
    ];
    const ts = Buffer.alloc(188 * 4);
    for (let i = 0; i < 4; i++) ts[i * 188] = 0x47;
    heads.push(ts);
    for (const head of heads) {
      const type = sniffContentType(Buffer.concat([head, Buffer.alloc(64, 1)]));
      expect(type).toMatch(/^(audio|video)\//);
      expect([type, demuxerFor(type)]).toEqual([type, expect.any(String)]);
    }
    expect(demuxerFor('application/vnd.apple.mpegurl')).toBeUndefined();
    expect(demuxerFor('text/plain')).toBeUndefined();
  });

  it('knows what browsers play as it is', () => {
    expect(
      isBrowserPlayable('video/mp4', probe({ video: video('h264'), audio: audio('aac') })),
    ).toBe(true);
    expect(isBrowserPlayable('video/mp4', probe({ video: video('h264') }))).toBe(true);
    expect(
      isBrowserPlayable('video/mp4', probe({ video: video('hevc'), audio: audio('aac') })),
    ).toBe(false);
    expect(isBrowserPlayable('video/mp4', probe({ video: video('h264', 'yuv422p') }))).toBe(false);
    expect(
      isBrowserPlayable('video/mp4', probe({ video: video('h264'), audio: audio('pcm_s16le') })),
    ).toBe(false);
    expect(
      isBrowserPlayable('video/quicktime', probe({ video: video('h264'), audio: audio('aac') })),
    ).toBe(false);
    expect(
      isBrowserPlayable('video/webm', probe({ video: video('vp9'), audio: audio('opus') })),
    ).toBe(false);
    expect(isBrowserPlayable('audio/wav', probe({ audio: audio('pcm_mulaw') }))).toBe(false);
    expect(isBrowserPlayable('audio/wav', probe({ audio: audio('pcm_alaw') }))).toBe(false);
    expect(isBrowserPlayable('audio/wav', probe({ audio: audio('pcm_s16le') }))).toBe(true);
    expect(isBrowserPlayable('audio/mpeg', probe({ audio: audio('mp3') }))).toBe(true);
    expect(isBrowserPlayable('audio/amr', probe({ audio: audio('amr_nb') }))).toBe(false);
  });

  it('refuses probes no honest file gives', () => {
    expect(implausibility('packing_video', probe({ audio: audio('aac') }), 1e6)).toMatch(
      /no video/,
    );
    expect(implausibility('call_recording', probe({ video: video('h264') }), 1e6)).toMatch(
      /no audio/,
    );
    expect(
      implausibility(
        'call_recording',
        probe({ audio: audio('pcm_s16le'), durationSeconds: 0 }),
        44,
      ),
    ).toMatch(/empty/);
    expect(
      implausibility(
        'call_recording',
        probe({ audio: audio('pcm_s16le'), durationSeconds: null }),
        44,
      ),
    ).toMatch(/empty/);
    expect(
      implausibility(
        'packing_video',
        probe({ video: video('h264'), durationSeconds: 10_000 }),
        4096,
      ),
    ).toMatch(/claims 10000 s of media, but the file holds only 4096 bytes/);
    // AMR-NB at its lowest rate (4.75 kbit/s) is an honest phone recording.
    expect(
      implausibility(
        'call_recording',
        probe({ audio: audio('amr_nb'), durationSeconds: 600 }),
        600 * 594,
      ),
    ).toBeUndefined();
    expect(implausibility('packing_video', probe({ video: video('h264') }), 5e6)).toBeUndefined();
  });

  it('spreads contact-sheet frames across the clip and labels them', () => {
    expect(contactSheetTimes(90, 9)).toEqual([5, 15, 25, 35, 45, 55, 65, 75, 85]);
    expect(posterTime(4)).toBeCloseTo(0.4);
    expect(posterTime(600)).toBe(2);
    expect(formatTimestamp(7.9)).toBe('0:07');
    expect(formatTimestamp(765)).toBe('12:45');
    expect(formatTimestamp(3723)).toBe('1:02:03');
  });

  it('raises phone audio to 16 kHz for previews and caps at 48 kHz', () => {
    expect(previewSampleRate(8000)).toBe(16000);
    expect(previewSampleRate(44100)).toBe(44100);
    expect(previewSampleRate(96000)).toBe(48000);
    expect(previewSampleRate(null)).toBe(16000);
  });
});
