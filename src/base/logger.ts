import pino from 'pino';

export type Logger = pino.Logger;

/** CLIs log to stderr (fd 2) so their stdout stays machine-readable (`--json`). */
export function createLogger(level: string, fd: 1 | 2 = 1): Logger {
  return pino(
    {
      level,
      base: undefined,
      // Keys and phone numbers are secrets or personal data: never in logs.
      redact: ['req.headers.authorization', 'headers.authorization', 'authorization'],
    },
    pino.destination({ fd, sync: true }),
  );
}
