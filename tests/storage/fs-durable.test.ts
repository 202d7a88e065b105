import { randomBytes } from 'node:crypto';
import { mkdtempSync, promises as fs, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { durableWriter } from '../../src/storage/fs-durable';

describe('durableWriter', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(path.join(tmpdir(), 'fs-durable-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // Chunks are gathered into batches by reference (at most 1 MiB or 512 chunks, one writev each):
  // every byte must land once, in order, at its offset, whatever the chunks' sizes.
  it.each([
    ['thousands of tiny chunks (batches cut by count)', [1, 3, 17], 3000],
    ['network-sized chunks (batches cut by bytes)', [16_384, 65_536, 70_001], 60],
    ['chunks larger than a batch', [3 << 20, 1, (1 << 20) + 5], 4],
  ])('writes %s in order, from its start offset', async (_name, sizes, count) => {
    const chunks = Array.from({ length: count }, (_, i) => randomBytes(sizes[i % sizes.length]!));
    const file = path.join(dir, `${count}-${sizes.join('-')}`);
    const head = randomBytes(100);
    await fs.writeFile(file, head);
    const handle = await fs.open(file, 'r+');
    await pipeline(Readable.from(chunks), durableWriter(handle, head.length));
    expect((await fs.readFile(file)).equals(Buffer.concat([head, ...chunks]))).toBe(true);
  });
});
