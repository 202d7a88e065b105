import type { AppContext } from '../context';

/**
 * Starts the job queue and, with workers, this process's share of the background work: custody
 * runs and media processing. Without workers this process only queues jobs for others.
 */
export async function startBackgroundWork(
  ctx: AppContext,
  workers = ctx.config.workers > 0,
): Promise<void> {
  const { scratch, config, logger } = ctx;
  if (workers) {
    // Job directories of a crashed run; a live job touches its own well within this.
    const before = new Date(Date.now() - (config.media.timeoutSeconds * 4 + 3600) * 1000);
    scratch
      .sweep(before)
      .then((removed) => removed && logger.info({ removed }, 'removed stale media scratch'))
      .catch((err) => logger.warn({ err }, 'media scratch sweep failed'));
  }
  await ctx.jobs.start({ workers });
  await ctx.mediaJobs.start({ workers });
}
