import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { brotliCompress, constants, gzip } from 'node:zlib';
import type { RequestHandler } from 'express';
import { negotiateEncoding } from './compression';
import openapi from './openapi.json';

type Coding = 'br' | 'gzip';

const compressWith: Record<Coding, (body: Buffer) => Promise<Buffer>> = {
  // Done once per process and coding: the best ratio is worth its one-off CPU.
  br: (body) =>
    promisify(brotliCompress)(body, {
      params: {
        [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
        [constants.BROTLI_PARAM_SIZE_HINT]: body.length,
      },
    }),
  gzip: (body) => promisify(gzip)(body, { level: constants.Z_BEST_COMPRESSION }),
};

/** How many times the document was compressed (for tests: once per coding and app, at most). */
export const openApiCompressions = { count: 0 };

/**
 * GET/HEAD /openapi.json: the same ~290 KB on every request, so its bytes are serialised once and
 * compressed once per coding (lazily, at the first request asking for it), then served from
 * memory with a strong ETag per representation (`"<sha256>"`, `"<sha256>-br"`, `"<sha256>-gzip"`)
 * and If-None-Match → 304. HEAD answers exactly as GET would, Content-Encoding and Length included.
 */
export function openApiDocument(): RequestHandler {
  const identity = Buffer.from(JSON.stringify(openapi));
  const hash = createHash('sha256').update(identity).digest('hex');
  const encoded = new Map<Coding, Promise<Buffer>>();
  const bytesFor = (coding: Coding | undefined): Promise<Buffer> => {
    if (!coding) return Promise.resolve(identity);
    let bytes = encoded.get(coding);
    if (!bytes) {
      openApiCompressions.count++;
      bytes = compressWith[coding](identity);
      encoded.set(coding, bytes);
      bytes.catch(() => encoded.delete(coding)); // not cached: tried again at the next request
    }
    return bytes;
  };
  return async (req, res) => {
    // identity;q=0 with no coding we have: identity anyway (RFC 9110 §12.5.3 allows it).
    const { coding } = negotiateEncoding(req.get('accept-encoding'));
    const etag = coding ? `"${hash}-${coding}"` : `"${hash}"`;
    res.set('ETag', etag);
    res.vary('Accept-Encoding');
    if (noneMatch(req.get('if-none-match'), etag)) {
      res.status(304).end();
      return;
    }
    res.set('Content-Type', 'application/json; charset=utf-8');
    if (coding) res.set('Content-Encoding', coding);
    const body = await bytesFor(coding);
    res.set('Content-Length', String(body.length));
    res.status(200).end(req.method === 'HEAD' ? undefined : body);
  };
}

/** If-None-Match with weak comparison (RFC 9110 §13.1.2): `*` or any listed tag equal to ours. */
function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, '');
  return header.split(',').some((tag) => opaque(tag) === etag);
}
