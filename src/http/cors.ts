import type { ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import type { RouteTable } from './route-table';

/** Request headers a listed origin's page may send: the API's, the call push's and tus's. */
export const CORS_ALLOW_HEADERS = [
  'Authorization',
  'Content-Type',
  'Content-Disposition',
  'Content-Digest',
  'Idempotency-Key',
  'If-Match',
  'If-None-Match',
  'If-Modified-Since',
  'If-Unmodified-Since',
  'If-Range',
  'Range',
  'Repr-Digest',
  'X-Request-Id',
  'X-Call-Source',
  'X-Call-From',
  'X-Call-To',
  'X-Call-Direction',
  'X-Call-Agent',
  'X-Captured-At',
  'X-Order-Id',
  'X-Complaint-Id',
  'Tus-Resumable',
  'Upload-Length',
  'Upload-Metadata',
  'Upload-Offset',
  'Upload-Defer-Length',
  'Upload-Concat',
  'X-HTTP-Method-Override',
  'X-Requested-With',
].join(', ');

/** Response headers its scripts may read (beyond the CORS-safelisted ones). */
export const CORS_EXPOSE_HEADERS = [
  'Allow',
  'Accept-Ranges',
  'Content-Disposition',
  'Content-Range',
  'ETag',
  'Idempotent-Replayed',
  'Location',
  'Repr-Digest',
  'Retry-After',
  'WWW-Authenticate',
  'X-Request-Id',
  'Evidence-Item-Id',
  'Evidence-Item-Url',
  'Evidence-Item-Status',
  'Tus-Resumable',
  'Tus-Version',
  'Tus-Max-Size',
  'Tus-Extension',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Metadata',
  'Upload-Expires',
].join(', ');

/** Chromium caps a cached preflight at 2 hours; Firefox at 24. */
const MAX_AGE_SECONDS = 7200;

/**
 * CORS for the origins of CORS_ORIGINS, exactly as listed: their pages may call the API with a
 * key in `Authorization`. Any other origin gets no CORS header at all (never reflected), so its
 * page cannot read an answer. `Access-Control-Allow-Credentials` is never sent: the API's keys
 * are a header, not credentials, and the web app's session cookie must not work from another
 * origin's page. A preflight from a listed origin is answered here (204) for every known path,
 * the tus endpoint included; anything else goes on to the routes.
 */
export function cors(origins: readonly string[], routes: RouteTable): RequestHandler {
  const listed = new Set(origins);
  return (req, res, next) => {
    if (listed.size === 0) return next();
    res.vary('Origin'); // the answer differs by Origin: caches must not share it across origins
    const origin = req.get('origin');
    if (origin === undefined || !listed.has(origin)) return next();
    res.set({
      'Access-Control-Allow-Origin': origin,
      'Access-Control-Expose-Headers': CORS_EXPOSE_HEADERS,
    });
    if (req.method !== 'OPTIONS' || req.get('access-control-request-method') === undefined) {
      return next();
    }
    const allowed = routes.allowed(req.path);
    if (!allowed) return next(); // an unknown path: 404, as for anyone
    const methods = allowed.join(', ');
    res
      .set({
        Allow: methods,
        'Access-Control-Allow-Methods': methods,
        'Access-Control-Allow-Headers': CORS_ALLOW_HEADERS,
        'Access-Control-Max-Age': String(MAX_AGE_SECONDS),
      })
      .status(204)
      .end();
  };
}

/**
 * @tus/server 1.10 sets `Access-Control-Allow-Origin` on every answer: the request's Origin,
 * whatever it is, or `*` (and `allowedOrigins` cannot turn that off: an unlisted origin gets the
 * first listed one). The CORS middleware above has already decided; tus's own are dropped.
 */
export function withoutTusCors(res: ServerResponse): void {
  const setHeader = res.setHeader.bind(res);
  res.setHeader = (name: string, value: number | string | readonly string[]) =>
    /^access-control-/i.test(name) ? res : setHeader(name, value);
}
