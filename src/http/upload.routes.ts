import type { ServerResponse } from 'node:http';
import { Server } from '@tus/server';
// The checks tus applies to every request before its handlers (and answers in plain text): run
// here first, so that a refusal is a problem like every other.
import { validateHeader } from '@tus/server/dist/validators/HeaderValidator';
import { ERRORS, TUS_RESUMABLE, TUS_VERSION, type Upload } from '@tus/utils';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import type { AuditLog } from '../base/audit.service';
import { AppError, outageError, type ErrorCode } from '../base/errors';
import { assertAcceptableFilename } from '../evidence/filename';
import { parseSegments } from '../evidence/segments';
import type { IngestResult } from '../ingest/ingest.service';
import {
  fieldsFromMetadata,
  type ResumableUploadStore,
} from '../ingest/resumable/resumable-upload.store';
import type { UploadLocker } from '../ingest/resumable/upload-locker';
import type { Logger } from '../base/logger';
import { actorOf, audited, authenticate, principalOf, requirePermission } from './auth.middleware';
import { withoutTusCors } from './cors';
import { recordFailedAttempt, retryAfterFor } from './error.middleware';
import { PROBLEMS, problemBody } from '../contract/problems';

export interface UploadRoutesDeps {
  keys: ApiKeyService;
  uploads: ResumableUploadStore;
  locker: UploadLocker;
  audit: AuditLog;
  logger: Logger;
  maxUploadBytes: number;
}

const PATH = '/v1/uploads';

/**
 * tus's protocol errors (thrown as these very objects) as the archive's problems, with the status
 * tus 1.0 names where @tus/server's differs (a missing Content-Type or Upload-Offset is its 403).
 */
const TUS_PROBLEMS = new Map<unknown, { code: ErrorCode; detail: string }>([
  [ERRORS.FILE_NOT_FOUND, { code: 'not_found', detail: 'No such upload for this key.' }],
  [
    ERRORS.MISSING_OFFSET,
    { code: 'upload_offset_required', detail: 'A PATCH needs Upload-Offset.' },
  ],
  [
    ERRORS.INVALID_CONTENT_TYPE,
    {
      code: 'upload_content_type_required',
      detail: 'A PATCH needs Content-Type: application/offset+octet-stream.',
    },
  ],
  [
    ERRORS.INVALID_OFFSET,
    {
      code: 'upload_offset_conflict',
      detail: "Upload-Offset is not the upload's offset; ask with HEAD and send from there.",
    },
  ],
  [
    ERRORS.FILE_NO_LONGER_EXISTS,
    { code: 'upload_expired', detail: 'The upload expired; start a new one.' },
  ],
  [
    ERRORS.ERR_SIZE_EXCEEDED,
    {
      code: 'upload_length_exceeded',
      detail: "More bytes than Upload-Length were sent; none of this request's bytes were kept.",
    },
  ],
  [
    ERRORS.ERR_MAX_SIZE_EXCEEDED,
    { code: 'file_too_large', detail: 'Upload-Length is over Tus-Max-Size.' },
  ],
  [
    ERRORS.INVALID_LENGTH,
    { code: 'upload_length_required', detail: 'Creating an upload needs Upload-Length.' },
  ],
  [
    ERRORS.INVALID_METADATA,
    {
      code: 'invalid_tus_header',
      detail: 'Upload-Metadata is not comma-separated "key base64" pairs.',
    },
  ],
  [
    ERRORS.INVALID_TERMINATION,
    {
      code: 'upload_complete',
      detail: 'The upload is complete and archived: its bytes are evidence now.',
    },
  ],
  [
    ERRORS.UNSUPPORTED_CREATION_DEFER_LENGTH_EXTENSION,
    {
      code: 'tus_extension_unsupported',
      detail: 'creation-defer-length is not supported: send Upload-Length.',
    },
  ],
  [
    ERRORS.UNSUPPORTED_CONCATENATION_EXTENSION,
    {
      code: 'tus_extension_unsupported',
      detail: 'concatenation is not supported: disable parallel uploads in the client.',
    },
  ],
  [
    ERRORS.ABORTED,
    { code: 'upload_aborted', detail: 'Another request for this upload took it over.' },
  ],
  [
    ERRORS.ERR_LOCK_TIMEOUT,
    {
      code: 'upload_busy',
      detail: 'Another request is still writing this upload; retry in a moment.',
    },
  ],
]);

/** One of tus's protocol errors as the archive's problem; undefined for anything else. */
function tusProblem(err: unknown): AppError | undefined {
  const known = TUS_PROBLEMS.get(err);
  if (known) return new AppError(known.code, known.detail);
  // A body longer than the rest of the upload, sent without Content-Length, is stopped by
  // @tus/utils' StreamLimiter with an error class of its own (not exported): a 413.
  if (err instanceof Error && (err as { status_code?: unknown }).status_code === 413) {
    return tusProblem(ERRORS.ERR_SIZE_EXCEEDED);
  }
  return undefined;
}

