import { MAX_JOB_INTERVAL_MINUTES } from '../../src/config';
import { JobQueue } from '../../src/jobs/job-queue';
import { createLogger } from '../../src/logger';
import { createTestDatabase } from '../support/test-db';

/**
 * Scheduled custody jobs are throttled sends on pg-boss: one per interval slot. pg-boss refuses a
 * slot longer than its archive interval (12 h by default), and the refusal was only logged as a
 * warning, so SCRUB_INTERVAL_MINUTES=1440 (allowed by the configuration) never scrubbed at all.
 */
describe('scheduled job intervals', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let queue: JobQueue;
  beforeAll(async () => {
    db = await createTestDatabase();
    queue = new JobQueue({ connectionString: db.url, logger: createLogger('silent') });
    await queue.start([{ name: 'interval-probe', expireInSeconds: 60 }]);
  });
  afterAll(async () => {
    await queue.stop();
    await db.drop();
  });

  it('schedules a job at the longest interval the configuration allows, once per slot', async () => {
    const seconds = MAX_JOB_INTERVAL_MINUTES * 60;
    const first = await queue.sendThrottled('interval-probe', seconds);
    expect(first).toEqual(expect.any(String));
    // The same slot: not scheduled twice, however many instances tick.
    expect(await queue.sendThrottled('interval-probe', seconds)).toBeNull();
  });
});
