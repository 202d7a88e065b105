import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * The ZIP's DOS timestamps are written from the UTC fields of the bundle's time, so two instances
 * in different time zones send the same bytes under the same ETag, even for a time that falls in
 * a daylight-saving gap of one of them.
 */
jest.setTimeout(60_000);

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');

async function zipUnder(tz: string, at: string) {
  const { stdout } = await run(
    process.execPath,
    [path.join(ROOT, 'tests/support/run-ts.js'), 'tests/support/zip-of-time.ts', at],
    { cwd: ROOT, env: { ...process.env, TZ: tz } },
  );
  return JSON.parse(stdout) as {
    sha256: string;
    dos: { year: number; month: number; day: number; hour: number; minute: number; second: number };
  };
}

describe('bundle ZIP bytes and the time zone', () => {
  it.each([
    // 02:30 on 29 March 2026 is in Berlin's spring-forward gap (02:00 → 03:00 local).
    '2026-03-29T02:30:00Z',
    // 01:30 UTC is 03:30 in Berlin; also a time whose local date differs in Auckland.
    '2026-03-29T01:30:10Z',
    '2026-12-31T23:59:58Z',
  ])(
    'builds the same bytes under TZ=UTC, Europe/Berlin and Pacific/Auckland for %s',
    async (at) => {
      const [utc, berlin, auckland] = await Promise.all([
        zipUnder('UTC', at),
        zipUnder('Europe/Berlin', at),
        zipUnder('Pacific/Auckland', at),
      ]);
      const d = new Date(at);
      expect(utc.dos).toEqual({
        year: d.getUTCFullYear(),
        month: d.getUTCMonth() + 1,
        day: d.getUTCDate(),
        hour: d.getUTCHours(),
        minute: d.getUTCMinutes(),
        second: d.getUTCSeconds() - (d.getUTCSeconds() % 2),
      });
      expect(berlin).toEqual(utc);
      expect(auckland).toEqual(utc);
    },
  );

  // The bytes of every bundle ever made must come out the same on every later download (its ETag
  // is its manifest's hash, and a resumed download splices two responses): a ZIP writer that
  // changed its layout would change them under the same ETag. yazl is pinned exactly; this digest,
  // recorded with yazl 3.3.1, fails an upgrade that changes a byte.
  it('builds the bytes recorded for a fixed bundle (the ZIP layout is frozen)', async () => {
    const golden = '3fe2e00420c0f00ce3c9f6b758433c7be11cc653b8bac383a6c2ef89fddc77e6';
    expect((await zipUnder('Asia/Kolkata', '2026-03-29T02:30:00Z')).sha256).toBe(golden);
  });
});
