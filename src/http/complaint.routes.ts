import { Router, type Request } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import type { ComplaintWorkspaceService } from '../complaints/complaint-workspace.service';
import type { ComplaintService } from '../complaints/complaint.service';
import { coverageCsv, type CoverageReportService } from '../complaints/coverage-report';
import { complaintBody, complaintIdParam, coverageQuery } from '../contract/complaints.contract';
import { parseWith } from '../base/fields';
import { actorOf, audited, authenticate, requirePermission } from './auth.middleware';

export interface ComplaintRoutesDeps {
  keys: ApiKeyService;
  complaints: ComplaintService;
  workspace: ComplaintWorkspaceService;
  coverage: CoverageReportService;
}

const complaintIdOf = (req: Request) => parseWith(complaintIdParam, req.params.complaintId);

export function complaintRoutes(deps: ComplaintRoutesDeps): Router {
  const { complaints, workspace } = deps;
  const router = Router();
  const auth = authenticate(deps.keys);

  router
    .route('/v1/complaints/:complaintId')
    .get(audited('complaint.view'), auth, requirePermission('complaint:read'), async (req, res) => {
      res.json(await workspace.workspace(actorOf(req), complaintIdOf(req)));
    })
    .put(
      audited('complaint.write'),
      auth,
      requirePermission('complaint:write'),
      async (req, res) => {
        const id = complaintIdOf(req);
        const { complaint, created } = await complaints.put(
          actorOf(req),
          id,
          parseWith(complaintBody, req.body),
        );
        if (created) res.location(`/v1/complaints/${encodeURIComponent(complaint.id)}`);
        res.status(created ? 201 : 200).json(complaint);
      },
    );

  router
    .route('/v1/complaints/:complaintId/suggestions')
    .get(audited('complaint.view'), auth, requirePermission('complaint:read'), async (req, res) => {
      res.json(await workspace.suggestions(actorOf(req), complaintIdOf(req)));
    });

  router
    .route('/v1/complaints/:complaintId/suggestions/accept')
    .post(audited('evidence.link'), auth, requirePermission('evidence:link'), async (req, res) => {
      res.json(await workspace.link(actorOf(req), complaintIdOf(req), req.body));
    });

  router
    .route('/v1/reports/coverage')
    .get(audited('report.view'), auth, requirePermission('report:read'), async (req, res) => {
      const { from, to, format } = deps.coverage.parse(parseWith(coverageQuery, req.query));
      const report = await deps.coverage.report(actorOf(req), from, to);
      const csv = format
        ? format === 'csv'
        : req.accepts(['application/json', 'text/csv']) === 'text/csv';
      res.set('Cache-Control', 'private, no-store').vary('Accept');
      if (!csv) return void res.json(report);
      res
        .type('text/csv; charset=utf-8; header=present')
        .set(
          'Content-Disposition',
          `attachment; filename="coverage-${report.from.slice(0, 10)}-${report.to.slice(0, 10)}.csv"`,
        )
        .send(coverageCsv(report));
    });

  return router;
}
