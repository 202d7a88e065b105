import { OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import { bundlesContract } from './bundles.contract';
import { commonContract } from './common.contract';
import { complaintsContract } from './complaints.contract';
import { custodyContract } from './custody.contract';
import { consoleContract } from './console.contract';
import { evidenceContract } from './evidence.contract';
import { holdsContract } from './holds.contract';
import { integrationsContract } from './integrations.contract';
import { mediaContract } from './media.contract';
import { operationsContract } from './operations.contract';
import { shareContract } from './share.contract';
import { uploadsContract } from './uploads.contract';
import { serverErrors, type ContractModule } from './operation';

/** Every contract file, in the order their paths appear in the document. */
const MODULES: ContractModule[] = [
  commonContract,
  evidenceContract,
  holdsContract,
  operationsContract,
  shareContract,
  integrationsContract,
  consoleContract,
  mediaContract,
  uploadsContract,
  custodyContract,
  complaintsContract,
  bundlesContract,
];

const HEAD = {
  openapi: '3.1.0',
  info: {
    title: 'Evidence archive',
    version: '1.0.0',
    description:
      "Archive of dispute evidence (packing videos, call recordings, photos). Bytes are stored unaltered and identified by the SHA-256 the server computes while receiving them; items are linked to order ids and complaint ids. Every change, view and download is recorded in an append-only, hash-chained audit trail whose head is periodically signed (Ed25519) into the blob store; items can be put under legal hold, verified against their recorded hash, and deleted (leaving a tombstone).\n\nRoles: `ingest` keys upload and read the receipts of their own uploads; `support` keys read, search, download, link and unlink, verify items, read an item's audit trail, and read and write complaints; `admin` keys do everything, including deletion, legal holds, the whole audit trail, custody status, custody jobs and metrics.\n\nAudited operations say so in their description. Refused and failed attempts at them (no key, wrong role, unknown item, bad input) are recorded too, with outcome `denied` or `failed`. Views, lists and downloads are recorded unless the service runs with `AUDIT_READS=false` (benchmarks only).\n\nErrors are `application/problem+json` (RFC 9457) with a stable `code`. Every response carries `X-Request-Id` (the caller's value when it matches `^[A-Za-z0-9._:-]{1,128}$`, otherwise a generated UUID). A path with no route gets 404 `route_not_found`; a path parameter that is not valid percent-encoding (`/v1/evidence/%E0`) gets 404 `not_found`; a method a known path does not serve gets 405 `method_not_allowed` (`#/components/responses/MethodNotAllowed`) with an `Allow` header listing every method the path serves (`GET` implies `HEAD`; `OPTIONS` is answered on every known path, 204 with `Allow`: `#/components/responses/Options`, except the tus endpoint's own discovery); an unexpected failure gets 500 `internal_error`. An outage of the database or the blob store (unreachable, shut down, timing out, overloaded) gets 503 `dependency_unavailable` with `Retry-After`; a full disk gets 507 `insufficient_storage`; nothing of the refused request is kept. The tus endpoint at `/v1/uploads` answers its refusals as problems too, with `Tus-Resumable` on every answer.\n\nRequests refused for want of a valid key (401) and share links that do not open (404, 410) are limited per client address (behind a proxy, as `TRUST_PROXY` says): past `REFUSAL_LIMIT_PER_MINUTE` a minute they get 429 `rate_limited` with `Retry-After`, and the audit trail counts them in one `access.refusals` event per address and minute instead of one event each. Valid keys and links are never limited.\n\nJSON answers (problems included), CSV and the metrics text are compressed when the request's `Accept-Encoding` asks for `br` or `gzip` (q-values honoured, `br` on a tie; bodies under 1 KiB only when `identity;q=0`), with `Content-Encoding` and `Vary: Accept-Encoding`. Stored bytes (evidence, derivatives, segment cuts, share-link content) and ZIP bundles are never compressed, so `Content-Length`, `Range`, `ETag` and `Repr-Digest` always name the bytes as stored.\n\nCORS: pages of the origins listed in `CORS_ORIGINS` (none by default) may call the API with a key in `Authorization`. Their preflights (`OPTIONS` with `Access-Control-Request-Method`) on a known path get 204 with `Access-Control-Allow-Origin` (that exact origin), `-Allow-Methods` (the path's), `-Allow-Headers`, `-Max-Age` and `Vary: Origin`; their other requests get `Access-Control-Allow-Origin` and `Access-Control-Expose-Headers`. Other origins get no `Access-Control-*` header at all. `Access-Control-Allow-Credentials` is never sent. When `CORS_ORIGINS` is set, every answer carries `Vary: Origin`.\n\nHeaders every answer may carry without each response listing them: `X-Request-Id`; the protective `X-Content-Type-Options`, `Content-Security-Policy`, `Referrer-Policy`, `X-Robots-Tag`, `X-Frame-Options`, `Cross-Origin-Opener-Policy`, `Cross-Origin-Resource-Policy` (`same-origin` on every answer but a share link's, so no other site's page can embed evidence) and `Cache-Control`; `Connection: close` on an answer given before the request body was read; and the negotiation headers `Vary`, `Content-Encoding` and `Access-Control-*`. An answer to an error never carries the `ETag`, `Repr-Digest`, `Content-Disposition` or `Accept-Ranges` of the bytes it did not send. Every `GET` also answers `HEAD` (the same status and headers, no body); the downloads, whose `HEAD` is recorded in the audit trail, list it.",
  },
  servers: [
    {
      url: '/',
    },
  ],
  security: [
    {
      bearer: [],
    },
  ],
  tags: [
    {
      name: 'evidence',
      description: 'Upload, read, search, link, unlink, download and delete evidence.',
    },
    {
      name: 'uploads',
      description:
        'Resumable uploads (tus 1.0) for large files over unreliable links: each finished upload becomes one evidence item, as if sent to `POST /v1/evidence`.',
    },
    {
      name: 'complaints',
      description: 'Complaints: the disputes whose evidence custody follows.',
    },
    {
      name: 'custody',
      description:
        'Audit trail, integrity verification, signed checkpoints, legal holds, custody status and jobs.',
    },
    {
      name: 'operations',
      description: 'Health, readiness, metrics and this document.',
    },
    {
      name: 'media',
      description:
        'Derivatives made in background jobs: posters, contact sheets, waveforms, thumbnails and browser-playable previews.',
    },
    {
      name: 'integrations',
      description: "Provider webhooks, authenticated by the provider's signature.",
    },
    {
      name: 'share links',
      description: 'Read-only, expiring, revocable links for people without a key.',
    },
    {
      name: 'console',
      description:
        'What the support web app (served at `/app/`) uses beyond the evidence API: who is signed in, the browser session its media elements use, one search box, and the API keys admin.',
    },
    {
      name: 'bundles',
      description:
        "Dispute bundles: a complaint's evidence in one ZIP with a signed manifest, its custody history and instructions a third party can follow with standard tools.",
    },
  ],
};

const METHODS = ['get', 'head', 'post', 'put', 'patch', 'delete', 'options'] as const;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** `/v1/evidence/{id}/links` → `V1EvidenceIdLinks` (the OPTIONS operation's id). */
function pathName(path: string): string {
  if (path === '/') return 'Root';
  return path
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((part) => part[0]!.toUpperCase() + part.slice(1))
    .join('');
}

/** OPTIONS on a path that does not declare its own: the methods it serves, and CORS preflights. */
function optionsOperation(path: string, tag: string) {
  return {
    tags: [tag],
    operationId: `options${pathName(path)}`,
    summary: 'Methods served; CORS preflight',
    description:
      'No authentication. 204 with `Allow`; a CORS preflight from an origin listed in `CORS_ORIGINS` also gets the CORS grant.',
    security: [],
    responses: {
      '204': { $ref: '#/components/responses/Options' },
      ...serverErrors,
    },
  };
}

/**
 * The OpenAPI 3.1 document, generated from the contract files' zod schemas. `npm run openapi`
 * writes it to src/http/openapi.json (checked in); a test fails when that file is stale.
 */
export function buildOpenApiDocument(): Json {
  const registry = new OpenAPIRegistry();
  for (const module of MODULES) {
    for (const component of module.components ?? []) {
      registry.registerComponent(
        component.type,
        component.name,
        component.value as Parameters<OpenAPIRegistry['registerComponent']>[2],
      );
    }
    for (const [name, schema] of Object.entries(module.schemas ?? {})) {
      registry.register(name, schema);
    }
    for (const operation of module.operations) registry.registerPath(operation);
  }
  const generated = new OpenApiGeneratorV31(registry.definitions).generateDocument(
    HEAD as Parameters<OpenApiGeneratorV31['generateDocument']>[0],
  ) as Json;
  const paths: Json = generated.paths ?? {};
  // zod-to-openapi declares parameters per operation only; a path item's own come from here.
  for (const module of MODULES) {
    for (const [path, parameters] of Object.entries(module.pathParameters ?? {})) {
      paths[path] = { parameters, ...paths[path] };
    }
  }
  for (const [path, item] of Object.entries(paths)) {
    const first = METHODS.map((m) => item[m]).find(Boolean);
    if (!item.options) item.options = optionsOperation(path, first?.tags?.[0] ?? 'operations');
  }
  const { webhooks: _none, ...document } = generated;
  return { ...document, paths };
}
