import { Router } from 'express';
import { sql } from 'kysely';
import type { AppContext } from '../context';
import { countItemsWithoutWorm } from '../storage/worm';

const withTimeout = <T>(p: Promise<T>, ms: number) =>
  Promise.race([
    p,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), ms).unref()),
  ]);

export function healthRoutes(ctx: AppContext): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const check = async (fn: () => Promise<unknown>) => {
      try {
        await withTimeout(fn(), 3000);
        return 'ok';
      } catch (err) {
        ctx.logger.warn({ err }, 'readiness check failed');
        return 'unavailable';
      }
    };
    const [database, storage] = await Promise.all([
      check(() => sql`select 1`.execute(ctx.db)),
      check(() => ctx.blobStore.ping()),
    ]);
    // WORM as read back from the store: not ready while the latest check found it not applied
    // (new evidence would go unprotected); items stored without it are counted either way.
    const worm = ctx.worm.snapshot();
    const itemsNotInForce =
      database === 'ok'
        ? await withTimeout(countItemsWithoutWorm(ctx.db), 3000).catch(() => null)
        : null;
    const ready =
      database === 'ok' && storage === 'ok' && worm.status !== 'not_in_force' && !ctx.shuttingDown;
    // Media tools never gate readiness: archiving works without them, derivatives wait.
    const media = ctx.media.ffmpegAvailable
      ? { status: 'ok', ffmpeg: ctx.media.toolVersion }
      : { status: 'unavailable', detail: ctx.media.toolsProblem };
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'not_ready',
      checks: {
        database,
        storage: { driver: ctx.blobStore.driver, status: storage },
        media,
        worm: {
          status:
            ctx.config.storage.driver === 's3' && ctx.config.storage.s3.objectLock
              ? worm.status === 'not_configured'
                ? 'unchecked'
                : worm.status
              : 'not_configured',
          itemsNotInForce,
          lastProblem: worm.lastProblem,
        },
      },
    });
  });
  return router;
}
