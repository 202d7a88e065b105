import { statfs } from 'node:fs/promises';
import { Router } from 'express';
import type { AppContext } from '../context';
import type { Readiness } from '../contract/operations.contract';

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
        return 'ok' as const;
      } catch (err) {
        ctx.logger.warn({ err }, 'readiness check failed');
        return 'unavailable' as const;
      }
    };
    const [database, storage] = await Promise.all([
      check(() => ctx.health.ping(ctx.db)),
      check(() => ctx.blobStore.ping()),
      // A latched WORM problem's object is re-checked (at most every 30 s, waited for at most
      // 2 s): the latch clears once the store shows it in force, and stays while it does not.
      ctx.worm.refresh(),
    ]);
    // WORM as read back from the store: not ready while the latest check found it not applied
    // (new evidence would go unprotected); items stored without it are counted either way.
    const worm = ctx.worm.snapshot();
    const itemsNotInForce =
      database === 'ok'
        ? await withTimeout(ctx.wormRepo.countNotInForce(ctx.db), 3000).catch(() => null)
        : null;
    const disk = await diskCheck(ctx);
    const ready =
      database === 'ok' &&
      storage === 'ok' &&
      disk.status === 'ok' &&
      worm.status !== 'not_in_force' &&
      !ctx.shuttingDown;
    // Media tools never gate readiness: archiving works without them, derivatives wait.
    const media: Readiness['checks']['media'] = ctx.media.ffmpegAvailable
      ? { status: 'ok', ffmpeg: ctx.media.toolVersion }
      : { status: 'unavailable', detail: ctx.media.toolsProblem };
    const body: Readiness = {
      status: ready ? 'ready' : 'not_ready',
      checks: {
        database,
        storage: { driver: ctx.blobStore.driver, status: storage },
        media,
        worm: {
          // snapshot() is never `expired` (that is judged per item, against now).
          status: (ctx.config.storage.driver === 's3' && ctx.config.storage.s3.objectLock
            ? worm.status === 'not_configured'
              ? 'unchecked'
              : worm.status
            : 'not_configured') as NonNullable<Readiness['checks']['worm']>['status'],
          itemsNotInForce,
          lastProblem: worm.lastProblem,
        },
        disk,
      },
    };
    res.status(ready ? 200 : 503).json(body);
  });
  return router;
}

/**
 * Free space where this instance writes (DATA_DIR, and the blob directory on disk): "low" below
 * READY_MIN_FREE_DISK_PERCENT or READY_MIN_FREE_DISK_BYTES, so traffic moves elsewhere before
 * uploads start failing with 507.
 */
async function diskCheck(ctx: AppContext) {
  const { dataDir, storage, readiness } = ctx.config;
  const paths = [dataDir, ...(storage.driver === 'fs' ? [storage.root] : [])];
  const seen: { freeBytes: number; freePercent: number; low: boolean }[] = [];
  for (const p of paths) {
    const s = await statfs(p).catch(() => undefined);
    if (!s || s.blocks === 0) continue;
    const freeBytes = s.bavail * s.bsize;
    const freePercent = Math.floor((s.bavail / s.blocks) * 1000) / 10;
    const low =
      freePercent < readiness.minFreeDiskPercent || freeBytes < readiness.minFreeDiskBytes;
    seen.push({ freeBytes, freePercent, low });
  }
  if (seen.length === 0) return { status: 'ok' as const };
  const worst = seen.find((d) => d.low) ?? seen.sort((x, y) => x.freePercent - y.freePercent)[0]!;
  const low = worst.low;
  if (low) ctx.logger.warn(worst, 'readiness: data disk nearly full');
  return {
    status: low ? ('low' as const) : ('ok' as const),
    freeBytes: worst.freeBytes,
    freePercent: worst.freePercent,
  };
}
