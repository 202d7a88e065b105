import type { Express, RequestHandler } from 'express';
import { AppError } from '../base/errors';
import { loggablePath } from './redact';

/** The order methods are listed in, in `Allow` and `Access-Control-Allow-Methods`. */
const ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

interface Layer {
  route?: { methods: Record<string, boolean | undefined> };
  handle?: { stack?: Layer[] };
  match(path: string): unknown;
}

interface Entry {
  layer: Layer;
  methods: string[];
}

/**
 * The methods served per path, read from express's own routes, so `Allow` cannot drift from what
 * the routers register. Read at the first request: every route is registered by then. Routers
 * must be mounted at the root (`app.use(router)`), as all of ours are.
 */
export class RouteTable {
  private entries?: Entry[];

  constructor(private readonly app: Express) {}

  /**
   * Every method served at `path`: GET implies HEAD, and OPTIONS is answered on every known path.
   * Undefined for a path no route matches.
   */
  allowed(path: string): string[] | undefined {
    const matching = this.routes().filter((e) => matches(e.layer, path));
    if (matching.length === 0) return undefined;
    const methods = new Set(matching.flatMap((e) => e.methods));
    if (methods.has('GET')) methods.add('HEAD');
    methods.add('OPTIONS');
    return ORDER.filter((m) => methods.has(m));
  }

  /** Whether a route has the shape of `path` but a parameter is not valid percent-encoding. */
  undecodable(path: string): boolean {
    return this.routes().some((e) => {
      try {
        e.layer.match(path);
        return false;
      } catch (err) {
        return err instanceof URIError;
      }
    });
  }

  /** Whether a route at `path` answers OPTIONS itself (the tus endpoint's discovery). */
  servesOptions(path: string): boolean {
    return this.routes().some((e) => e.methods.includes('OPTIONS') && matches(e.layer, path));
  }

  private routes(): Entry[] {
    if (this.entries) return this.entries;
    const found: Entry[] = [];
    const walk = (stack: Layer[]) => {
      for (const layer of stack) {
        if (layer.route) {
          const methods = Object.entries(layer.route.methods)
            .filter(([m, on]) => on && m !== '_all')
            .map(([m]) => m.toUpperCase());
          found.push({ layer, methods });
        } else if (layer.handle?.stack) walk(layer.handle.stack);
      }
    };
    walk((this.app as unknown as { router: { stack: Layer[] } }).router.stack);
    this.entries = found;
    return found;
  }
}

function matches(layer: Layer, path: string): boolean {
  try {
    return Boolean(layer.match(path));
  } catch {
    return false; // a malformed %-escape in a parameter: not a path we know
  }
}

/**
 * Before any body is read: an unknown path is 404 and a known path with a method it does not
 * serve is 405 (with the complete `Allow`), whatever the body (malformed or oversized JSON would
 * otherwise be answered 400 or 413 by the parser first). OPTIONS (not a CORS preflight from a
 * listed origin, answered before) on a known path: 204 with `Allow`; a route that answers OPTIONS
 * itself (tus discovery) gets the `Allow` to send along. One middleware, not two: every request
 * passes here, and each layer costs a little on every request.
 */
export const knownRoutesOnly =
  (routes: RouteTable): RequestHandler =>
  (req, res, next) => {
    const allowed = routes.allowed(req.path);
    if (allowed && req.method === 'OPTIONS') {
      res.set('Allow', allowed.join(', '));
      if (!routes.servesOptions(req.path)) return void res.status(204).end();
    }
    if (!allowed && routes.undecodable(req.path)) {
      throw new AppError('not_found', 'The path is not valid percent-encoding: it names nothing.');
    }
    if (!allowed) {
      throw new AppError(
        'route_not_found',
        `No route for ${req.method} ${loggablePath(req.path)}.`,
      );
    }
    if (allowed.includes(req.method)) return next();
    const allow = allowed.join(', ');
    res.set('Allow', allow);
    throw new AppError('method_not_allowed', `Allowed methods: ${allow}.`);
  };

/** A known path with a method it does not serve: 405 with the complete `Allow`. */
export const methodNotAllowed =
  (routes: RouteTable): RequestHandler =>
  (req, res, next) => {
    const allowed = routes.allowed(req.path);
    // A served method that fell through (a file the web app does not have) is a 404.
    if (!allowed || allowed.includes(req.method)) return next();
    const allow = allowed.join(', ');
    res.set('Allow', allow);
    throw new AppError('method_not_allowed', `Allowed methods: ${allow}.`);
  };
