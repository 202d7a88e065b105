import { Router, type Request, type RequestHandler, type Response } from 'express';
import multer from 'multer';
import type { ApiKeyService } from '../access/api-key.service';
import type { DeletionService } from '../custody/deletion.service';
import { AppError } from '../base/errors';
import {
  complaintEvidenceParams,
  linksBody,
  orderEvidenceParams,
  searchQuery,
  unlinkComplaintParams,
  unlinkOrderParams,
} from '../contract/evidence.contract';
import { reasonBody } from '../contract/holds.contract';
import { cutFilename, parseSegmentsBody } from '../evidence/segments';
import type { EvidenceService } from '../evidence/evidence.service';
import type { DuplicateReceipt, EvidenceView } from '../evidence/evidence.view';
import type { IngestService } from '../ingest/ingest.service';
import type { DerivativeService } from '../media/derivative.service';
import type { SegmentService } from '../evidence/segment.service';
import { translateUploadError } from '../ingest/upload-errors';
import { parseWith } from '../base/fields';
import { StagingStorageEngine } from '../ingest/upload-storage-engine';
import type { BlobStore } from '../storage/blob-store';
import { actorOf, audited, authenticate, requirePermission } from './auth.middleware';
import { sendBlob } from './send-blob';

export interface EvidenceRoutesDeps {
  keys: ApiKeyService;
  ingest: IngestService;
  evidence: EvidenceService;
  deletion: DeletionService;
  derivatives: DerivativeService;
  segments: SegmentService;
  store: BlobStore;
  maxUploadBytes: number;
  socketIdleTimeoutMs: number;
  /** Writes an error response immediately (the error middleware), closing the connection. */
  answerNow: (req: Request, res: Response, err: AppError) => void;
}

/** Multipart framing and fields on top of the file; generous, but bounded. */
const MULTIPART_OVERHEAD_BYTES = 1024 * 1024;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export function evidenceRoutes(deps: EvidenceRoutesDeps): Router {
  const { keys, ingest, evidence } = deps;
  const router = Router();
  const auth = authenticate(keys);

  const upload = multer({
    storage: new StagingStorageEngine(deps.store, deps.maxUploadBytes, (req, err) =>
      // Answer now and close, rather than after draining gigabytes the client is still sending.
      deps.answerNow(req, req.res!, err),
    ),
    // See the name the client sent, so a path in it is refused rather than silently cut off.
    preservePath: true,
    // Browsers send UTF-8 file names as raw bytes; busboy would read them as latin1.
    defParamCharset: 'utf8',
    // busboy's 16 KiB default pauses the parser every few packets of a multi-GB upload.
    ...{ highWaterMark: 1 << 20, fileHwm: 1 << 20 },
    // The file size limit is IngestMeter's, enforced in the same pass that hashes the bytes.
    limits: {
      files: 1,
      fields: 100,
      parts: 110,
      fieldNameSize: 100,
      fieldSize: 64 * 1024,
      headerPairs: 100,
    },
  }).single('file');

  const receiveUpload: RequestHandler = (req, res, next) => {
    if (!req.is('multipart/form-data')) {
      throw new AppError('multipart_required', 'Send the upload as multipart/form-data.');
    }
    const declared = Number(req.get('content-length'));
    if (declared > deps.maxUploadBytes + MULTIPART_OVERHEAD_BYTES) {
      res.set('Connection', 'close'); // do not read gigabytes we will refuse anyway
      throw new AppError(
        'file_too_large',
        `The upload exceeds the limit of ${deps.maxUploadBytes} bytes.`,
      );
    }
    upload(req, res, (err?: unknown) => {
      if (err) return next(translateUploadError(err, req.complete));
      // Every byte is in; promoting a multi-GB blob (an S3 copy, a disk flush) can keep the
      // socket silent longer than the idle timeout, and the client must still get its answer.
      req.socket.setTimeout(0);
      res.once('finish', () => req.socket.setTimeout(deps.socketIdleTimeoutMs));
      next();
    });
  };

  /** Refuses a malformed Idempotency-Key before any of the body is read. */
  const checkIdempotencyKey: RequestHandler = (req, _res, next) => {
    const key = req.get('idempotency-key');
    if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
      throw new AppError(
        'invalid_idempotency_key',
        'Idempotency-Key must be 1-255 visible ASCII characters.',
      );
    }
    next();
  };

  router
    .route('/v1/evidence')
    .post(
      audited('evidence.create'),
      auth,
      requirePermission('evidence:create'),
      checkIdempotencyKey,
      receiveUpload,
      async (req, res) => {
        const result = await ingest.ingest({
          principal: actorOf(req),
          staged: req.staged,
          fields: req.body,
          originalFilename: req.file?.originalname,
          idempotencyKey: req.get('idempotency-key'),
        });
        sendItem(res, result.status, result.item, result.replayed);
      },
    )
    .get(audited('evidence.list'), auth, requirePermission('evidence:search'), async (req, res) => {
      res.json(await evidence.search(actorOf(req), parseWith(searchQuery, req.query)));
    });

  router
    .route('/v1/evidence/:id')
    .get(
      audited('evidence.view'),
      auth,
      requirePermission('evidence:receipt'),
      async (req, res) => {
        const item = await evidence.get(actorOf(req), req.params.id!);
        if ('duplicate' in item) return void res.json(item); // a receipt only: no media, no segments
        res.json({
          ...item,
          media: await deps.derivatives.summary(item.id),
          segments: await deps.segments.forItem(item.id),
        });
      },
    )
    .delete(
      audited('evidence.delete'),
      auth,
      requirePermission('evidence:delete'),
      async (req, res) => {
        const { reason } = parseWith(reasonBody, req.body);
        res.json(await deps.deletion.deleteItem(actorOf(req), req.params.id!, reason));
      },
    );

  router
    .route('/v1/evidence/:id/links')
    .post(audited('evidence.link'), auth, requirePermission('evidence:link'), async (req, res) => {
      const links = parseWith(linksBody, req.body);
      res.json(await evidence.addLinks(actorOf(req), req.params.id!, links));
    });

  for (const [collection, type, params] of [
    ['orders', 'order', unlinkOrderParams],
    ['complaints', 'complaint', unlinkComplaintParams],
  ] as const) {
    router
      .route(`/v1/evidence/:id/links/${collection}/:ref`)
      .delete(
        audited('evidence.unlink'),
        auth,
        requirePermission('evidence:link'),
        async (req, res) => {
          const ref = parseWith(params.shape.ref, req.params.ref);
          res.json(await evidence.removeLink(actorOf(req), req.params.id!, type, ref));
        },
      );
  }

  router
    .route('/v1/evidence/:id/segments')
    .post(
      audited('evidence.link'),
      auth,
      requirePermission('evidence:receipt'),
      async (req, res) => {
        const input = parseSegmentsBody(req.body);
        const segments = await deps.segments.add(actorOf(req), req.params.id!, input);
        res.status(201).json({ itemId: req.params.id, segments });
      },
    );

  router
    .route('/v1/evidence/:id/content')
    .get(audited('evidence.download'), auth, requirePermission('evidence:download'), (req, res) =>
      req.query.segment !== undefined
        ? sendSegment(req, res, deps.segments, req.query.segment)
        : sendContent(req, res, evidence),
    );

  router
    .route('/v1/orders/:orderId/evidence')
    .get(audited('evidence.list'), auth, requirePermission('evidence:search'), async (req, res) => {
      const orderId = parseWith(orderEvidenceParams.shape.orderId, String(req.params.orderId));
      // A long recording answers an order with that order's part of it (its segments).
      res.json({ orderId, items: await evidence.listByOrder(actorOf(req), orderId) });
    });
  router
    .route('/v1/complaints/:complaintId/evidence')
    .get(audited('evidence.list'), auth, requirePermission('evidence:search'), async (req, res) => {
      const complaintId = parseWith(
        complaintEvidenceParams.shape.complaintId,
        String(req.params.complaintId),
      );
      res.json({
        complaintId,
        items: await evidence.listByLink(actorOf(req), 'complaint', complaintId),
      });
    });

  return router;
}

