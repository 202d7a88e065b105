/**
 * The refusal limiter's worst-case memory: a minute's table filled to REFUSAL_LIMIT_MAX_ADDRESSES
 * tallies, each with every sample it can hold (IPv6 /64 addresses, 8 kinds of refusal, 3 paths of
 * 100 characters, 5 share-link ids), measured as the heap's growth after garbage collection.
 * Not a timed test: it prints what it measured.
 *
 *   npx tsc -p tsconfig.build.json --outDir /tmp/eab && \
 *     node --expose-gc /tmp/eab/bench/refusal-limiter-memory.js [maxAddresses...]
 */
import { randomBytes } from 'node:crypto';
import { RefusalLimiter } from '../src/access/refusal-limiter';
import type { AuditLog } from '../src/custody/audit.service';
import type { Logger } from '../src/logger';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

function heapUsed(): number {
  for (let i = 0; i < 3; i++) gc!();
  return process.memoryUsage().heapUsed;
}

function fill(maxAddresses: number): { limiter: RefusalLimiter; bytes: number } {
  const audit = { record: async () => undefined } as unknown as AuditLog;
  const logger = { error: () => undefined } as unknown as Logger;
  const before = heapUsed();
  const limiter = new RefusalLimiter({
    audit,
    logger,
    limits: { perMinute: 30, maxAddresses, globalPerMinute: 600 },
    now: () => 0, // one minute throughout
  });
  for (let a = 0; a < maxAddresses; a++) {
    const ip = `2001:db8:${(a >> 16).toString(16)}:${(a & 0xffff).toString(16)}::1`;
    for (let r = 0; r < 8; r++) {
      limiter.refuse(ip, {
        action: `share_link.use${r}`,
        status: 404,
        code: 'share_link_expired',
        // Fresh strings every time: nothing shared between tallies.
        path: `/s/${randomBytes(3000).toString('base64url')}`, // a long URL: only 100 chars kept
        shareLinkId: randomBytes(13).toString('hex'),
      });
    }
  }
  if (limiter.trackedAddresses !== maxAddresses) throw new Error('table not full');
  return { limiter, bytes: heapUsed() - before };
}

const sizes = process.argv.slice(2).map(Number);
for (const n of sizes.length ? sizes : [10_000, 100_000]) {
  const { limiter, bytes } = fill(n);
  console.log(
    `maxAddresses ${n}: heap +${(bytes / 2 ** 20).toFixed(1)} MiB, ${Math.round(bytes / n)} bytes per tally (rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB)`,
  );
  void limiter.close();
}
