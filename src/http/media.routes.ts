import { Router } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import type { DerivativeKind } from '../db/database';
import { DERIVATIVE_PATHS, type DerivativeService } from '../media/derivative.service';
import { actorOf, audited, authenticate, requirePermission } from './auth.middleware';
import { sendBlob } from './send-blob';

export interface MediaRoutesDeps {
  keys: ApiKeyService;
  derivatives: DerivativeService;
}

/** Derivatives of an item: their list and status, and each one's bytes (with Range). */
export function mediaRoutes({ keys, derivatives }: MediaRoutesDeps): Router {
  const router = Router();
  const auth = authenticate(keys);

  router
    .route('/v1/evidence/:id/derivatives')
    .get(audited('evidence.view'), auth, requirePermission('evidence:read'), async (req, res) => {
      res.json(await derivatives.list(actorOf(req), req.params.id!));
    });

  router
    .route('/v1/evidence/:id/derivatives/rebuild')
    .post(audited('media.derive'), auth, requirePermission('custody:status'), async (req, res) => {
      res.status(202).json(await derivatives.rebuild(actorOf(req), req.params.id!));
    });

  for (const [kind, segment] of Object.entries(DERIVATIVE_PATHS) as [DerivativeKind, string][]) {
    router
      .route(`/v1/evidence/:id/${segment}`)
      .get(
        audited('derivative.download'),
        auth,
        requirePermission('evidence:download'),
        async (req, res) => {
          const actor = actorOf(req);
          const { item, derivative } = await derivatives.find(actor, req.params.id!, kind);
          await sendBlob(req, res, {
            sha256: derivative.sha256,
            size: derivative.size_bytes ?? 0,
            contentType: derivative.content_type ?? 'application/octet-stream',
            filename: derivatives.filename(item, derivative),
            open: (range, details) => derivatives.open(actor, item, derivative, range, details),
            check: (details) => derivatives.check(actor, item, derivative, details),
          });
        },
      );
  }
  return router;
}
