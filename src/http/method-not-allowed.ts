import type { RequestHandler } from 'express';
import { AppError } from '../errors';

/** The 405 answer for a known path with a method it does not serve. */
export const methodNotAllowed =
  (allowed: string): RequestHandler =>
  (_req, res) => {
    res.set('Allow', allowed);
    throw new AppError('method_not_allowed', `Allowed methods: ${allowed}.`);
  };