/** An ingest result: 201 with Location for a new item, 200 for one archived before. */
export function sendItem(
  res: Response,
  status: number,
  item: EvidenceView | DuplicateReceipt,
  replayed: boolean,
): void {
  if (status === 201) res.location(`/v1/evidence/${item.id}`);
  if (replayed) res.set('Idempotent-Replayed', 'true');
  res.status(status).json(item);
}

async function sendContent(
  req: Request<{ id: string }>,
  res: Response,
  evidence: EvidenceService,
): Promise<void> {
  const actor = actorOf(req);
  const row = await evidence.getContentRow(actor, req.params.id!);
  await sendBlob(req, res, {
    sha256: row.sha256,
    size: row.size_bytes,
    contentType: row.content_type,
    filename: row.original_filename ?? row.id,
    open: (range, details) => evidence.readContent(actor, row, range, details),
    check: (details) => evidence.recordContentCheck(actor, row, details),
  });
}

/** A segment's cut: the part of a long recording that belongs to one order. */
async function sendSegment(
  req: Request<{ id: string }>,
  res: Response,
  segments: SegmentService,
  segmentId: unknown,
): Promise<void> {
  if (typeof segmentId !== 'string') {
    throw new AppError('validation_failed', 'Give one segment id.', { field: 'segment' });
  }
  const actor = actorOf(req);
  const found = await segments.findCut(actor, req.params.id!, segmentId);
  await sendBlob(req, res, {
    sha256: found.cut.sha256,
    size: found.cut.size_bytes ?? 0,
    contentType: found.cut.content_type ?? 'application/octet-stream',
    filename: cutFilename(found.item, found.segment.order_id, found.cut.content_type),
    open: (range, details) => segments.openCut(actor, found, range, details),
    check: (details) => segments.checkCut(actor, found, details),
  });
}
