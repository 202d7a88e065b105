import type { AppContext } from './context';

/**
 * Starts the job queue and, with workers, this process's share of the background work: custody
 * runs, media processing and fetching provider recordings. Without workers this process only queues jobs for others.
 */
export async function startBackgroundWork(
  ctx: AppContext,
  workers = ctx.config.workers > 0,
): Promise<void> {
  await ctx.jobs.start({ workers });
  await ctx.mediaJobs.start({ workers });
  await ctx.twilio.start({ workers });
  if (workers) ctx.uploadSweep.start();
}
