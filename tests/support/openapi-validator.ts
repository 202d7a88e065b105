import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type http from 'node:http';
import zlib from 'node:zlib';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Ajv2020, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import openapi from '../../src/http/openapi.json';
import { loggablePath } from '../../src/http/redact';

/**
 * Checks HTTP responses against src/http/openapi.json, so that a status, header, content type or
 * body the document does not declare fails the test suite that received it (drift fails CI).
 *
 * For every response: its status must be declared for the path and method (HEAD falls back to
 * GET, as express serves every GET route for HEAD); its Content-Type must be one declared for
 * that status (none when none is declared); a JSON body must validate against the declared schema
 * (closed: an object schema that does not say `additionalProperties` accepts no property it does
 * not list); the declared `required` headers must be present, every declared header present must
 * match its schema, and every header outside the generic HTTP ones must be declared.
 *
 * A known path with a method it does not serve must answer 405 `method_not_allowed` with `Allow`
 * (components/responses/MethodNotAllowed); a path the document does not know, 404
 * `route_not_found` (components/responses/RouteNotFound).
 */

type Json = Record<string, unknown>;
interface HeaderObject {
  required?: boolean;
  schema?: Json;
  $ref?: string;
}
interface ResponseObject {
  $ref?: string;
  headers?: Record<string, HeaderObject>;
  content?: Record<string, { schema?: Json }>;
}
interface Operation {
  responses: Record<string, ResponseObject>;
}

/** What every response may carry without the document declaring it (RFC 9110/9112 plumbing). */
const GENERIC_HEADERS = new Set([
  'content-type',
  'content-length',
  'date',
  'connection',
  'keep-alive',
  'transfer-encoding',
  // Every answer carries its request id (the document says so in info.description).
  'x-request-id',
  // Said once for all in info.description: protective headers any answer may carry, and the
  // cross-cutting negotiation ones (compression, CORS).
  'x-content-type-options',
  'content-security-policy',
  'referrer-policy',
  'x-frame-options',
  'cross-origin-opener-policy',
  'cross-origin-resource-policy',
  'x-robots-tag',
  'cache-control',
  'vary',
  'content-encoding',
  'access-control-allow-origin',
  'access-control-expose-headers',
]);

/** Bodies larger than this are not kept for validation (the document itself is ~180 KB). */
const MAX_BODY_BYTES = 1024 * 1024;

export interface RecordedExchange {
  method: string;
  /** The request target as the client sent it (query included; it is stripped here). */
  url: string;
  status: number;
  headers: http.OutgoingHttpHeaders;
  /** The body when complete and small enough to keep; undefined for streamed or cut-off bodies. */
  body?: Buffer;
}

type Doc = {
  paths: Record<string, Record<string, unknown>>;
  components: Record<string, Record<string, unknown>>;
};

/**
 * A copy of the document whose object schemas are closed: `unevaluatedProperties: false` where
 * no `additionalProperties`/`unevaluatedProperties` is said. A schema used as an `allOf` member
 * stays open there (its siblings add properties); the `allOf` itself is closed, which sees
 * through `allOf` and `$ref`.
 */
function closedDocument(document: unknown): Json {
  const copy = structuredClone(document) as unknown as Json & {
    components: { schemas: Record<string, Json> };
  };
  const schemas = copy.components.schemas;
  const openNames = new Set<string>();
  const close = (node: unknown, inAllOf = false): void => {
    if (Array.isArray(node)) {
      node.forEach((n) => close(n, inAllOf));
      return;
    }
    if (!node || typeof node !== 'object') return;
    const s = node as Json;
    if (inAllOf && typeof s.$ref === 'string') {
      const name = s.$ref.replace('#/components/schemas/', '');
      openNames.add(name);
      s.$ref = `#/components/schemas/${name}__open`;
    }
    const isObjectSchema =
      (s.type === 'object' || s.properties !== undefined || s.allOf !== undefined) &&
      s.additionalProperties === undefined &&
      s.unevaluatedProperties === undefined;
    if (isObjectSchema && !inAllOf) s.unevaluatedProperties = false;
    for (const [k, v] of Object.entries(s)) {
      if (k === 'allOf') (v as unknown[]).forEach((m) => close(m, true));
      else if (k === 'properties' || k === 'patternProperties' || k === '$defs') {
        Object.values(v as Json).forEach((p) => close(p));
      } else if (v && typeof v === 'object') close(v);
    }
  };
  const originals = structuredClone(schemas);
  close(copy);
  for (const name of openNames) {
    const open = structuredClone(originals[name]!);
    close(open, true);
    schemas[`${name}__open`] = open;
  }
  return copy;
}

