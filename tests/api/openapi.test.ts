import type { Express } from 'express';
import { createApp } from '../../src/http/app';
import openapi from '../../src/http/openapi.json';
import { PROBLEMS } from '../../src/contract/problems';
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
    // The web app's and the station's static files (/app/..., /station/...) are described under
    // `/`, not one by one.
    const routes = servedRoutes(app).filter((r) => !/^GET \/(app|station)(\/|$)/.test(r));
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

  const operations = () =>
    Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([m]) => ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'].includes(m))
        .map(([method, op]) => ({ path, method, op: op as Operation })),
    );

  it('declares 413 on every operation that takes a JSON body (and 415 where it is answered)', () => {
    const jsonOps = operations().filter(({ op }) => op.requestBody?.content?.['application/json']);
    expect(jsonOps.length).toBeGreaterThan(10);
    const missing = jsonOps
      .filter(({ op }) => !op.responses['413'])
      .map(({ method, path }) => `${method.toUpperCase()} ${path}`);
    expect(missing).toEqual([]);
    // A JSON operation sent another content type reads no body and refuses it as invalid input
    // (400), never 415 (tests/api/openapi-responses.test.ts checks this against the service).
    // Where a 415 is declared, it says which code.
    for (const { op } of jsonOps) {
      const r415 = op.responses['415'];
      if (r415)
        expect(JSON.stringify(r415)).toMatch(/unsupported_media_type|multipart_required|\$ref/);
    }
  });

  it('declares 500, 503 with Retry-After, and 429 wherever they can be answered', () => {
    const missing: string[] = [];
    for (const { path, method, op } of operations()) {
      for (const status of ['500', '503']) {
        if (!op.responses[status]) missing.push(`${method.toUpperCase()} ${path} ${status}`);
      }
      if (op.responses['401'] && !op.responses['429']) {
        missing.push(`${method.toUpperCase()} ${path} 429 (it answers 401, which is limited)`);
      }
      const r503 = resolve(op.responses['503']) as
        { headers?: Record<string, unknown> } | undefined;
      if (r503 && !r503.headers?.['Retry-After']) {
        missing.push(`${method.toUpperCase()} ${path} 503 Retry-After`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('has every $ref resolve', () => {
    const broken: string[] = [];
    const walk = (node: unknown, at: string) => {
      if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${at}/${i}`));
      if (!node || typeof node !== 'object') return;
      for (const [k, v] of Object.entries(node)) {
        if (k === '$ref' && typeof v === 'string') {
          if (!v.startsWith('#/') || resolve({ $ref: v }) === undefined) broken.push(`${at}: ${v}`);
        } else walk(v, `${at}/${k}`);
      }
    };
    walk(doc, '#');
    expect(broken).toEqual([]);
    expect(resolve({ $ref: '#/components/schemas/NoSuchSchema' })).toBeUndefined();
  });

  /** What a `$ref` points at in the document (undefined when nothing), or the object itself. */
  function resolve(obj: unknown): unknown {
    let value = obj as { $ref?: string } | undefined;
    for (let i = 0; value?.$ref && i < 10; i++) {
      value = value.$ref
        .slice(2)
        .split('/')
        .reduce<unknown>(
          (o, k) =>
            (o as Record<string, unknown> | undefined)?.[k.replace(/~1/g, '/').replace(/~0/g, '~')],
          doc,
        ) as { $ref?: string } | undefined;
    }
    return value;
  }
});

interface Operation {
  requestBody?: { content?: Record<string, unknown> };
  responses: Record<string, unknown>;
}
