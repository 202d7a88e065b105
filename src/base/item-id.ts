import { AppError } from './errors';

const ITEM_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Evidence items (and holds) are named by UUIDs; anything else names nothing. */
export const isItemId = (id: string): boolean => ITEM_ID.test(id);

export const noSuchItem = (id: string): AppError =>
  new AppError('not_found', `No evidence item with id ${JSON.stringify(id)}.`);