function ajvFor(document: Json): Ajv2020 {
  const ajv = new Ajv2020({
    strict: true,
    allErrors: true,
    strictTypes: false,
    strictRequired: false,
  });
  addFormats(ajv);
  // OpenAPI's own keywords, outside JSON Schema: known, with no validation of their own.
  for (const k of [
    'openapi',
    'info',
    'servers',
    'security',
    'tags',
    'paths',
    'components',
    'example',
    'discriminator',
    'xml',
    'externalDocs',
  ]) {
    ajv.addKeyword(k);
  }
  ajv.addSchema({ ...document, $id: 'openapi.json' });
  return ajv;
}

const pointer = (...parts: string[]) =>
  parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

/** Path templates as regular expressions, literal segments first (`/v1/evidence/x` before `{id}`). */
const routesOf = (document: Doc) =>
  Object.keys(document.paths)
    .map((template) => ({
      template,
      re: new RegExp(
        `^${template
          .split('/')
          .map((seg) => (/^\{.+\}$/.test(seg) ? '[^/]+' : seg.replace(/[.*+?^$()|[\]\\]/g, '\\$&')))
          .join('/')}$`,
        'i',
      ),
      literals: template.split('/').filter((s) => s && !s.startsWith('{')).length,
    }))
    .sort((a, b) => b.literals - a.literals);

export class OpenApiValidator {
  private readonly doc: Doc;
  private readonly ajv: Ajv2020;
  private readonly routes: ReturnType<typeof routesOf>;

  /** `document`: src/http/openapi.json unless given (the tests give altered copies). */
  constructor(document: unknown = openapi) {
    this.doc = document as Doc;
    this.ajv = ajvFor(closedDocument(document));
    this.routes = routesOf(this.doc);
  }

  private readonly compiled = new Map<string, ValidateFunction>();
  /** How many responses were checked (to prove the hook sees them). */
  checked = 0;
  readonly violations: { key: string; example: string; count: number }[] = [];
  private readonly seen = new Map<string, { key: string; example: string; count: number }>();

  /** The document's path template that `url` falls under, if any. */
  matchPath(url: string): string | undefined {
    let path = url.split('?')[0]!.split('#')[0]!;
    if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
    return this.routes.find((r) => r.re.test(path))?.template;
  }

  private compiledInline(schema: Json): ValidateFunction {
    const key = JSON.stringify(schema);
    let fn = this.compiled.get(key);
    if (!fn) this.compiled.set(key, (fn = this.ajv.compile(schema)));
    return fn;
  }

  private schemaAt(ref: string): ValidateFunction {
    let fn = this.compiled.get(ref);
    if (!fn) {
      fn = this.ajv.getSchema(`openapi.json#${ref}`);
      if (!fn) throw new Error(`OpenAPI: cannot compile the schema at ${ref}`);
      this.compiled.set(ref, fn);
    }
    return fn;
  }

  private resolve<T>(obj: T & { $ref?: string }): { value: T; at?: string } {
    let at: string | undefined;
    let value: T & { $ref?: string } = obj;
    for (let i = 0; value.$ref && i < 10; i++) {
      at = value.$ref.slice(1);
      value = at
        .split('/')
        .slice(1)
        .reduce<unknown>(
          (o, k) => (o as Json)?.[k.replace(/~1/g, '/').replace(/~0/g, '~')],
          this.doc,
        ) as T & { $ref?: string };
      if (!value) throw new Error(`OpenAPI: $ref ${at} does not resolve`);
    }
    return { value, at };
  }

