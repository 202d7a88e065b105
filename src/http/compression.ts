import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Transform } from 'node:stream';
import {
  brotliCompressSync,
  constants,
  createBrotliCompress,
  createGzip,
  gzipSync,
  type BrotliOptions,
} from 'node:zlib';
import type { Request, RequestHandler } from 'express';

type Coding = 'br' | 'gzip';

/** JSON (problems included), CSV, the metrics' text format: never media, never a ZIP. */
const COMPRESSIBLE = /^(application\/([a-z0-9.-]+\+)?json|text\/[a-z0-9.+-]+)\s*(;|$)/i;

/** Below this, a compressed body saves less than its headers and the CPU cost. */
export const COMPRESSION_THRESHOLD_BYTES = 1024;

const QVALUE = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/;

/**
 * A body handed whole to end() up to this size is compressed in one synchronous call: a zlib
 * stream per answer costs several times the compression itself (an order's lookup of ~2 KB: 0.25
 * ms of CPU a request through a stream). Larger bodies still stream, off the event loop.
 */
export const ONE_SHOT_MAX_BYTES = 16 * 1024;

/** Quality 4: about gzip's speed with a smaller result; 11 (the default) is for static files,
 * and costs ~100 ms of CPU for the 175 KB OpenAPI document. */
const brotliOptions = (length: number): BrotliOptions => ({
  params: {
    [constants.BROTLI_PARAM_QUALITY]: 4,
    ...(length > 0 ? { [constants.BROTLI_PARAM_SIZE_HINT]: length } : {}),
  },
});

/**
 * The content coding to answer with, per RFC 9110 §12.5.3: the highest q-value among br and
 * gzip (br on a tie), unless identity is preferred; `*` stands for every coding not named. With no
 * Accept-Encoding the answer is not compressed (clients that never asked, such as curl without
 * --compressed, must not get gzip). `identityRefused` is true for `identity;q=0` (or `*;q=0`
 * without identity named): then even a small body is compressed.
 */
export function negotiateEncoding(header: string | undefined): {
  coding?: Coding;
  identityRefused: boolean;
} {
  if (header === undefined) return { identityRefused: false };
  const q = new Map<string, number>();
  for (const part of header.split(',')) {
    const [name, ...params] = part.split(';').map((s) => s.trim());
    if (!name) continue;
    let value = 1;
    for (const param of params) {
      const [k, v] = param.split('=').map((s) => s.trim());
      if (k?.toLowerCase() !== 'q') continue;
      value = v !== undefined && QVALUE.test(v) ? Number(v) : NaN;
    }
    if (Number.isNaN(value)) continue; // a malformed q-value: that entry is ignored
    const coding = name.toLowerCase() === 'x-gzip' ? 'gzip' : name.toLowerCase();
    q.set(coding, Math.max(value, q.get(coding) ?? 0));
  }
  const star = q.get('*');
  const identity = q.get('identity') ?? star;
  const identityRefused = identity === 0;
  let best: { coding: Coding; q: number } | undefined;
  for (const coding of ['br', 'gzip'] as const) {
    const value = q.get(coding) ?? star ?? 0;
    if (value > 0 && (!best || value > best.q)) best = { coding, q: value };
  }
  // Identity not named is acceptable, but any coding the client named comes first.
  if (!best || (identity !== undefined && identity > best.q)) return { identityRefused };
  return { coding: best.coding, identityRefused };
}

/**
 * Compresses JSON and text answers when the client asks (Accept-Encoding: br, gzip), streaming
 * through node:zlib (a body of up to ONE_SHOT_MAX_BYTES handed whole to end() in one call, sent
 * with its Content-Length). Never compressed: anything offering or answering a byte range (stored bytes,
 * derivatives, share-link content, ZIP bundles: their ranges and digests name the identity bytes),
 * anything with an ETag, a Repr-Digest or Content-Digest, or already encoded, media and ZIPs by type,
 * 204/206/304, HEAD, and bodies under COMPRESSION_THRESHOLD_BYTES unless identity was refused (a
 * body of unknown length is held back up to the threshold, or end(), to tell). Once end() is called,
 * `writableEnded` is true (zlib may still be flushing), a second end() is ignored and end()'s
 * callback runs at 'finish', as with plain Node.
 */
