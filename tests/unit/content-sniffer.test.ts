import { sniffContentType } from '../../src/ingest/content-sniffer';

const hex = (h: string, pad = 64) =>
  Buffer.concat([Buffer.from(h, 'hex'), Buffer.alloc(pad, 0x41)]);
const text = (s: string) => Buffer.from(s);

describe('sniffContentType', () => {
  it.each([
    ['MP4 (mp42)', hex('00000018667479706d703432'), 'video/mp4'],
    ['MP4 (isom)', hex('000000206674797069736f6d'), 'video/mp4'],
    ['QuickTime', hex('000000146674797071742020'), 'video/quicktime'],
    ['QuickTime without ftyp', hex('000000086d6f6f76'), 'video/quicktime'],
    ['M4A', hex('00000020667479704d344120'), 'audio/mp4'],
    ['3GP', hex('000000146674797033677034'), 'video/3gpp'],
    ['HEIC', hex('000000186674797068656963'), 'image/heic'],
    ['AVIF', hex('000000186674797061766966'), 'image/avif'],
    [
      'WebM',
      Buffer.concat([hex('1a45dfa3', 0), text('....B\x82\x84webm'), Buffer.alloc(40)]),
      'video/webm',
    ],
    [
      'Matroska',
      Buffer.concat([hex('1a45dfa3', 0), text('....B\x82\x88matroska'), Buffer.alloc(40)]),
      'video/x-matroska',
    ],
    ['AVI', Buffer.concat([text('RIFF'), Buffer.alloc(4), text('AVI LIST')]), 'video/x-msvideo'],
    ['WAV', Buffer.concat([text('RIFF'), Buffer.alloc(4), text('WAVEfmt ')]), 'audio/wav'],
    ['WebP', Buffer.concat([text('RIFF'), Buffer.alloc(4), text('WEBPVP8 ')]), 'image/webp'],
    ['MP3 with ID3', text('ID3\x04\x00rest'), 'audio/mpeg'],
    ['MP3 frame', hex('fffb9064'), 'audio/mpeg'],
    ['AAC ADTS', hex('fff15080'), 'audio/aac'],
    ['Ogg', text('OggS\x00\x02'), 'audio/ogg'],
    ['FLAC', text('fLaC\x00\x00'), 'audio/flac'],
    ['AMR', text('#!AMR\nabc'), 'audio/amr'],
    ['AMR-WB', text('#!AMR-WB\nabc'), 'audio/amr-wb'],
    ['JPEG', hex('ffd8ffe0'), 'image/jpeg'],
    ['PNG', hex('89504e470d0a1a0a'), 'image/png'],
    ['GIF', text('GIF89a....'), 'image/gif'],
    ['HTML', text('<!DOCTYPE html><html></html>'), 'text/html'],
    ['HTML after a BOM and spaces', text('\uFEFF   <script>alert(1)</script>'), 'text/html'],
    ['HLS playlist', text('#EXTM3U\n#EXT-X-VERSION:3\n'), 'application/vnd.apple.mpegurl'],
    ['SVG', text('<svg xmlns="http://www.w3.org/2000/svg"></svg>'), 'application/xml'],
    ['plain text', text('hello world\n'), 'text/plain'],
    ['random binary', hex('00010203fefdfc00'), 'application/octet-stream'],
    ['empty', Buffer.alloc(0), 'application/octet-stream'],
  ])('%s', (_label, head, expected) => {
    expect(sniffContentType(head)).toBe(expected);
  });
});