  /** The problems with one response; none when it is as the document says. */
  check(ex: RecordedExchange): string[] {
    // The support staff's web app and the packing station's page (HTML, scripts, styles) are not
    // the API the document describes.
    if (/^\/(app|station)(\/|\?|$)/i.test(ex.url)) return [];
    const method = ex.method.toLowerCase();
    const template = this.matchPath(ex.url);
    const problems: string[] = [];
    let operation: Operation | undefined;
    let opPointer = '';
    let where = '';
    if (!template) {
      operation = { responses: { '404': { $ref: '#/components/responses/RouteNotFound' } } };
      opPointer = '(unknown path)';
      where = 'a path the document does not list';
    } else {
      const item = this.doc.paths[template]!;
      const declared = item[method] ? method : method === 'head' && item.get ? 'get' : undefined;
      if (declared) {
        operation = item[declared] as Operation;
        opPointer = pointer('', 'paths', template, declared);
        where = `${declared.toUpperCase()} ${template}`;
      } else {
        operation = {
          responses: { '405': { $ref: '#/components/responses/MethodNotAllowed' } },
        };
        opPointer = `(${template} has no ${method} operation)`;
        where = `${template}, which has no ${method} operation`;
      }
    }
    const statusKey = [String(ex.status), `${String(ex.status)[0]}XX`, 'default'].find(
      (k) => operation.responses[k],
    );
    if (!statusKey) {
      return [
        `status ${ex.status} is not declared for ${where} (declared: ${Object.keys(operation.responses).join(', ')})`,
      ];
    }
    const { value: response, at } = this.resolve(operation.responses[statusKey]!);
    const responseAt = at ? `${where} ${statusKey} (${at})` : `${where} ${statusKey}`;

    // Headers: declared required ones present, declared ones well-formed, no undeclared ones.
    const declaredHeaders = new Map(
      Object.entries(response.headers ?? {}).map(([name, h]) => [
        name.toLowerCase(),
        this.resolve(h).value,
      ]),
    );
    for (const [name, h] of declaredHeaders) {
      if (h.required && ex.headers[name] === undefined) {
        problems.push(`required header ${name} is missing (${responseAt})`);
      }
    }
    for (const [name, raw] of Object.entries(ex.headers)) {
      const lower = name.toLowerCase();
      if (GENERIC_HEADERS.has(lower)) continue;
      const h = declaredHeaders.get(lower);
      // Every answer under /v1/uploads carries Tus-Resumable (tus 1.0), the 405s the route
      // table gives for methods no operation declares included.
      if (!h && lower === 'tus-resumable' && template?.startsWith('/v1/uploads')) continue;
      if (!h) {
        problems.push(`header ${name} is not declared for ${responseAt}`);
        continue;
      }
      if (h.schema) {
        const v = Array.isArray(raw) ? raw.join(', ') : String(raw);
        const schema = h.schema;
        const typed =
          schema.type === 'integer' || schema.type === 'number'
            ? /^-?\d+(\.\d+)?$/.test(v)
              ? Number(v)
              : v
            : v;
        const validate = this.compiledInline(schema);
        if (!validate(typed)) {
          problems.push(`header ${name}: ${JSON.stringify(v)} ${formatErrors(validate.errors)}`);
        }
      }
    }

    // Content type: one declared for this status, or none when none is declared.
    const contentType = String(ex.headers['content-type'] ?? '')
      .split(';')[0]!
      .trim()
      .toLowerCase();
    let content = response.content ?? {};
    // A HEAD answers with the Content-Type its GET would send (RFC 9110 §9.3.2): a HEAD operation
    // that declares no content for this status is held to the GET's.
    if (method === 'head' && !Object.keys(content).length && template) {
      const get = this.doc.paths[template]!.get as Operation | undefined;
      const getResponse = get?.responses[statusKey];
      if (getResponse) content = this.resolve(getResponse).value.content ?? {};
    }
    const bodyless = ex.status === 204 || ex.status === 304 || method === 'head';
    const mediaKey = Object.keys(content).find((k) => mediaMatches(k.toLowerCase(), contentType));
    if (!contentType) {
      if (Object.keys(content).length && !bodyless && ex.body?.length) {
        problems.push(`no Content-Type, but ${responseAt} declares ${Object.keys(content)}`);
      }
    } else if (!mediaKey) {
      problems.push(
        `Content-Type ${contentType} is not declared for ${responseAt} (declared: ${Object.keys(content).join(', ') || 'no content'})`,
      );
    } else if (!bodyless && ex.body && isJson(contentType)) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(decoded(ex.body, ex.headers['content-encoding']).toString('utf8'));
      } catch {
        problems.push(`the ${contentType} body is not JSON`);
      }
      const schemaOwner = at ?? `${opPointer}/responses/${statusKey}`;
      if (parsed !== undefined && content[mediaKey]!.schema && schemaOwner.startsWith('/')) {
        const validate = this.schemaAt(`${schemaOwner}/${pointer('content', mediaKey, 'schema')}`);
        if (!validate(parsed)) {
          problems.push(`body ${formatErrors(validate.errors)} (${responseAt}, ${mediaKey})`);
        }
      }
    }
    return problems;
  }

  /** Checks the exchange and keeps its problems, once per operation, status and problem. */
  record(ex: RecordedExchange): void {
    this.checked++;
    const problems = this.check(ex);
    if (!problems.length) return;
    const key = `${ex.method} ${this.matchPath(ex.url) ?? loggablePath(ex.url.split('?')[0]!)} → ${ex.status}:\n${problems.map((p) => `    - ${p}`).join('\n')}`;
    const seen = this.seen.get(key);
    if (seen) seen.count++;
    else {
      const entry = { key, example: loggablePath(ex.url.split('?')[0]!), count: 1 };
      this.seen.set(key, entry);
      this.violations.push(entry);
    }
  }

  /** Throws with every violation seen so far (and forgets them), for afterAll / close(). */
  assertClean(): void {
    if (!this.violations.length) return;
    const all = this.violations.splice(0);
    this.seen.clear();
    throw new Error(violationReport(all));
  }

  /**
   * Tees every response of `server` into `record`: installed first (prependListener), so it
   * sees the status, headers and body of every answer, whoever the client is. Bodies are kept up
   * to MAX_BODY_BYTES and only for non-binary types; streamed binaries are checked by status
   * and headers only.
   */
  attach(server: http.Server): void {
    const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
      const method = req.method ?? 'GET';
      const url = req.url ?? '/';
      const chunks: Buffer[] = [];
      let size = 0;
      let keep = true;
      const tee = (chunk: unknown, encoding?: unknown) => {
        if (!keep || chunk === undefined || chunk === null || typeof chunk === 'function') return;
        const type = String(res.getHeader('content-type') ?? '');
        if (type && !isJson(type.split(';')[0]!.trim().toLowerCase())) {
          keep = false;
          chunks.length = 0;
          return;
        }
        const buf = Buffer.isBuffer(chunk)
          ? chunk
          : typeof chunk === 'string'
            ? Buffer.from(
                chunk,
                typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8',
              )
            : Buffer.from(chunk as Uint8Array);
        size += buf.length;
        if (size > MAX_BODY_BYTES) {
          keep = false;
          chunks.length = 0;
          return;
        }
        chunks.push(buf);
      };
      const write = res.write.bind(res) as (...a: unknown[]) => boolean;
      const end = res.end.bind(res) as (...a: unknown[]) => http.ServerResponse;
      (res as unknown as { write: (...a: unknown[]) => boolean }).write = (...args) => {
        tee(args[0], args[1]);
        return write(...args);
      };
      (res as unknown as { end: (...a: unknown[]) => http.ServerResponse }).end = (...args) => {
        tee(args[0], args[1]);
        return end(...args);
      };
      let done = false;
      const finish = (complete: boolean) => {
        if (done) return;
        done = true;
        // A response cut before its headers went out (the client hung up) answered nothing.
        if (!res.headersSent) return;
        try {
          this.record({
            method,
            url,
            status: res.statusCode,
            headers: res.getHeaders(),
            body: complete && keep ? Buffer.concat(chunks) : undefined,
          });
        } catch (err) {
          const key = `${method} ${loggablePath(url.split('?')[0]!)}: validator error ${String(err)}`;
          this.violations.push({ key, example: '', count: 1 });
        }
      };
      res.once('finish', () => finish(true));
      res.once('close', () => finish(false));
    };
    server.prependListener('request', listener);
    this.detach = () => void server.off('request', listener);
  }

  /** Stops checking the server attach() was given. */
  detach: () => void = () => undefined;
}

