import { createHash, randomBytes } from 'node:crypto';

/** Bytes that sniff as the given type, with random content so every call is unique evidence. */
export function fakeMedia(
  type: 'mp4' | 'mov' | 'wav' | 'mp3' | 'jpeg' | 'png',
  size = 64 * 1024,
): Buffer {
  const body = randomBytes(Math.max(size, 64));
  const header: Record<typeof type, Buffer> = {
    mp4: Buffer.from('00000018667479706d703432000000006d703432', 'hex'),
    mov: Buffer.from('0000001466747970717420200000000071742020', 'hex'),
    wav: Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(4), Buffer.from('WAVEfmt ')]),
    mp3: Buffer.from('ID3'),
    jpeg: Buffer.from('ffd8ffe0', 'hex'),
    png: Buffer.from('89504e470d0a1a0a', 'hex'),
  };
  header[type].copy(body, 0);
  return body;
}

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
