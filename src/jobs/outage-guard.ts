import { outageError } from '../base/errors';
import type { Logger } from '../base/logger';

/**
 * Keeps the process alive through a database or blob store outage that surfaces as an unhandled
 * promise rejection in a library (pg-boss 10 records job outcomes with complete()/fail() calls it
 * does not await: timgit/pg-boss#577). Such a rejection is logged and the process carries on: the
 * pools reconnect by themselves and the job queue records outcomes itself (JobQueue.settle).
 * Any other unhandled rejection is a bug and still ends the process, as Node's default does.
 */
export function installOutageGuard(
  logger: Logger,
  exit: (code: number) => void = process.exit,
): void {
  process.on('unhandledRejection', (reason) => {
    const outage = outageError(reason);
    if (outage) {
      logger.warn(
        { err: reason, code: outage.code },
        'a dependency outage surfaced as an unhandled rejection; continuing',
      );
      return;
    }
    logger.fatal({ err: reason }, 'unhandled promise rejection');
    console.error('Unhandled promise rejection:', reason);
    exit(1);
  });
}