/** The methods a POST may carry in X-HTTP-Method-Override (tus 1.0: the server MUST honour it). */
const OVERRIDABLE = new Set(['PATCH', 'HEAD', 'DELETE']);

/**
 * Resumable uploads (tus 1.0: creation, creation-with-upload, termination, expiration) for
 * stations on bad networks. Metadata carries the multipart upload's fields; the item exists once
 * every byte is in, and the response to the last PATCH (and any later HEAD) names it.
 */
export function uploadRoutes(deps: UploadRoutesDeps): Router {
  const { uploads } = deps;
  /** The id tus gave the upload a creating POST is making, by request, until it is answered. */
  const creating = new WeakMap<object, string>();
  const tus = new Server({
    path: PATH,
    datastore: uploads,
    locker: deps.locker,
    maxSize: deps.maxUploadBytes,
    relativeLocation: true,
    disableTerminationForFinishedUploads: true,
    onUploadCreate: async (req, res, upload) => {
      validateCreation(uploads, req as Request, upload);
      return res;
    },
    onIncomingRequest: async (req, res, id) => {
      if (req.method === 'POST') {
        creating.set(req, id);
        return;
      }
      // Ids are tus's (32 hex digits): anything else (a NUL the database cannot even compare)
      // names no upload.
      if (!UPLOAD_ID.test(id)) throw new AppError('not_found', 'No such upload for this key.');
      // A PATCH needs only the owner (its bytes are checked against the row under the lock); a
      // HEAD needs the upload's state too.
      const upload = req.method === 'HEAD' ? await uploads.status(id) : undefined;
      const owner = req.method === 'HEAD' ? upload?.owner : await uploads.owner(id);
      // Someone else's upload does not exist, as far as this key can tell.
      if (!owner || owner !== principalOf(req as Request).keyId) {
        throw new AppError('not_found', 'No such upload for this key.');
      }
      if (upload?.complete) {
        // A client resuming after a lost answer: an upload whose bytes are all in is archived
        // before its offset says so, so "complete" always means "archived".
        const result = upload.result ?? (await uploads.withLock(id, () => uploads.finish(id)));
        if (result) setItemHeaders(res, result);
      }
    },
    // The PATCH that delivered the last byte archived the item before answering (see write()).
    onUploadFinish: async (_req, res, upload) => {
      const result = (await uploads.status(upload.id))?.result;
      if (result) setItemHeaders(res, result);
      return res;
    },
    onResponseError: async (req, res, reported) => {
      // The cause of this request's own refused bytes, if that is what tus reports as an abort.
      const refusal = await uploads.takeRefusal();
      const err = refusal ?? reported;
      // A creating POST that fails is answered with no Location: nothing of it may stay (a
      // refusal of its bytes discarded it already).
      const created = creating.get(req);
      creating.delete(req);
      if (created && !refusal) {
        await uploads.abandon(created).catch((e: unknown) => {
          deps.logger.warn({ err: e, uploadId: created }, 'failed creation not discarded');
        });
      }
      const known = err instanceof AppError ? err : (tusProblem(err) ?? outageError(err));
      const code = known?.code ?? 'internal_error';
      const { status } = PROBLEMS[code];
      const request = req as Request;
      if (status >= 500 && code !== 'tus_extension_unsupported') {
        deps.logger.error({ err, reqId: request.id }, 'upload request failed');
      }
      await recordFailedAttempt(deps.audit, request, res as unknown as Response, status, code);
      res.setHeader('Content-Type', 'application/problem+json');
      const retryAfter = retryAfterFor(code);
      if (retryAfter) res.setHeader('Retry-After', retryAfter);
      const detail = known?.message ?? 'An unexpected error occurred; it has been logged.';
      return {
        status_code: status,
        body: JSON.stringify(problemBody(code, detail, request.path, known?.extra)),
      };
    },
  });

  const auth = authenticate(deps.keys);
  const handle: RequestHandler = async (req, res) => {
    // Methods are what the route says (a POST's override was taken by `overridden`): an OPTIONS,
    // which needs no key, never becomes anything else.
    delete req.headers['x-http-method-override'];
    const received = req.method;
    const method = (res.locals.tusMethod as string | undefined) ?? received;
    if (method !== 'OPTIONS') checkTusHeaders(req, res, method);
    withoutTusCors(res);
    // Only tus sees the overridden method: to express (the key check, the session cookie, the
    // error answers, which send no body to a HEAD) the request stays the POST it is.
    req.method = method;
    try {
      await uploads.inRequest(() => tus.handle(req, res));
    } finally {
      req.method = received;
    }
  };
  const guarded = [audited('evidence.create'), auth, requirePermission('evidence:create'), handle];

  const router = Router();
  // tus 1.0: in every response but OPTIONS's, refusals by the key check and 405s too.
  router.use(PATH, (_req, res, next) => {
    res.setHeader('Tus-Resumable', TUS_RESUMABLE);
    next();
  });
  router
    .route(PATH)
    .options(handle) // capability discovery: no key, nothing revealed (preflights: see cors.ts)
    .post(creationOnly, ...guarded);
  router
    .route(`${PATH}/:uploadId`)
    .options(handle)
    .head(...guarded)
    .patch(...guarded)
    .delete(...guarded)
    .post(overridden, ...guarded);
  return router;
}

