import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: undefined,
    // Keys and phone numbers are secrets or personal data: never in logs.
    redact: ['req.headers.authorization', 'headers.authorization', 'authorization'],
  });
}
