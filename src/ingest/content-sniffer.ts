/**
 * Content type from magic bytes. The client's Content-Type is never trusted; an upload is what its
 * first bytes say it is. Only formats evidence actually arrives in are recognised; anything else
 * is reported as text or octet-stream so the kind allow-list refuses it.
 */
export const SNIFF_BYTES = 4100;

const ascii = (buf: Buffer, start: number, end: number) => buf.toString('latin1', start, end);
const startsWith = (buf: Buffer, bytes: number[], offset = 0) =>
  buf.length >= offset + bytes.length && bytes.every((b, i) => buf[offset + i] === b);

export function sniffContentType(head: Buffer): string {
  if (head.length === 0) return 'application/octet-stream';

  // ISO base media (MP4, MOV, M4A, 3GP, HEIF/AVIF): a size then "ftyp" and the major brand.
  if (head.length >= 12 && ascii(head, 4, 8) === 'ftyp') return isoBrandType(head);
  // QuickTime files without ftyp begin directly with a moov/mdat/wide/free atom.
  if (head.length >= 8 && ['moov', 'mdat', 'wide', 'free', 'skip'].includes(ascii(head, 4, 8))) {
    return 'video/quicktime';
  }
  if (startsWith(head, [0x1a, 0x45, 0xdf, 0xa3])) {
    // EBML: the DocType element tells WebM from Matroska.
    return head.subarray(0, 64).includes('webm') ? 'video/webm' : 'video/x-matroska';
  }
  if (ascii(head, 0, 4) === 'RIFF' && head.length >= 12) {
    const form = ascii(head, 8, 12);
    if (form === 'WAVE') return 'audio/wav';
    if (form === 'AVI ') return 'video/x-msvideo';
    if (form === 'WEBP') return 'image/webp';
  }
  if (ascii(head, 0, 4) === 'FORM' && ['AIFF', 'AIFC'].includes(ascii(head, 8, 12))) {
    return 'audio/aiff';
  }
  if (ascii(head, 0, 4) === 'caff') return 'audio/x-caf';
  if (ascii(head, 0, 4) === 'OggS') return 'audio/ogg';
  if (ascii(head, 0, 4) === 'fLaC') return 'audio/flac';
  if (ascii(head, 0, 9) === '#!AMR-WB\n') return 'audio/amr-wb';
  if (ascii(head, 0, 6) === '#!AMR\n') return 'audio/amr';
  if (ascii(head, 0, 3) === 'ID3') return 'audio/mpeg';
  if (ascii(head, 0, 3) === 'FLV') return 'video/x-flv';
  if (startsWith(head, [0x00, 0x00, 0x01, 0xba])) return 'video/mpeg';
  if (isMpegTs(head)) return 'video/mp2t';
  if (startsWith(head, [0xff, 0xd8, 0xff])) return 'image/jpeg';
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'image/png';
  if (ascii(head, 0, 6) === 'GIF87a' || ascii(head, 0, 6) === 'GIF89a') return 'image/gif';
  if (startsWith(head, [0x49, 0x49, 0x2a, 0x00]) || startsWith(head, [0x4d, 0x4d, 0x00, 0x2a])) {
    return 'image/tiff';
  }
  // MPEG audio frame sync (MP3 without ID3) and AAC ADTS, checked after all longer signatures.
  if (head.length >= 2 && head[0] === 0xff) {
    const b1 = head[1]!;
    if ((b1 & 0xf6) === 0xf0) return 'audio/aac';
    if ((b1 & 0xe0) === 0xe0 && (b1 & 0x06) !== 0) return 'audio/mpeg';
  }
  return looksLikeText(head) ? textType(head) : 'application/octet-stream';
}

function isoBrandType(head: Buffer): string {
  const brand = ascii(head, 8, 12);
  if (brand === 'qt  ') return 'video/quicktime';
  if (brand === 'M4A ' || brand === 'M4B ' || brand === 'F4A ') return 'audio/mp4';
  if (['avif', 'avis'].includes(brand)) return 'image/avif';
  if (['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx'].includes(brand)) return 'image/heic';
  if (['mif1', 'msf1'].includes(brand)) return 'image/heif';
  if (brand.startsWith('3g2')) return 'video/3gpp2';
  if (brand.startsWith('3gp')) return 'video/3gpp';
  return 'video/mp4';
}

function isMpegTs(head: Buffer): boolean {
  // Sync byte 0x47 every 188 bytes; demand several packets so random bytes rarely match.
  if (head.length < 188 * 4) return false;
  for (let i = 0; i < 4; i++) if (head[i * 188] !== 0x47) return false;
  return true;
}

function looksLikeText(head: Buffer): boolean {
  for (const byte of head) {
    if (byte === 0 || (byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d)) {
      return false;
    }
  }
  return true;
}

function textType(head: Buffer): string {
  const text = head
    .toString('utf8')
    .replace(/^\uFEFF/, '')
    .trimStart();
  if (text.startsWith('#EXTM3U')) return 'application/vnd.apple.mpegurl';
  if (/^<(!doctype html|html|head|body|script|iframe)\b/i.test(text)) return 'text/html';
  if (/^<\?xml|^<svg\b/i.test(text)) return 'application/xml';
  return 'text/plain';
}
