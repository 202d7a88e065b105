import type { ServerResponse } from 'node:http';
import { Server } from '@tus/server';
import type { Upload } from '@tus/utils';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import type { AuditLog } from '../custody/audit.service';
import { AppError, outageError } from '../errors';
import { assertAcceptableFilename } from '../evidence/filename';
import { parseSegments } from '../evidence/segments';
import type { IngestResult } from '../ingest/ingest.service';
import {
  fieldsFromMetadata,
  type ResumableUploadStore,
} from '../ingest/resumable/resumable-upload.store';
import type { UploadLocker } from '../ingest/resumable/upload-locker';
import type { Logger } from '../logger';
import { actorOf, audited, authenticate, principalOf, requirePermission } from './auth.middleware';
import { withoutTusCors } from './cors';
import { recordFailedAttempt, retryAfterFor } from './error.middleware';
import { PROBLEMS, problemBody } from './problem';

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
 * Resumable uploads (tus 1.0: creation, creation-with-upload, termination, expiration) for
 * stations on bad networks. Metadata carries the multipart upload's fields; the item exists once
 * every byte is in, and the response to the last PATCH (and any later HEAD) names it.
 */
export function uploadRoutes(deps: UploadRoutesDeps): Router {
  const { uploads } = deps;
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
      if (req.method === 'POST') return;
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
      const id = /\/v1\/uploads\/([^/?]+)/.exec(req.url ?? '')?.[1];
      const err = (id && uploads.takeRefusal(decodeURIComponent(id))) || reported;
      if (!(err instanceof AppError) && !isUnexpected(err)) return undefined; // tus's own answers
      const known = err instanceof AppError ? err : outageError(err);
      const code = known?.code ?? 'internal_error';
      const { status } = PROBLEMS[code];
      const request = req as Request;
      if (status >= 500) deps.logger.error({ err, reqId: request.id }, 'upload request failed');
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
    // Methods are what the route says: no overriding a POST into a DELETE.
    delete req.headers['x-http-method-override'];
    withoutTusCors(res);
    await tus.handle(req, res);
  };
  const guarded = [audited('evidence.create'), auth, requirePermission('evidence:create'), handle];

  const router = Router();
  router
    .route(PATH)
    .options(handle) // capability discovery: no key, nothing revealed (preflights: see cors.ts)
    .post(...guarded);
  router
    .route(`${PATH}/:uploadId`)
    .options(handle)
    .head(...guarded)
    .patch(...guarded)
    .delete(...guarded);
  return router;
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

/** tus's protocol errors carry a status code and a plain-text body; anything else is ours. */
function isUnexpected(err: unknown): boolean {
  return !(typeof err === 'object' && err !== null && 'status_code' in err);
}