/**
 * For a service run in a child process by tests/support/run-service.js: the environment that
 * makes it record its responses (TEST_OPENAPI_REPORT), and the check of what it recorded. The
 * child only appends each exchange to the file (one JSON line, cheap: a service that is killed
 * and started again every few hundred milliseconds must not spend its life compiling schemas);
 * this process checks them all at the end, with one validator. A SIGKILL loses at most the line
 * being written. Off with OPENAPI_VALIDATE=off.
 */
export function childProcessReport(): { env: Record<string, string>; assertClean(): void } {
  if (process.env.OPENAPI_VALIDATE === 'off') return { env: {}, assertClean: () => undefined };
  const dir = mkdtempSync(path.join(tmpdir(), 'openapi-report-'));
  const file = path.join(dir, 'exchanges.jsonl');
  return {
    env: { TEST_OPENAPI_REPORT: file },
    assertClean() {
      const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n') : [];
      rmSync(dir, { recursive: true, force: true });
      const validator = new OpenApiValidator();
      for (const line of lines) {
        let ex: SerializedExchange;
        try {
          ex = JSON.parse(line) as SerializedExchange;
        } catch {
          continue; // empty, or cut by a SIGKILL mid-write
        }
        validator.record({ ...ex, body: ex.body ? Buffer.from(ex.body, 'base64') : undefined });
      }
      validator.assertClean();
    },
  };
}

