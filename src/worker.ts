import { loadConfigOrExit } from './config';
import { AppContext } from './context';
import { startBackgroundWork } from './jobs/background';
import { installOutageGuard } from './jobs/outage-guard';
import { createLogger } from './logger';

/**
 * `npm run worker`: background work (media processing, scrub, retention, checkpoints) in a process
 * of its own, sharing the service's database and store. Run the service with WORKERS=0 to leave
 * all of it here, or alongside to add capacity.
 */
async function worker(): Promise<void> {
  const config = loadConfigOrExit();
  const logger = createLogger(config.logLevel);
  // A database blip must not end the process (see installOutageGuard); a bug still does.
  installOutageGuard(logger);
  const ctx = await AppContext.fromConfig(config, { migrate: true, jobQueue: true }, { logger });
  await startBackgroundWork(ctx, true);
  void ctx.leftovers.start();
  logger.info(
    {
      mediaConcurrency: config.media.concurrency,
      ffmpeg: ctx.media.toolVersion ?? ctx.media.toolsProblem,
    },
    'evidence archive worker running',
  );
  console.log(
    `Evidence archive worker running: ${config.media.concurrency} media job(s) at once; ${
      ctx.media.ffmpegAvailable ? ctx.media.toolVersion : ctx.media.toolsProblem
    }`,
  );

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'worker shutting down');
    try {
      await ctx.close();
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'unclean worker shutdown');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

worker().catch((err) => {
  console.error(
    'Evidence archive worker failed to start:',
    err instanceof Error ? err.message : err,
  );
  process.exit(1);
});