export function compression(): RequestHandler {
  return (req, res, next) => {
    // A request that accepts no coding we offer (no Accept-Encoding at all: curl, scripts, load
    // balancers' checks) is never compressed: its answer only needs the `Vary` the negotiation
    // adds, and pays for none of the wrapping below (a measurable share of a small JSON answer).
    if (negotiateEncoding(req.get('accept-encoding')).coding === undefined) {
      uncompressed(res);
      return next();
    }
    type Fn = (...args: unknown[]) => unknown;
    const original = {
      write: res.write as unknown as Fn,
      end: res.end as unknown as Fn,
      writeHead: res.writeHead as unknown as Fn,
    };
    const write = (...args: unknown[]) => original.write.apply(res, args) as boolean;
    const end = (...args: unknown[]) => void original.end.apply(res, args);
    let decided = false;
    let stream: Transform | undefined;
    // The whole body, when end() had all of it before the headers went out (and it is small):
    // compressed in one call into `oneShot`, sent with its Content-Length.
    let complete: Buffer | undefined;
    let oneShot: Buffer | undefined;
    // end() was called: the answer is complete as far as the handler is concerned, even while
    // zlib is still flushing it (so the error middleware does not cut a finished answer short).
    let ending = false;
    const nodeEnded = inherited(res, 'writableEnded');
    Object.defineProperty(res, 'writableEnded', {
      configurable: true,
      get: () => ending || Boolean(nodeEnded?.get?.call(res)),
    });
    // A body of unknown length is held back until COMPRESSION_THRESHOLD_BYTES or end(): only
    // then is it known whether it is worth compressing (a 10-byte body must not become 24).
    let held: Buffer[] | undefined;
    let heldBytes = 0;

    const decide = () => {
      if (decided) return;
      decided = true;
      const coding = chooseCoding(req, res);
      if (!coding) return;
      const length = Number(res.getHeader('content-length'));
      if (complete) {
        // Compressed before any header says so: should the compressor fail, the answer goes out
        // as it is (its identity Content-Length is set), never labelled with a coding it lacks.
        try {
          oneShot =
            coding === 'br'
              ? brotliCompressSync(complete, brotliOptions(complete.length))
              : gzipSync(complete);
        } catch {
          return;
        }
        res.setHeader('Content-Encoding', coding);
        res.setHeader('Content-Length', oneShot.length);
        return;
      }
      res.setHeader('Content-Encoding', coding);
      stream = coding === 'br' ? createBrotliCompress(brotliOptions(length)) : createGzip();
      res.removeHeader('Content-Length');
      const zipped = stream;
      zipped.on('data', (chunk: Buffer) => {
        if (!write(chunk)) zipped.pause();
      });
      zipped.on('end', () => end());
      zipped.on('error', (err: Error) => res.destroy(err));
      // A producer waiting for 'drain' waits on the compressor; the compressor on the socket.
      zipped.on('drain', () => res.emit('drain'));
      res.on('drain', () => zipped.resume());
      res.once('close', () => zipped.destroy());
    };

    const patched = res as unknown as {
      writeHead(status: number, ...rest: unknown[]): ServerResponse;
      write(chunk: unknown, encoding?: unknown, cb?: unknown): boolean;
      end(chunk?: unknown, encoding?: unknown, cb?: unknown): ServerResponse;
    };
    patched.writeHead = (status: number, ...rest: unknown[]) => {
      const reason = typeof rest[0] === 'string' ? rest[0] : undefined;
      const headers = rest.find((a): a is OutgoingHttpHeaders | unknown[] => typeof a === 'object');
      if (Array.isArray(headers)) {
        decided = true; // raw header lists are not ours to rewrite: sent as they are
        original.writeHead.call(res, status, ...rest);
        return res;
      }
      for (const [name, value] of Object.entries(headers ?? {})) {
        if (value !== undefined) res.setHeader(name, value);
      }
      res.statusCode = status;
      decide();
      original.writeHead.call(res, status, reason);
      return res;
    };
    /** Sends the headers for what was held back, compressed or not, then the held bytes. */
    const release = () => {
      const pieces = held ?? [];
      held = undefined;
      patched.writeHead(res.statusCode);
      const body = Buffer.concat(pieces);
      if (body.length === 0) return;
      if (stream) stream.write(body);
      else write(body);
    };
    patched.write = (chunk, encoding, cb) => {
      const done = [encoding, cb].find((a) => typeof a === 'function') as
        ((err?: Error | null) => void) | undefined;
      if (ending) return false;
      if (!res.headersSent && !held && mayHold(req, res)) held = [];
      if (held) {
        const piece = toBuffer(chunk, encoding);
        held.push(piece);
        heldBytes += piece.length;
        if (heldBytes >= COMPRESSION_THRESHOLD_BYTES) release();
        if (done) process.nextTick(done);
        return true;
      }
      if (!res.headersSent) patched.writeHead(res.statusCode);
      if (!stream) return write(chunk, encoding, cb);
      return stream.write(toBuffer(chunk, encoding), done);
    };
    patched.end = (chunk, encoding, cb) => {
      const done = [chunk, encoding, cb].find((a) => typeof a === 'function') as
        (() => void) | undefined;
      // A second end() is ignored, as plain Node does (it must not touch a finished stream).
      if (ending) {
        if (done) {
          if (res.writableFinished) process.nextTick(done);
          else res.once('finish', done);
        }
        return res;
      }
      const body = typeof chunk === 'function' ? undefined : chunk;
      if (held) {
        if (body) held.push(toBuffer(body, encoding));
        const all = Buffer.concat(held);
        held = undefined;
        if (!res.headersSent && !res.hasHeader('content-length')) {
          res.setHeader('Content-Length', all.length);
        }
        if (all.length <= ONE_SHOT_MAX_BYTES) complete = all;
        patched.writeHead(res.statusCode);
        ending = true;
        if (oneShot) {
          end(oneShot, done);
          return res;
        }
        if (!stream) {
          end(all, done);
          return res;
        }
        if (done) res.once('finish', done);
        stream.end(all);
        return res;
      }
      let whole: Buffer | undefined;
      if (!res.headersSent) {
        whole = body ? toBuffer(body, encoding) : Buffer.alloc(0);
        if (body && !res.hasHeader('content-length')) res.setHeader('Content-Length', whole.length);
        if (whole.length <= ONE_SHOT_MAX_BYTES) complete = whole;
        patched.writeHead(res.statusCode);
      }
      ending = true;
      if (oneShot) {
        end(oneShot, done);
        return res;
      }
      if (!stream) {
        end(chunk, encoding, cb);
        return res;
      }
      if (done) res.once('finish', done);
      if (body) stream.end(whole ?? toBuffer(body, encoding));
      else stream.end();
      return res;
    };
    next();
  };
}

