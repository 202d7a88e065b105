// Prints, as JSON, the SHA-256 of a small ZIP built by buildZip() for the time given as an ISO
// string, and the DOS date/time fields of its first entry: run under different TZ values to show
// the bytes do not depend on the instance's time zone.
//   TZ=Europe/Berlin node tests/support/run-ts.js tests/support/zip-of-time.ts 2026-03-29T02:30:00Z
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { buildZip } from '../../src/bundles/bundle-zip';

async function main(): Promise<void> {
  const at = new Date(process.argv[2]!);
  const bytes = Buffer.alloc(1000, 1);
  const { stream } = buildZip(
    [
      { path: 'a.txt', data: Buffer.from('hello\n') },
      { path: 'b.bin', size: bytes.length, open: async () => Readable.from([bytes]) },
    ],
    at,
  );
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  const zip = Buffer.concat(parts);
  const time = zip.readUInt16LE(10);
  const date = zip.readUInt16LE(12);
  process.stdout.write(
    JSON.stringify({
      sha256: createHash('sha256').update(zip).digest('hex'),
      dos: {
        year: (date >> 9) + 1980,
        month: (date >> 5) & 0xf,
        day: date & 0x1f,
        hour: time >> 11,
        minute: (time >> 5) & 0x3f,
        second: (time & 0x1f) * 2,
      },
    }),
  );
}

void main();