/** As the route table says for this path (a 405 to GET lists the same): POST is served, overridden. */
const UPLOAD_METHODS = 'HEAD, POST, PATCH, DELETE, OPTIONS';

/** What an upload id may look like (tus names them with 32 hex digits); the rest is not found. */
const UPLOAD_ID = /^[0-9A-Za-z_-]{1,128}$/;

/** A POST to an upload is a PATCH, HEAD or DELETE named by X-HTTP-Method-Override, or nothing. */
const overridden: RequestHandler = (req, res, next) => {
  const wanted = req.get('x-http-method-override')?.trim().toUpperCase();
  if (!wanted || !OVERRIDABLE.has(wanted)) {
    res.set('Allow', UPLOAD_METHODS);
    throw new AppError(
      'method_not_allowed',
      `Allowed methods: ${UPLOAD_METHODS}; a POST only with X-HTTP-Method-Override: PATCH, HEAD or DELETE.`,
    );
  }
  // Applied by `handle`, just before tus: until then the request is a POST.
  res.locals.tusMethod = wanted;
  next();
};

/** A POST to the collection creates an upload: it is never overridden into another method. */
const creationOnly: RequestHandler = (req, res, next) => {
  const wanted = req.get('x-http-method-override')?.trim().toUpperCase();
  if (wanted && wanted !== 'POST') {
    res.set('Allow', 'POST, OPTIONS');
    throw new AppError(
      'method_not_allowed',
      `X-HTTP-Method-Override: ${wanted.slice(0, 20)} has no meaning on ${PATH}; its methods are POST and OPTIONS.`,
    );
  }
  next();
};

/**
 * What tus checks of every request before its handlers, answered as problems: the version (412
 * with Tus-Version, as tus 1.0 says, where @tus/server answers 400 for a wrong one), the tus
 * headers' syntax, and a PATCH's Content-Type (415, where @tus/server answers 400, or 403 when it
 * is missing) and Upload-Offset.
 */
function checkTusHeaders(req: Request, res: Response, method: string): void {
  const version = req.headers['tus-resumable'];
  if (version !== TUS_RESUMABLE) {
    res.setHeader('Tus-Version', TUS_VERSION.join(','));
    throw version === undefined
      ? new AppError(
          'tus_resumable_required',
          `Every tus request but OPTIONS needs Tus-Resumable: ${TUS_RESUMABLE}.`,
        )
      : new AppError(
          'tus_version_unsupported',
          `This server speaks tus ${TUS_VERSION.join(', ')} (Tus-Version), not ${JSON.stringify(version.slice(0, 20))}.`,
          { supported: TUS_VERSION },
        );
  }
  if (method === 'PATCH') {
    if (req.headers['upload-offset'] === undefined) throw tusProblem(ERRORS.MISSING_OFFSET);
    const type = req.headers['content-type'];
    if (type === undefined || !validateHeader('content-type', type)) {
      throw tusProblem(ERRORS.INVALID_CONTENT_TYPE);
    }
  }
  for (const [name, value] of Object.entries(req.headers)) {
    if (name === 'content-type' || typeof value !== 'string') continue;
    if (!validateHeader(name, value)) {
      throw new AppError('invalid_tus_header', `The ${name} header is malformed.`, {
        header: name,
      });
    }
  }
}

/** Refuses bad metadata before a byte is stored, as the multipart upload does. */
function validateCreation(uploads: ResumableUploadStore, req: Request, upload: Upload): void {
  if (upload.size === 0) throw new AppError('empty_file', 'The upload is empty.');
  const { fields, filename } = fieldsFromMetadata(upload.metadata);
  assertAcceptableFilename(filename);
  if (typeof fields.segments === 'string') {
    if (fields.kind === 'photo') {
      throw new AppError('validation_failed', 'A photo has no segments.', { field: 'segments' });
    }
    parseSegments(fields.segments);
  }
  uploads.attach(upload, { actor: actorOf(req), fields, filename });
}

function setItemHeaders(out: ServerResponse, r: IngestResult): void {
  out.setHeader('Evidence-Item-Id', r.item.id);
  out.setHeader('Evidence-Item-Url', `/v1/evidence/${r.item.id}`);
  out.setHeader('Evidence-Item-Status', r.status === 201 ? 'created' : 'duplicate');
  out.setHeader('Repr-Digest', `sha-256=:${Buffer.from(r.item.sha256, 'hex').toString('base64')}:`);
}
