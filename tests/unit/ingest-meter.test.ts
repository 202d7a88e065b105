import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { IngestMeter } from '../../src/ingest/ingest-meter';

const sink = () =>
  new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });

function chunks(buf: Buffer, size: number): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
    })(),
  );
}

describe('IngestMeter', () => {
  it.each([1, 7, 4099, 4100, 65536])(
    'hashes, counts and sniffs in one pass (chunks of %i bytes)',
    async (size) => {
      const data = Buffer.concat([
        Buffer.from('00000018667479706d703432', 'hex'),
        randomBytes(100_000),
      ]);
      const passed: Buffer[] = [];
      const meter = new IngestMeter(1e9);
      await pipeline(
        chunks(data, size),
        meter,
        new Writable({
          write(c, _e, cb) {
            passed.push(c);
            cb();
          },
        }),
      );
      expect(meter.measured).toEqual({
        sha256: createHash('sha256').update(data).digest('hex'),
        size: data.length,
        contentType: 'video/mp4',
      });
      expect(Buffer.concat(passed).equals(data)).toBe(true);
    },
  );

  it('fails with file_too_large one byte past the limit', async () => {
    await expect(
      pipeline(chunks(randomBytes(1001), 100), new IngestMeter(1000), sink()),
    ).rejects.toMatchObject({
      code: 'file_too_large',
    });
    await expect(
      pipeline(chunks(randomBytes(1000), 100), new IngestMeter(1000), sink()),
    ).resolves.toBeUndefined();
  });

  it('stops after the first 4 KiB when onSniffed refuses the type', async () => {
    let pulled = 0;
    const source = new Readable({
      read() {
        pulled += 1024;
        this.push(pulled > 10_000_000 ? null : Buffer.alloc(1024, 0x61));
      },
    });
    const meter = new IngestMeter(1e9, (type) => {
      throw Object.assign(new Error(`no ${type}`), { code: 'unsupported_media_type' });
    });
    await expect(pipeline(source, meter, sink())).rejects.toThrow('no text/plain');
    expect(pulled).toBeLessThan(100_000);
  });

  it('does not judge the type of an empty file', async () => {
    const meter = new IngestMeter(10, () => {
      throw new Error('should not be called');
    });
    await pipeline(Readable.from([]), meter, sink());
    expect(meter.measured.size).toBe(0);
  });
});
