import { Readable } from 'node:stream';
import { sliceStream } from '../../src/bundles/bundle-zip';

/** A source of `n` chunks of `size` bytes (byte i = i % 251), recording whether it was closed. */
function source(n: number, size: number) {
  let made = 0;
  const stream = new Readable({
    read() {
      if (made === n) return void this.push(null);
      const chunk = Buffer.alloc(size);
      for (let i = 0; i < size; i++) chunk[i] = (made * size + i) % 251;
      made++;
      this.push(chunk);
    },
  });
  return { stream, chunksRead: () => made };
}

const all = (n: number, size: number) =>
  Buffer.from(Array.from({ length: n * size }, (_, i) => i % 251));

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('sliceStream', () => {
  const whole = all(10, 100);
  it.each([
    [0, 0],
    [0, 99],
    [99, 100],
    [100, 199],
    [150, 449],
    [999, 999],
    [0, 999],
    [500, 5000],
  ])('bytes %i-%i, across chunk boundaries', async (start, end) => {
    const src = source(10, 100);
    const got = await collect(await sliceStream(src.stream, start, end));
    expect(got.equals(whole.subarray(start, end + 1))).toBe(true);
  });

  it('stops reading and closes the source once the end has gone out', async () => {
    const src = source(1000, 100);
    const got = await collect(await sliceStream(src.stream, 10, 250));
    expect(got.length).toBe(241);
    expect(src.stream.destroyed).toBe(true);
    // Not to its end: only what the streams' buffers read ahead (16 KiB each) was made.
    expect(src.chunksRead()).toBeLessThan(500);
  });

  it('fails before resolving when the source fails on the way to the start', async () => {
    let n = 0;
    const failing = new Readable({
      read() {
        if (n++ < 3) this.push(Buffer.alloc(100));
        else this.destroy(new Error('bytes hash wrong'));
      },
    });
    await expect(sliceStream(failing, 1000, 1100)).rejects.toThrow('bytes hash wrong');
  });
});
