import { problem } from './operation';
import { z } from './zod';

/**
 * The answers of a download (stored bytes served with ranges, entity tags and conditions): evidence
 * content, bundle ZIPs, media derivatives, share links. Declared once here; each operation passes
 * what differs (descriptions, content type, which headers it sends). Spread it into `responses`
 * beside the operation's own 400/404/410/500 and `standardErrors`:
 *
 *   responses: { ...downloadResponses({ whole: 'The whole file.', contentDisposition, contentLength }), ... }
 *
 * What each download's answers differ in, as options: a media derivative takes only the three required
 * ones (as evidence content); a bundle's ZIP `contentType: 'application/zip'`, `bodySchema:
 * { type: 'string', format: 'binary' }`, `lastModified`, `reprDigest: false`,
 * `contentSecurityPolicy: false` (its HEAD: `preconditionFailedBody: false`); a share link
 * `cacheControl: 'Always \`private, no-store\`.'`, `lastModified`, and its HEAD
 * `preconditionFailedBody: false`. The request headers: `downloadRequestHeaders()`, with
 * `{ lastModified: true }` where `Last-Modified` is sent.
 */
export interface DownloadOptions {
  /** HEAD: no 206 and no 416 (`Range` is for GET only). */
  head?: boolean;
  /** The 200's description. */
  whole: string;
  /** The 206's description. */
  partial?: string;
  /** The 304's description. */
  notModified?: string;
  /** The media type of the body (default any: `*\/*`). */
  contentType?: string;
  /** The body's schema (default a string of `application/octet-stream`). */
  bodySchema?: object;
  /** The 206's body schema, when it differs from the 200's. */
  partialBodySchema?: object;
  /** The `ETag` description. */
  etag?: string;
  /** `Last-Modified` (bundles): its description. Absent: not sent. */
  lastModified?: string;
  /** `Repr-Digest`: its description, or `false` where it is never sent (bundles). */
  reprDigest?: string | false;
  /** `Content-Security-Policy` (`default-src 'none'; sandbox`) is sent (default true). */
  contentSecurityPolicy?: boolean;
  /** The `Cache-Control` description (default `private, no-cache`). */
  cacheControl?: string;
  /** The `Content-Disposition` description. */
  contentDisposition: string;
  /** The 200's `Content-Length` description. */
  contentLength: string;
  /** The 206's `Content-Range` description. */
  contentRange?: string;
  /** The 416's description. */
  rangeNotSatisfiable?: string;
  /** The 416's `Content-Range` description. */
  unsatisfiableContentRange?: string;
  /** The 412's description. */
  preconditionFailed?: string;
  /** The 412 carries a problem body (default true; a HEAD's never has one on the wire). */
  preconditionFailedBody?: boolean;
}

const STRONG_ETAG = '^"[0-9a-f]{64}"$';

const stringHeader = (description: string, schema: object = {}) => ({
  description,
  schema: { type: 'string', ...schema },
});

/** Bytes as they are: a string of `application/octet-stream`. */
export const OCTETS = { type: 'string' as const, contentMediaType: 'application/octet-stream' };

