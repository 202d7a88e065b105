import { isoTimestamp } from '../base/fields';
import { z } from './zod';

// Field schemas the contract files share: declared once, so the same field reads the same everywhere.

/** An id that is a UUID (an item's, a segment's, a hold's, a bundle's...). */
export const uuid = z.string().openapi({ format: 'uuid' });

/** `{id}` of an evidence item. */
export const itemIdParams = z.object({
  id: z.string().openapi({
    format: 'uuid',
    param: { description: 'Evidence item id (a UUID). Any other value gets 404 `not_found`.' },
  }),
});

/** An instant as the service writes it: ISO 8601. */
export const dateTime = z.string().openapi({ format: 'date-time' });

/** A SHA-256 as the server computed it: lowercase hex. */
export const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

/** `limit` of a list query: 1 to `max`, `byDefault` when absent. */
export const pageLimit = (max: number, byDefault: number, description = 'Page size.') =>
  z.coerce.number().int().min(1).max(max).default(byDefault).openapi({ param: { description } });

/** `cursor` of a list query: the `nextCursor` of the previous page, at most `max` characters. */
export const pageCursor = (max: number) =>
  z
    .string()
    .max(max)
    .optional()
    .openapi({
      param: {
        description:
          'The `nextCursor` of the previous page; anything else is 400 `invalid_cursor`.',
      },
    });

/** An optional instant of a search (ISO 8601 with a time zone), documented as a date-time string. */
export const instantQuery = (description: string) =>
  isoTimestamp()
    .optional()
    .openapi({ type: 'string', format: 'date-time', param: { description } });
