import type { Request, Response } from 'express';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../base/errors';
import { contentDisposition } from '../evidence/filename';
import type { ByteRange } from '../storage/blob-store';
import { evaluatePreconditions, httpDate } from './conditional';
import { resolveRange } from './http-range';

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
 * Any representation we serve with ranges and conditions: a stored blob, or a bundle's ZIP. Its
 * checks (deleted, damaged, missing bytes) have passed before it is handed here, so neither a
 * 304 nor a range answers for bytes that may not be served.
 */
export interface Representation {
  /** A strong entity tag: the same bytes whenever it is the same. */
  etag: string;
  size: number;
  contentType: string;
  /** Sent as Last-Modified, and compared with If-Range/If-(Un)Modified-Since dates. */
  lastModified?: Date;
  /** Further headers sent with 200, 206, 304 and HEAD alike. */
  headers: Record<string, string>;
  /** `signal` aborts when the client goes away before the body starts (a range being prepared). */
  open(
    range: ByteRange | undefined,
    details: Record<string, unknown>,
    signal?: AbortSignal,
  ): Promise<Readable>;
  check(details: Record<string, unknown>): Promise<void>;
}

/**
 * Answers GET/HEAD with stored bytes: strong ETag and Repr-Digest from the SHA-256, a single Range
 * (with If-Range), conditions, and headers that keep a browser from running what it is sent.
 */
export async function sendBlob(req: Request, res: Response, blob: ServableBlob): Promise<void> {
  await sendRepresentation(req, res, {
    etag: `"${blob.sha256}"`,
    size: blob.size,
    contentType: blob.contentType,
    headers: {
      'Repr-Digest': `sha-256=:${Buffer.from(blob.sha256, 'hex').toString('base64')}:`,
      'Content-Security-Policy': "default-src 'none'; sandbox",
      'Cache-Control': blob.cacheControl ?? 'private, no-cache',
      'Content-Disposition': contentDisposition(
        blob.disposition ?? (req.query.disposition === 'inline' ? 'inline' : 'attachment'),
        blob.filename,
      ),
    },
    open: (range, details) => blob.open(range, details),
    check: (details) => blob.check(details),
  });
}

/**
 * GET/HEAD of a representation: the preconditions of RFC 9110 §13.2.2 in their order (If-Match or
 * If-Unmodified-Since → 412, If-None-Match or If-Modified-Since → 304, If-Range), then a single
 * byte range (206, or 416 with an unsatisfied Content-Range) or the whole. Several ranges in one
 * header get the whole with 200, which RFC 9110 §14.2 allows (no multipart/byteranges).
 */
export async function sendRepresentation(
  req: Request,
  res: Response,
  rep: Representation,
): Promise<void> {
  res.set({
    ETag: rep.etag,
    'Accept-Ranges': 'bytes',
    'X-Content-Type-Options': 'nosniff',
    ...(rep.lastModified ? { 'Last-Modified': httpDate(rep.lastModified) } : {}),
    ...rep.headers,
  });
  const pre = evaluatePreconditions((name) => req.get(name), rep);
  if (pre.kind === 'failed') {
    throw new AppError(
      'precondition_failed',
      pre.header === 'If-Match'
        ? `If-Match does not name this representation, whose entity tag is ${rep.etag}.`
        : 'The representation was modified after the If-Unmodified-Since date.',
    );
  }
  if (pre.kind === 'not_modified') {
    await rep.check({ method: req.method, status: 304 });
    res.status(304).end();
    return;
  }
  // If-Range: a range only applies to the representation the client already has part of.
  // Range (and If-Range) are defined for GET only (RFC 9110 §14.2): a HEAD describes the whole.
  const rangeHeader = pre.honourRange && req.method === 'GET' ? req.get('range') : undefined;
  const size = rep.size;
  const resolved = resolveRange(rangeHeader, size);
  if (resolved.kind === 'unsatisfiable') {
    res.set('Content-Range', `bytes */${size}`);
    throw new AppError(
      'range_not_satisfiable',
      `The range ${rangeHeader} is outside the ${size} bytes of this representation.`,
    );
  }
  const range = resolved.kind === 'partial' ? resolved.range : undefined;
  const details = {
    method: req.method,
    status: range ? 206 : 200,
    range: range ? `bytes=${range.start}-${range.end}` : null,
  };
  let body: Readable | undefined;
  if (req.method === 'HEAD') await rep.check(details);
  else {
    // The client going away while the bytes before a range's start are read stops that read.
    const gone = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) gone.abort();
    };
    res.once('close', onClose);
    try {
      body = await rep.open(range, details, gone.signal);
    } catch (err) {
      if (gone.signal.aborted) return; // nobody to answer
      res.off('close', onClose);
      // Refused before the first byte (bytes found damaged on the way to a range's start): the
      // problem answer must not carry the validators of what it is not.
      const sent = ['ETag', 'Last-Modified', 'Accept-Ranges', ...Object.keys(rep.headers)];
      for (const name of sent.filter((n) => n !== 'Cache-Control')) res.removeHeader(name);
      throw err;
    }
    res.off('close', onClose);
    if (gone.signal.aborted) {
      body.destroy();
      return;
    }
  }
  res.type(rep.contentType);
  if (range) {
    res.status(206).set('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
    res.set('Content-Length', String(range.end - range.start + 1));
  } else {
    res.status(200).set('Content-Length', String(size));
  }
  if (!body) {
    res.end();
    return;
  }
  try {
    await pipeline(body, res);
  } catch (err) {
    // The client went away mid-download; but bytes found damaged as they streamed are reported.
    if (res.destroyed && !res.writableFinished && !(err instanceof AppError)) return;
    throw err;
  }
}
