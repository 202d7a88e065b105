import type { Express } from 'express';
import { createApp } from '../../src/http/app';
import openapi from '../../src/http/openapi.json';
import { PROBLEMS } from '../../src/http/problem';
import type { AppContext } from '../../src/context';

type Layer = { route?: { path: string; methods: Record<string, boolean> } };

/** Every route express would serve, as "METHOD /openapi/{style}" strings. */
function servedRoutes(app: Express): string[] {
  const found: string[] = [];
  const walk = (stack: (Layer & { handle?: { stack?: Layer[] } })[]) => {
    for (const layer of stack) {
      if (layer.route) {
        const path = layer.route.path.replace(/:(\w+)/g, '{$1}');
        for (const [method, on] of Object.entries(layer.route.methods)) {
          if (on && method !== '_all') found.push(`${method.toUpperCase()} ${path}`);
        }
      } else if (layer.handle?.stack) walk(layer.handle.stack);
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return found;
}

describe('OpenAPI document', () => {
  // Building the app needs no live dependencies; only the route table is inspected.
  const app = createApp({
    config: { http: { corsOrigins: [] }, maxUploadBytes: 1 },
    logger: {},
    uploads: {}, // the tus server wants a store object; no request reaches it here
  } as unknown as AppContext);
  const doc = openapi as {
    openapi: string;
    paths: Record<string, Record<string, unknown>>;
    components: { schemas: { Problem: { properties: { code: { enum: string[] } } } } };
  };

  it('is OpenAPI 3.1', () => {
    expect(doc.openapi).toMatch(/^3\.1\./);
  });

  it('describes every route the app serves', () => {
    // The web app's static files (/app, /app/...) are described under `/`, not one by one.
    const routes = servedRoutes(app).filter((r) => !/^GET \/app(\/|$)/.test(r));
    expect(routes.length).toBeGreaterThan(8);
    const undocumented = routes.filter((r) => {
      const [method, path] = r.split(' ') as [string, string];
      return !doc.paths[path]?.[method.toLowerCase()];
    });
    expect(undocumented).toEqual([]);
  });

  it('documents no route the app does not serve', () => {
    const routes = new Set(servedRoutes(app));
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops)
        .filter((m) => ['get', 'post', 'put', 'patch', 'delete', 'head'].includes(m))
        .map((m) => `${m.toUpperCase()} ${path}`),
    );
    expect(
      documented.filter(
        (r) => !routes.has(r) && !(r.startsWith('HEAD ') && routes.has(r.replace('HEAD', 'GET'))),
      ),
    ).toEqual([]);
  });

  it('lists exactly the problem codes the service can return', () => {
    expect([...doc.components.schemas.Problem.properties.code.enum].sort()).toEqual(
      Object.keys(PROBLEMS).sort(),
    );
  });
});