/** The `responses` entries 200, 206, 304, 412 and 416 of a download operation (HEAD: 200, 304, 412). */
export function downloadResponses(options: DownloadOptions) {
  const contentType = options.contentType ?? '*/*';
  const body = options.bodySchema ?? OCTETS;
  const representation = {
    ETag: stringHeader(
      options.etag ??
        'Strong entity tag: the SHA-256 of the bytes in hex, in quotes (`"<sha256 hex>"`).',
      { pattern: STRONG_ETAG },
    ),
    ...(options.lastModified ? { 'Last-Modified': stringHeader(options.lastModified) } : {}),
    ...(options.reprDigest === false
      ? {}
      : {
          'Repr-Digest': stringHeader(
            options.reprDigest ??
              'RFC 9530 digest of the whole representation: `sha-256=:<base64>:`.',
          ),
        }),
    'Accept-Ranges': stringHeader('Always `bytes`.', { const: 'bytes' }),
    'X-Content-Type-Options': stringHeader('Always `nosniff`.', { const: 'nosniff' }),
    ...(options.contentSecurityPolicy === false
      ? {}
      : {
          'Content-Security-Policy': stringHeader("Always `default-src 'none'; sandbox`."),
        }),
    'Cache-Control': stringHeader(options.cacheControl ?? 'Always `private, no-cache`.'),
    'Content-Disposition': stringHeader(options.contentDisposition),
  };
  const preconditionFailed =
    options.preconditionFailed ??
    '`precondition_failed`: If-Match names no entity tag of this representation (or only weak ones), or it was modified after If-Unmodified-Since.';
  const responses: Record<string, object> = {
    '200': {
      description: options.whole,
      headers: {
        ...representation,
        'Content-Length': { description: options.contentLength, schema: { type: 'integer' } },
      },
      content: { [contentType]: { schema: body } },
    },
  };
  if (!options.head) {
    responses['206'] = {
      description: options.partial ?? 'The requested range.',
      headers: {
        ...representation,
        'Content-Range': stringHeader(options.contentRange ?? '`bytes <start>-<end>/<size>`.'),
        'Content-Length': {
          description: 'The length of the range.',
          schema: { type: 'integer' },
        },
      },
      content: { [contentType]: { schema: options.partialBodySchema ?? body } },
    };
  }
  responses['304'] = {
    description: options.notModified ?? 'If-None-Match matched (weak comparison); no body.',
    headers: representation,
  };
  responses['412'] =
    options.preconditionFailedBody === false
      ? { description: preconditionFailed }
      : problem(preconditionFailed);
  if (!options.head) {
    responses['416'] = {
      ...problem(
        options.rangeNotSatisfiable ??
          '`range_not_satisfiable`: the range starts past the end (or is `bytes=-0`).',
      ),
      headers: {
        'Content-Range': stringHeader(
          options.unsatisfiableContentRange ??
            '`bytes */<size>`: the size of the representation (RFC 9110 §15.5.17).',
          { pattern: '^bytes \\*/[0-9]+$' },
        ),
      },
    };
  }
  return responses;
}

/**
 * The conditional and range request headers every download reads (documented; the route's
 * conditional handling parses them). `lastModified`: the representation sends `Last-Modified`, so
 * If-Modified-Since and If-Unmodified-Since apply.
 */
export function downloadRequestHeaders(options: { lastModified?: boolean } = {}) {
  const header = (description: string) => z.string().optional().openapi({ param: { description } });
  return z.object({
    Range: header(
      'One byte range: `bytes=<first>-<last>`, `bytes=<first>-` or `bytes=-<suffix length>` (the unit in any case): 206. A first byte at or past the end, or `bytes=-0`: 416. A list of several ranges, or a malformed range, is ignored: the whole, with 200 (no `multipart/byteranges`).',
    ),
    'If-Range': header(
      'Resuming: the ETag (compared strongly: a `W/` tag never matches) or, where `Last-Modified` is sent, that exact date. When it does not name this representation, or is not a valid entity tag or date, `Range` is ignored and the whole is sent with 200 (RFC 9110 §13.1.5).',
    ),
    'If-Match': header(
      'Entity tags, or `*`. Compared strongly (RFC 9110 §13.1.1): a `W/` tag never matches. When none matches: 412 `precondition_failed`. Evaluated before every other condition.',
    ),
    'If-None-Match': header(
      'Entity tags, or `*`. Compared weakly (`W/` is ignored): when one matches the ETag, 304 with the ETag and no body. Evaluated after If-Match/If-Unmodified-Since, before If-Range (RFC 9110 §13.2.2).',
    ),
    ...(options.lastModified
      ? {
          'If-Unmodified-Since': header(
            'An HTTP-date, used only without If-Match and where `Last-Modified` is sent (bundles): modified after it, 412 `precondition_failed`. An invalid date is ignored.',
          ),
          'If-Modified-Since': header(
            'An HTTP-date, used only without If-None-Match and where `Last-Modified` is sent (bundles): not modified since, 304. An invalid or future date is ignored.',
          ),
        }
      : {}),
  });
}
