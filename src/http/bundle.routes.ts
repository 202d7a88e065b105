import { Router } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import type { KeyBudgets } from '../access/key-budgets';
import { bundleBody } from '../contract/bundles.contract';
import { complaintIdParam } from '../contract/complaints.contract';
import { parseWith } from '../base/fields';
import { actorOf, audited, authenticate, requirePermission } from './auth.middleware';
import { sendRepresentation, type Representation } from './send-blob';
import type { BundleService, PreparedBundle } from '../bundles/bundle.service';
import { CERTIFICATE_CONTENT_TYPE } from '../bundles/certificate';

export interface BundleRoutesDeps {
  keys: ApiKeyService;
  bundles: BundleService;
  budgets: KeyBudgets;
}

/** Dispute bundles: made from a complaint, read and downloaded by id. */
export function bundleRoutes(deps: BundleRoutesDeps): Router {
  const router = Router();
  const auth = authenticate(deps.keys);

  router
    .route('/v1/complaints/:complaintId/bundles')
    .post(audited('bundle.create'), auth, requirePermission('bundle:create'), async (req, res) => {
      const complaintId = parseWith(complaintIdParam, req.params.complaintId);
      const body = parseWith(bundleBody, req.body ?? {});
      const actor = actorOf(req);
      const bundle = await deps.budgets.withBundleBuild(actor, () =>
        deps.bundles.create(actor, complaintId, body),
      );
      res.location(`/v1/bundles/${bundle.id}`).status(201).json(bundle);
    })
    .get(auth, requirePermission('bundle:read'), async (req, res) => {
      const complaintId = parseWith(complaintIdParam, req.params.complaintId);
      res.json({
        complaintId,
        items: await deps.bundles.listForComplaint(actorOf(req), complaintId),
      });
    });

  // The parameter is not called `id`: a bundle id must not be recorded as an item's.
  router
    .route('/v1/bundles/:bundleId')
    .get(auth, requirePermission('bundle:read'), async (req, res) => {
      res.json(await deps.bundles.get(actorOf(req), req.params.bundleId!));
    });

  router
    .route('/v1/bundles/:bundleId/content')
    .get(audited('bundle.download'), auth, requirePermission('bundle:read'), async (req, res) => {
      const bundle = await deps.bundles.prepare(actorOf(req), req.params.bundleId!);
      const zip = zipRepresentation(bundle);
      await sendRepresentation(req, res, {
        ...zip,
        headers: { ...zip.headers, 'Cache-Control': 'private, no-cache' },
      });
    });

  router
    .route('/v1/bundles/:bundleId/certificate.pdf')
    .get(audited('bundle.download'), auth, requirePermission('bundle:read'), async (req, res) => {
      const pdf = await deps.bundles.certificate(actorOf(req), req.params.bundleId!);
      await sendRepresentation(req, res, {
        etag: pdf.etag,
        size: pdf.size,
        contentType: CERTIFICATE_CONTENT_TYPE,
        lastModified: pdf.lastModified,
        headers: {
          'Content-Disposition': `attachment; filename="${pdf.filename}"`,
          'Content-Security-Policy': "default-src 'none'; sandbox",
          'Cache-Control': 'private, no-cache',
        },
        open: (range, details) => pdf.open(range, details),
        check: (details) => pdf.check(details),
      });
    });

  return router;
}

/**
 * A prepared bundle's ZIP as served, by a key's download and by a share link alike (its file name
 * is already safe: see BundleService.prepare). Callers add their own headers and wrap open/check.
 */
export function zipRepresentation(bundle: PreparedBundle): Representation {
  return {
    etag: bundle.etag,
    size: bundle.size,
    contentType: 'application/zip',
    lastModified: bundle.lastModified,
    headers: { 'Content-Disposition': `attachment; filename="${bundle.filename}"` },
    open: (range, details, signal) => bundle.open(range, details, signal),
    check: (details) => bundle.check(details),
  };
}
