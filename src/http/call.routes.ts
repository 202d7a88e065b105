import { Router, type Request, type Response } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import { callRecordingParams } from '../contract/evidence.contract';
import { AppError } from '../errors';
import { callPushFields } from '../ingest/call-push';
import type { IngestService } from '../ingest/ingest.service';
import { stageRawBody } from '../ingest/raw-upload';
import { parseWith } from '../ingest/upload-fields';
import type { BlobStore } from '../storage/blob-store';
import { actorOf, audited, authenticate, requirePermission } from './auth.middleware';
import { sendItem } from './evidence.routes';

export interface CallRoutesDeps {
  keys: ApiKeyService;
  ingest: IngestService;
  store: BlobStore;
  maxUploadBytes: number;
  socketIdleTimeoutMs: number;
  answerNow: (req: Request, res: Response, err: AppError) => void;
}

const FILENAME = /filename="([^"]{1,255})"/;

/**
 * Phone systems push a finished recording as the raw body of a PUT to its call's URL. The call id
 * makes it idempotent: a retry with the same bytes answers with the same item (200), different
 * bytes for the same call (from the same source) are refused (409).
 */
export function callRoutes(deps: CallRoutesDeps): Router {
  const router = Router();
  router
    .route('/v1/calls/:callId/recording')
    .put(
      audited('evidence.create'),
      authenticate(deps.keys),
      requirePermission('evidence:create'),
      async (req, res) => {
        const callId = parseWith(callRecordingParams.shape.callId, req.params.callId);
        if (!req.is('audio/*')) {
          throw new AppError(
            'unsupported_media_type',
            'Send the recording as the request body with an audio/* Content-Type (audio/wav, audio/mpeg, ...).',
          );
        }
        const declared = Number(req.get('content-length'));
        if (declared > deps.maxUploadBytes) {
          res.set('Connection', 'close');
          throw new AppError(
            'file_too_large',
            `The recording exceeds the limit of ${deps.maxUploadBytes} bytes.`,
          );
        }
        // Refused before the body is read: a bad field must not cost a 100 MB upload.
        const fields = callPushFields(callId, req.query as Record<string, unknown>, req.headers);
        const staged = await stageRawBody(
          req,
          deps.store,
          deps.maxUploadBytes,
          'call_recording',
          (err) => deps.answerNow(req, res, err),
        );
        req.socket.setTimeout(0);
        res.once('finish', () => req.socket.setTimeout(deps.socketIdleTimeoutMs));
        const result = await deps.ingest.ingest({
          principal: actorOf(req),
          staged,
          fields,
          originalFilename: FILENAME.exec(req.get('content-disposition') ?? '')?.[1],
          idempotencyKey: req.get('idempotency-key'),
        });
        sendItem(res, result.status, result.item, result.replayed);
      },
    );
  return router;
}
