import { explainSearches } from '../../bench/explain';
import { seedLookups, type Seeded } from '../../bench/seed';

jest.setTimeout(300_000);

/**
 * The bench's plans on a smaller archive (200,000 items, 400,000 links; the bench seeds
 * 10,000,000): enough rows that the planner's choices are the ones it makes at scale (a shop
 * line is on 10,000 calls, a sort of all of them would show), few enough for a test run.
 */
describe("support's searches at 200,000 items", () => {
  let seeded: Seeded;
  let result: Awaited<ReturnType<typeof explainSearches>>;
  beforeAll(async () => {
    seeded = await seedLookups(process.env.TEST_DATABASE_URL!, 200_000);
    result = await explainSearches(seeded);
  });
  afterAll(() => seeded?.drop());

  it('are index scans: no sequential scan of a big table, no sort of a large set', () => {
    expect(result.explained.length).toBeGreaterThan(20);
    expect(result.explained.filter((e) => e.problems.length > 0)).toEqual([]);
  });

  it("merge a busy number's calls from and to it in capture order, reading only a page", () => {
    const busy = result.explained.find((e) => e.name.includes('a shop line'))!;
    const plan = busy.plan.join('\n');
    expect(plan).toContain('Merge Append');
    expect(plan).not.toMatch(/Bitmap Heap Scan/);
  });

  it('count custody states without counting the table', () => {
    const counts = result.explained.find((e) => e.name.includes('custody/status and /metrics'))!;
    expect(counts.plan.join('\n')).not.toMatch(/Seq Scan on evidence_items/);
    expect(result.status.countsMs).toBeLessThan(result.status.fullCountMs);
  });
});
