import { timingSafeEqual, createHash } from 'node:crypto';
import { Router, type RequestHandler } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import type { KeyBudgets } from '../access/key-budgets';
import type { AuditTrailService } from '../custody/audit-trail.service';
import type { CheckpointService } from '../custody/checkpoint.service';
import type { CustodyJobs } from '../custody/custody-jobs';
import type { CustodyStatusService } from '../custody/custody-status.service';
import type { HoldService } from '../custody/hold.service';
import type { IntegrityService } from '../custody/integrity.service';
import type { SigningKey } from '../custody/signing-key';
import type { EvidenceService } from '../evidence/evidence.service';
import type { Metrics } from '../base/metrics';
import { auditRangeQuery, itemAuditQuery, keyBudgetsQuery } from '../contract/custody.contract';
import { complaintHoldParams, listHoldsQuery, reasonBody } from '../contract/holds.contract';
import { parseWith } from '../base/fields';
import { actorOf, audited, authenticate, requirePermission } from './auth.middleware';

export interface CustodyRoutesDeps {
  keys: ApiKeyService;
  evidence: EvidenceService;
  trail: AuditTrailService;
  integrity: IntegrityService;
  checkpoints: CheckpointService;
  signingKey: SigningKey;
  holds: HoldService;
  status: CustodyStatusService;
  jobs: CustodyJobs;
  metrics: Metrics;
  metricsToken?: string;
  budgets: KeyBudgets;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export function custodyRoutes(deps: CustodyRoutesDeps): Router {
  const { evidence, trail, integrity, holds, budgets } = deps;
  const router = Router();
  const auth = authenticate(deps.keys);

  router.route('/v1/custody/public-key').get((_req, res) => {
    // Public by design: whoever checks a checkpoint or a bundle needs it, with no account.
    res.json({
      algorithm: 'Ed25519',
      publicKeyPem: deps.signingKey.publicKeyPem,
      fingerprint: deps.signingKey.fingerprint,
    });
  });

  router
    .route('/v1/evidence/:id/audit')
    .get(audited('audit.read'), auth, requirePermission('evidence:audit'), async (req, res) => {
      const query = parseWith(itemAuditQuery, req.query);
      await budgets.chargeAuditPage(actorOf(req));
      res.json(await trail.forItem(actorOf(req), req.params.id!, query));
    });

  router
    .route('/v1/audit')
    .get(audited('audit.read'), auth, requirePermission('audit:read'), async (req, res) => {
      const query = parseWith(auditRangeQuery, req.query);
      await budgets.chargeAuditPage(actorOf(req));
      res.json(await trail.list(actorOf(req), query));
    });

  router
    .route('/v1/evidence/:id/verify')
    .post(
      audited('evidence.verify'),
      auth,
      requirePermission('evidence:verify'),
      async (req, res) => {
        const actor = actorOf(req);
        const row = await evidence.getRow(actor, req.params.id!);
        // Charged before the bytes are read: the budget is what a key may make the store re-read.
        await budgets.chargeVerifyBytes(actor, Number(row.size_bytes));
        res.json(await integrity.verify(row, actor));
      },
    );

  router
    .route('/v1/custody/checkpoints')
    .post(audited('custody.read'), auth, requirePermission('custody:status'), async (_req, res) => {
      const written = await deps.checkpoints.checkpoint();
      res
        .status(written ? 201 : 200)
        .json({ written: Boolean(written), checkpoint: written ?? null });
    });

  router
    .route('/v1/evidence/:id/holds')
    .post(audited('hold.place'), auth, requirePermission('hold:manage'), async (req, res) => {
      const { reason } = parseWith(reasonBody, req.body);
      res.status(201).json(await holds.placeOnItem(actorOf(req), req.params.id!, reason));
    });

  router
    .route('/v1/complaints/:complaintId/holds')
    .post(audited('hold.place'), auth, requirePermission('hold:manage'), async (req, res) => {
      const complaintId = parseWith(complaintHoldParams.shape.complaintId, req.params.complaintId);
      const { reason } = parseWith(reasonBody, req.body);
      res.status(201).json(await holds.placeOnComplaint(actorOf(req), complaintId, reason));
    });

  router.route('/v1/holds').get(auth, requirePermission('hold:manage'), async (req, res) => {
    res.json(await holds.list(parseWith(listHoldsQuery, req.query)));
  });

  router
    .route('/v1/holds/:holdId/release')
    .post(audited('hold.release'), auth, requirePermission('hold:manage'), async (req, res) => {
      res.json(await holds.release(actorOf(req), req.params.holdId!, req.body));
    });

  router
    .route('/v1/custody/status')
    .get(audited('custody.read'), auth, requirePermission('custody:status'), async (req, res) => {
      res.json(await deps.status.status(actorOf(req)));
    });

  router
    .route('/v1/custody/jobs/:job')
    .post(audited('custody.run'), auth, requirePermission('custody:status'), async (req, res) => {
      res.status(202).json(await deps.jobs.enqueue(actorOf(req), req.params.job!));
    });

  router.route('/v1/key-budgets').get(auth, requirePermission('key:manage'), async (req, res) => {
    const { hours } = parseWith(keyBudgetsQuery, req.query);
    res.set('Cache-Control', 'no-store').json({
      limits: budgets.limits,
      hours,
      limited: await budgets.limitedSince(hours),
    });
  });

  const metricsAuth: RequestHandler = async (req, res, next) => {
    const token = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '')?.[1];
    if (token && deps.metricsToken && timingSafeEqual(digest(token), digest(deps.metricsToken))) {
      return next();
    }
    // Otherwise an admin key: metrics name no evidence, but they do describe the archive.
    await auth(req, res, (err?: unknown) => {
      if (err) return next(err);
      requirePermission('custody:status')(req, res, next);
    });
  };
  router.route('/metrics').get(metricsAuth, async (_req, res) => {
    const { contentType, body } = await deps.metrics.render();
    res.type(contentType).send(body);
  });

  return router;
}
