import { z } from 'zod';
import { AppError } from '../base/errors';
import type { NewSegment, SegmentRow } from './segment.repository';
import { identifier } from '../base/fields';

/** Scan events from a packing station: which part of a clip belongs to which order. */
const segmentSchema = z
  .object({
    orderId: identifier(),
    trackingNumber: identifier().optional(),
    startSec: z
      .number()
      .finite()
      .min(0)
      .max(7 * 86_400),
    endSec: z
      .number()
      .finite()
      .min(0)
      .max(7 * 86_400),
  })
  .strict()
  .refine((s) => s.endSec > s.startSec, { message: 'endSec must be after startSec' });

export const segmentsSchema = z.array(segmentSchema).max(500, 'at most 500 segments at a time');

/** Segments from a multipart field (a JSON array) or a JSON body. */
export function parseSegments(raw: unknown): NewSegment[] {
  let value = raw;
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(raw);
    } catch {
      throw new AppError(
        'validation_failed',
        'Field "segments" must be a JSON array of {orderId, trackingNumber, startSec, endSec}.',
        { field: 'segments' },
      );
    }
  }
  const parsed = segmentsSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new AppError(
      'validation_failed',
      `Field "segments${issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('')}" ${issue.message}.`,
      { field: 'segments' },
    );
  }
  return parsed.data;
}

const CUT_EXTENSIONS: Record<string, string> = {
  'video/mp4': 'mp4',
  'video/quicktime': 'mov',
  'audio/mp4': 'm4a',
  'audio/wav': 'wav',
  'audio/mpeg': 'mp3',
};

/** A cut's download name: the recording's name, then the order, then the cut's own extension. */
export function cutFilename(
  item: { id: string; original_filename: string | null },
  orderId: string,
  contentType: string | null,
): string {
  const base = (item.original_filename ?? item.id).replace(/\.[A-Za-z0-9]{1,5}$/, '');
  const ext = CUT_EXTENSIONS[contentType ?? ''] ?? 'mkv';
  return `${base}.${orderId.replace(/[^A-Za-z0-9._-]/g, '_')}.${ext}`;
}

export interface SegmentView {
  id: string;
  orderId: string;
  trackingNumber: string | null;
  startSec: number;
  endSec: number;
  /** The cut of just this part (ffmpeg stream copy), once the media pipeline has made it. */
  contentUrl: string;
}

export function toSegmentView(s: SegmentRow): SegmentView {
  return {
    id: s.id,
    orderId: s.order_id,
    trackingNumber: s.tracking_number,
    startSec: Number(s.start_sec),
    endSec: Number(s.end_sec),
    contentUrl: `/v1/evidence/${s.item_id}/content?segment=${s.id}`,
  };
}