/**
 * Whether a write of unknown total length should be held back to see if it reaches the threshold:
 * only when it would be compressed if it were long enough.
 */
function mayHold(req: Request, res: ServerResponse): boolean {
  if (res.hasHeader('content-length')) return false;
  if (!eligible(req, res)) return false;
  const { coding, identityRefused } = negotiateEncoding(req.get('accept-encoding'));
  return coding !== undefined && !identityRefused;
}

/** Everything but the negotiation and the size: the type, the method, the status, the headers. */
function eligible(req: Request, res: ServerResponse): boolean {
  const type = String(res.getHeader('content-type') ?? '');
  if (!COMPRESSIBLE.test(type)) return false;
  const status = res.statusCode;
  if (req.method === 'HEAD' || status < 200 || status === 204 || status === 206 || status === 304) {
    return false;
  }
  const acceptRanges = String(res.getHeader('accept-ranges') ?? 'none').toLowerCase();
  return !(
    res.hasHeader('content-encoding') ||
    res.hasHeader('content-range') ||
    acceptRanges !== 'none' ||
    res.hasHeader('etag') ||
    // Digests name the bytes as sent: compressing would make them false.
    res.hasHeader('repr-digest') ||
    res.hasHeader('content-digest') ||
    /(^|,)\s*no-transform\s*(,|$)/i.test(String(res.getHeader('cache-control') ?? ''))
  );
}

