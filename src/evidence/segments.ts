import { segmentInputsSchema, type Segment } from '../contract/evidence.contract';
import { AppError } from '../base/errors';
import type { NewSegment, SegmentRow } from './segment.repository';

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
  const parsed = segmentInputsSchema.safeParse(value);
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

/** The body of `POST /v1/evidence/{id}/segments` (the contract's `addSegmentsBody`). */
export function parseSegmentsBody(body: unknown): NewSegment[] {
  const raw = (body as { segments?: unknown } | undefined)?.segments;
  if (raw === undefined) {
    throw new AppError('validation_failed', 'Send {"segments": [{orderId, startSec, endSec}]}.', {
      field: 'segments',
    });
  }
  return parseSegments(raw);
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

/** A segment as the API answers it (the contract's `Segment`). */
export type SegmentView = Segment;

/** A segment's columns the view reads (numeric as pg's string or as a JSON number). */
type SegmentColumns = Pick<SegmentRow, 'id' | 'item_id' | 'order_id' | 'tracking_number'> & {
  start_sec: string | number;
  end_sec: string | number;
};

export function toSegmentView(s: SegmentColumns): SegmentView {
  return {
    id: s.id,
    orderId: s.order_id,
    trackingNumber: s.tracking_number,
    startSec: Number(s.start_sec),
    endSec: Number(s.end_sec),
    contentUrl: `/v1/evidence/${s.item_id}/content?segment=${s.id}`,
  };
}
