import { existsSync } from 'node:fs';
import path from 'node:path';
import express, { Router, type RequestHandler } from 'express';
import { AppError } from '../base/errors';

/** No inline script or style, no eval, nothing from another origin, never framed. */
export const WEB_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The packing station's page: the same, tighter still. It plays nothing from a URL (the camera
 * preview is a canvas fed from a MediaStream, which no CSP directive governs) and shows no
 * images, so media and images from anywhere, blob: included, are refused.
 */
export const STATION_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "media-src 'none'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Bundles whose names carry their content hash (made by scripts/build-web.mjs) never change. */
const HASHED_ASSET = /-[A-Z0-9]{8}\.(js|css)$/;

/**
 * Where a built app is: dist/<folder> next to the compiled service (dist/src/http → dist/web), or
 * dist/<folder> of the checkout when the service runs from its sources (tests).
 */
export function webRoot(folder: 'web' | 'station' = 'web'): string | undefined {
  return [
    path.resolve(__dirname, '../..', folder),
    path.resolve(__dirname, '../../dist', folder),
  ].find(
    (dir) => existsSync(path.join(dir, 'index.html')) && existsSync(path.join(dir, 'assets.json')),
  );
}

const securityHeaders =
  (csp: string): RequestHandler =>
  (_req, res, next) => {
    res.set({
      'Content-Security-Policy': csp,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'X-Frame-Options': 'DENY',
      'Cross-Origin-Opener-Policy': 'same-origin',
    });
    next();
  };

/** Serves a built app's files under /<prefix>/ (a route rather than a mount: see webRoutes). */
function staticApp(prefix: string, folder: 'web' | 'station', what: string): RequestHandler {
  let serve: RequestHandler | undefined;
  return (req, res, next) => {
    if (!serve) {
      const root = webRoot(folder);
      if (!root) {
        throw new AppError('not_ready', `The ${what} is not built: run \`npm run build\`.`);
      }
      serve = express.static(root, {
        index: 'index.html',
        dotfiles: 'ignore',
        redirect: false,
        fallthrough: true,
        setHeaders: (r, file) => {
          r.setHeader(
            'Cache-Control',
            HASHED_ASSET.test(file) ? 'public, max-age=31536000, immutable' : 'no-cache',
          );
        },
      });
    }
    // express.static serves the path below the app's root, as a mount would have given it.
    const url = req.url;
    req.url = url.slice(prefix.length);
    serve(req, res, (err?: unknown) => {
      req.url = url;
      next(err);
    });
  };
}

/**
 * The support staff's web app at /app/ (dist/web) and the packing station's page at /station/
 * (dist/station), both built by `npm run build`.
 */
export function webRoutes(): Router {
  const router = Router();
  const appHeaders = securityHeaders(WEB_CSP);
  const stationHeaders = securityHeaders(STATION_CSP);

  router.get('/', appHeaders, (_req, res) => {
    res.redirect(302, '/app/');
  });

  // Routes rather than a mount, so that the route table knows /app and answers 405 with Allow.
  // The asset route comes first: non-strict routing would let '/app' match '/app/' too.
  router.get('/app/{*asset}', appHeaders, staticApp('/app', 'web', 'web app'));
  router.get('/app', appHeaders, (_req, res) => {
    res.redirect(301, '/app/');
  });

  router.get('/station/{*asset}', stationHeaders, staticApp('/station', 'station', 'station page'));
  router.get('/station', stationHeaders, (_req, res) => {
    res.redirect(301, '/station/');
  });

  return router;
}
