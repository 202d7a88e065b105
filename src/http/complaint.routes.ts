import { Router } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import type { ComplaintService } from '../complaints/complaint.service';
import { actorOf, audited, authenticate, requirePermission } from './auth.middleware';
import { methodNotAllowed } from './method-not-allowed';

export interface ComplaintRoutesDeps {
  keys: ApiKeyService;
  complaints: ComplaintService;
}

export function complaintRoutes(deps: ComplaintRoutesDeps): Router {
  const { complaints } = deps;
  const router = Router();
  const auth = authenticate(deps.keys);

  router
    .route('/v1/complaints/:complaintId')
    .get(audited('complaint.view'), auth, requirePermission('complaint:read'), async (req, res) => {
      res.json(await complaints.get(actorOf(req), req.params.complaintId!));
    })
    .put(
      audited('complaint.write'),
      auth,
      requirePermission('complaint:write'),
      async (req, res) => {
        const { complaint, created } = await complaints.put(
          actorOf(req),
          req.params.complaintId!,
          req.body,
        );
        if (created) res.location(`/v1/complaints/${encodeURIComponent(complaint.id)}`);
        res.status(created ? 201 : 200).json(complaint);
      },
    )
    .all(methodNotAllowed('GET, PUT'));

  return router;
}
