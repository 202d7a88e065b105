import { loadConfigOrExit } from './config';
import { AppContext } from './context';
import { createApp } from './http/app';
import { startServer } from './http/server';
import { createLogger } from './logger';
import { startBackgroundWork } from './jobs/background';
import { installOutageGuard } from './jobs/outage-guard';

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const logger = createLogger(config.logLevel);
  // A database blip must not end the process (see installOutageGuard); a bug still does.
  installOutageGuard(logger);
  const ctx = await AppContext.fromConfig(config, { migrate: true, jobQueue: true }, { logger });
  const running = await startServer(createApp(ctx), config);

  // Handled from the moment requests can arrive: a SIGTERM while background work is still
  // starting (pg-boss creating its schema on a first start) would otherwise end the process
  // mid-request with the signal's default action.
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    ctx.shuttingDown = true;
    logger.info({ signal, graceMs: config.http.shutdownGraceMs }, 'shutting down');
    try {
      await running.close(config.http.shutdownGraceMs);
      // The last events of this run are signed before it ends, not left to the next interval.
      await ctx.checkpoints
        .checkpoint()
        .catch((err) => logger.warn({ err }, 'final checkpoint failed'));
      await ctx.close();
      logger.info('stopped');
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'unclean shutdown');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  const where = config.database.url
    ? 'external PostgreSQL'
    : `embedded PostgreSQL in ${config.dataDir}`;
  const store =
    config.storage.driver === 's3'
      ? `S3 bucket ${config.storage.s3.bucket}`
      : `disk (${config.storage.root})`;
  logger.info({ url: running.url }, 'evidence archive listening');
  console.log(
    [
      `Evidence archive listening on ${config.publicUrl ?? running.url}`,
      `  metadata: ${where}; blobs: ${store}`,
      `  mint a key: npm run keys -- create --role admin --name "first admin" --json`,
      `  API description: ${running.url}/openapi.json`,
    ].join('\n'),
  );

  // What uploads cut off by a crash left (staging of instances that are gone, blobs promoted
  // without a row): removed now, and every LEFTOVER_SWEEP_SECONDS.
  void ctx.leftovers.start();
  // Scrub, retention, checkpoints and media work on the PostgreSQL job queue (WORKERS=0: this
  // instance only queues; another instance or `npm run worker` does the work).
  await startBackgroundWork(ctx);
}

main().catch((err) => {
  console.error('Evidence archive failed to start:', err instanceof Error ? err.message : err);
  process.exit(1);
});
