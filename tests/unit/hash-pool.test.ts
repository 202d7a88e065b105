import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { HashPool } from '../../src/custody/hash-pool';

const expected = (parts: Buffer[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};

describe('HashPool', () => {
  const pool = new HashPool(2);
  afterAll(() => pool.close());

  it.each([
    ['nothing', []],
    ['one byte', [Buffer.from([7])]],
    ['small pooled chunks', Array.from({ length: 300 }, () => Buffer.from(randomBytes(5000)))],
    [
      'whole 1 MiB allocations (moved without a copy)',
      [randomBytes(1 << 20), randomBytes(1 << 20)],
    ],
    [
      'a mix that straddles batch boundaries',
      [randomBytes(700_000), Buffer.allocUnsafeSlow(1 << 20).fill(3), randomBytes(900_001)],
    ],
  ])('hashes %s exactly as crypto does', async (_label, parts) => {
    const copies = parts.map((p) => Buffer.from(p)); // what is sent may be detached
    const result = await pool.hash(Readable.from(parts));
    expect(result).toEqual({
      sha256: expected(copies),
      size: copies.reduce((n, p) => n + p.length, 0),
    });
  });

  it('serves more streams than workers, each its own digest', async () => {
    const inputs = Array.from({ length: 6 }, (_, i) => randomBytes(300_000 + i));
    const want = inputs.map((b) => expected([b])); // before: large chunks are moved, not copied
    const results = await Promise.all(inputs.map((b) => pool.hash(Readable.from([b]))));
    expect(results.map((r) => r.sha256)).toEqual(want);
  });

  it('passes a failing source on and stays usable', async () => {
    const failing = Readable.from(
      (async function* () {
        yield randomBytes(10);
        throw new Error('disk gone');
      })(),
    );
    await expect(pool.hash(failing)).rejects.toThrow('disk gone');
    const b = randomBytes(1000);
    expect((await pool.hash(Readable.from([b]))).sha256).toBe(expected([b]));
  });
});
