import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { buildZip, sliceStream } from '../../src/bundles/bundle-zip';

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

describe('sliceStream: a slice destroyed before it is read', () => {
  it('closes its source (the ZIP and the store read in progress) when destroyed unread', async () => {
    const src = source(1000, 100);
    const out = await sliceStream(src.stream, 500, 99_999);
    // The client went away while the range was being prepared: nothing is ever pulled.
    out.destroy();
    await new Promise((r) => setImmediate(r));
    expect(out.destroyed).toBe(true);
    expect(src.stream.destroyed).toBe(true);
  });

  it('closes its source when the slice fails (destroyed with an error)', async () => {
    const src = source(1000, 100);
    const out = await sliceStream(src.stream, 500, 99_999);
    out.on('error', () => undefined);
    out.destroy(new Error('socket reset'));
    await new Promise((r) => setImmediate(r));
    expect(src.stream.destroyed).toBe(true);
  });
});

describe('sliceStream over a real ZIP of files', () => {
  it('leaves no file descriptor open after ranged reads abandoned before their first pull', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slice-fd-'));
    const file = path.join(dir, 'big.bin');
    const size = 4 * 1024 * 1024;
    fs.writeFileSync(file, Buffer.alloc(size, 7));
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    try {
      const before = fds();
      for (let i = 0; i < 10; i++) {
        const entries = [0, 1].map((j) => ({
          path: `e${j}.bin`,
          size,
          open: async () => fs.createReadStream(file),
        }));
        const { size: total, stream } = buildZip(entries, new Date(0));
        // A range inside the last file: its read is open when the slice's first byte is there.
        const body = await sliceStream(stream, total - size / 2, total - 1);
        const res = new PassThrough();
        res.destroy(); // the client went away meanwhile
        await pipeline(body, res).catch(() => undefined);
      }
      await new Promise((r) => setTimeout(r, 200));
      expect(fds()).toBeLessThanOrEqual(before);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sliceStream: the client goes away while the range is prepared', () => {
  /** A slow source (a store read): one chunk every few milliseconds, counting what it made. */
  function slowSource(size: number) {
    let made = 0;
    const stream = new Readable({
      highWaterMark: size,
      read() {
        setTimeout(() => {
          made++;
          this.push(Buffer.alloc(size));
        }, 2);
      },
    });
    return { stream, chunksRead: () => made };
  }

  it('stops reading towards the start when the signal aborts, and rejects', async () => {
    const src = slowSource(100);
    const gone = new AbortController();
    const sliced = sliceStream(src.stream, 1_000_000, 1_000_100, gone.signal);
    await new Promise((r) => setTimeout(r, 50));
    gone.abort();
    await expect(sliced).rejects.toThrow();
    expect(src.stream.destroyed).toBe(true);
    const after = src.chunksRead();
    await new Promise((r) => setTimeout(r, 50));
    // Not a chunk more was read (one timer already under way may still land).
    expect(src.chunksRead()).toBeLessThanOrEqual(after + 1);
    expect(after).toBeLessThan(1_000_000 / 100);
  });

  it('does not read at all when the client is already gone', async () => {
    const src = slowSource(100);
    const gone = new AbortController();
    gone.abort();
    await expect(sliceStream(src.stream, 10_000, 10_100, gone.signal)).rejects.toThrow();
    expect(src.stream.destroyed).toBe(true);
  });
});