function chooseCoding(req: Request, res: ServerResponse): Coding | undefined {
  if (!varyIfCompressible(res)) return undefined;
  if (!eligible(req, res)) return undefined;
  const { coding, identityRefused } = negotiateEncoding(req.get('accept-encoding'));
  if (!coding) return undefined;
  const length = Number(res.getHeader('content-length') ?? NaN);
  if (!identityRefused && length < COMPRESSION_THRESHOLD_BYTES) return undefined;
  return coding;
}

/**
 * A compressible answer depends on Accept-Encoding, compressed or not: `Vary` says so. False for
 * a type that is never compressed.
 */
function varyIfCompressible(res: ServerResponse): boolean {
  const type = String(res.getHeader('content-type') ?? '');
  if (!COMPRESSIBLE.test(type)) return false;
  const vary = String(res.getHeader('vary') ?? '');
  if (!/(^|,)\s*(accept-encoding|\*)\s*(,|$)/i.test(vary)) {
    res.setHeader('Vary', vary ? `${vary}, Accept-Encoding` : 'Accept-Encoding');
  }
  return true;
}

/**
 * What compression() does to an answer it will not compress, as its own wrapping does without a
 * compressor: `Vary` when the headers go out (Node sends every answer's headers through
 * writeHead; headers given to writeHead as an object are applied first, their Content-Type
 * decides; a raw header list is sent as it is), Content-Length from end()'s body, and after
 * end() a write is refused and a second end() ignored.
 */
function uncompressed(res: ServerResponse): void {
  type Fn = (...args: unknown[]) => unknown;
  const original = {
    write: res.write as unknown as Fn,
    end: res.end as unknown as Fn,
    writeHead: res.writeHead as unknown as Fn,
  };
  let ending = false;
  const patched = res as unknown as {
    writeHead(status: number, ...rest: unknown[]): ServerResponse;
    write(...args: unknown[]): boolean;
    end(chunk?: unknown, encoding?: unknown, cb?: unknown): ServerResponse;
  };
  patched.writeHead = (status: number, ...rest: unknown[]) => {
    const headers = rest.find((a): a is OutgoingHttpHeaders | unknown[] => typeof a === 'object');
    if (Array.isArray(headers)) {
      original.writeHead.call(res, status, ...rest);
      return res;
    }
    for (const [name, value] of Object.entries(headers ?? {})) {
      if (value !== undefined) res.setHeader(name, value);
    }
    varyIfCompressible(res);
    original.writeHead.call(res, status, typeof rest[0] === 'string' ? rest[0] : undefined);
    return res;
  };
  patched.write = (...args: unknown[]) => !ending && (original.write.apply(res, args) as boolean);
  patched.end = (chunk, encoding, cb) => {
    if (ending) {
      const done = [chunk, encoding, cb].find((a) => typeof a === 'function') as
        (() => void) | undefined;
      if (done) {
        if (res.writableFinished) process.nextTick(done);
        else res.once('finish', done);
      }
      return res;
    }
    const body = typeof chunk === 'function' ? undefined : chunk;
    if (!res.headersSent && body && !res.hasHeader('content-length')) {
      res.setHeader('Content-Length', toBuffer(body, encoding).length);
    }
    ending = true;
    original.end.call(res, chunk, encoding, cb);
    return res;
  };
}

/** A property's descriptor from the prototype chain (Node defines writableEnded as a getter). */
function inherited(object: object, name: string): PropertyDescriptor | undefined {
  for (let o = Object.getPrototypeOf(object) as object | null; o; o = Object.getPrototypeOf(o)) {
    const found = Object.getOwnPropertyDescriptor(o, name);
    if (found) return found;
  }
  return undefined;
}

function toBuffer(chunk: unknown, encoding: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
  return Buffer.from(
    String(chunk),
    typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8',
  );
}
