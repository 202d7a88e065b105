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

/** Bundles whose names carry their content hash (made by scripts/build-web.mjs) never change. */
const HASHED_ASSET = /-[A-Z0-9]{8}\.(js|css)$/;

/**
 * Where the built app is: dist/web next to the compiled service (dist/src/http → dist/web), or
 * dist/web of the checkout when the service runs from its sources (tests).
 */
export function webRoot(): string | undefined {
  return [path.resolve(__dirname, '../../web'), path.resolve(__dirname, '../../dist/web')].find(
    (dir) => existsSync(path.join(dir, 'index.html')) && existsSync(path.join(dir, 'assets.json')),
  );
}

/** The support staff's web app at /app/, built into dist/web by `npm run build`. */
export function webRoutes(): Router {
  const router = Router();
  let serve: RequestHandler | undefined;

  const securityHeaders: RequestHandler = (_req, res, next) => {
    res.set({
      'Content-Security-Policy': WEB_CSP,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'X-Frame-Options': 'DENY',
      'Cross-Origin-Opener-Policy': 'same-origin',
    });
    next();
  };

  router.get('/', securityHeaders, (_req, res) => {
    res.redirect(302, '/app/');
  });

  // Routes rather than a mount, so that the route table knows /app and answers 405 with Allow.
  // The asset route comes first: non-strict routing would let '/app' match '/app/' too.
  router.get('/app/{*asset}', securityHeaders, (req, res, next) => {
    if (!serve) {
      const root = webRoot();
      if (!root) {
        throw new AppError('not_ready', 'The web app is not built: run `npm run build`.');
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
    req.url = url.slice('/app'.length);
    serve(req, res, (err?: unknown) => {
      req.url = url;
      next(err);
    });
  });

  router.get('/app', securityHeaders, (_req, res) => {
    res.redirect(301, '/app/');
  });

  return router;
}
