import type { Request, Response } from 'express';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors';
import { contentDisposition } from '../evidence/filename';
import type { ByteRange } from '../storage/blob-store';
import { etagMatches, resolveRange } from './http-range';

/** Stored bytes to answer with: an original, or a derivative of one. */
export interface ServableBlob {
  sha256: string;
  size: number;
  contentType: string;
  filename: string;
  /** Shown in the browser or saved as a file; by default `?disposition=inline` decides. */
  disposition?: 'inline' | 'attachment';
  /** `private, no-cache` unless given (a share link's bytes are never stored). */
  cacheControl?: string;
  /** Opens the bytes and records the read before any of them leaves. */
  open(range: ByteRange | undefined, details: Record<string, unknown>): Promise<Readable>;
  /** Records a HEAD or a 304: no bytes, but the caller learnt the item's state. */
  check(details: Record<string, unknown>): Promise<void>;
}

/**
 * Answers GET/HEAD with stored bytes: strong ETag and Repr-Digest from the SHA-256, a single Range
 * (with If-Range), If-None-Match, and headers that keep a browser from running what it is sent.
 */
export async function sendBlob(req: Request, res: Response, blob: ServableBlob): Promise<void> {
  const etag = `"${blob.sha256}"`;
  res.set({
    ETag: etag,
    'Repr-Digest': `sha-256=:${Buffer.from(blob.sha256, 'hex').toString('base64')}:`,
    'Accept-Ranges': 'bytes',
    'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy': "default-src 'none'; sandbox",
    'Cache-Control': blob.cacheControl ?? 'private, no-cache',
    'Content-Disposition': contentDisposition(
      blob.disposition ?? (req.query.disposition === 'inline' ? 'inline' : 'attachment'),
      blob.filename,
    ),
  });
  if (etagMatches(req.get('if-none-match'), etag)) {
    await blob.check({ method: req.method, status: 304 });
    res.status(304).end();
    return;
  }
  // If-Range: a range only applies to the representation the client already has part of.
  const ifRange = req.get('if-range');
  const rangeHeader = ifRange === undefined || ifRange === etag ? req.get('range') : undefined;
  const size = blob.size;
  const resolved = resolveRange(rangeHeader, size);
  if (resolved.kind === 'unsatisfiable') {
    res.set('Content-Range', `bytes */${size}`);
    throw new AppError(
      'range_not_satisfiable',
      `The range ${rangeHeader} is outside the ${size} bytes of this item.`,
    );
  }
  res.type(blob.contentType);
  const range = resolved.kind === 'partial' ? resolved.range : undefined;
  if (range) {
    res.status(206).set('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
    res.set('Content-Length', String(range.end - range.start + 1));
  } else {
    res.status(200).set('Content-Length', String(size));
  }
  const details = {
    method: req.method,
    status: res.statusCode,
    range: range ? `bytes=${range.start}-${range.end}` : null,
  };
  if (req.method === 'HEAD') {
    await blob.check(details);
    res.end();
    return;
  }
  const body = await blob.open(range, details);
  try {
    await pipeline(body, res);
  } catch (err) {
    // The client went away mid-download; but bytes found damaged as they streamed are reported.
    if (res.destroyed && !res.writableFinished && !(err instanceof AppError)) return;
    throw err;
  }
}