/** An exchange as a child process writes it to its report (the body in base64). */
export type SerializedExchange = Omit<RecordedExchange, 'body'> & { body?: string };

/** The failure message for responses that did not match the document. */
export function violationReport(all: { key: string; example: string; count: number }[]): string {
  return `${all.length} kind(s) of response did not match src/http/openapi.json (declare the status, header or content there, or fix the service):\n  ${all
    .map((v) => `${v.key}\n    (${v.count}×, e.g. ${v.example})`)
    .join('\n  ')}`;
}

function mediaMatches(declared: string, actual: string): boolean {
  if (declared === actual || declared === '*/*') return true;
  if (declared.endsWith('/*')) return actual.startsWith(declared.slice(0, -1));
  return false;
}

const isJson = (type: string) => type === 'application/json' || type.endsWith('+json');

function formatErrors(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .slice(0, 8)
    .map(
      (e) =>
        `${e.instancePath || '(root)'} ${e.message}${e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : ''}`,
    )
    .join('; ');
}

/** The body as sent before its Content-Encoding (gzip or br, from the compression middleware). */
function decoded(body: Buffer, encoding: http.OutgoingHttpHeader | undefined): Buffer {
  const coding = String(encoding ?? '')
    .trim()
    .toLowerCase();
  if (coding === 'gzip' || coding === 'x-gzip') return zlib.gunzipSync(body);
  if (coding === 'br') return zlib.brotliDecompressSync(body);
  return body;
}
