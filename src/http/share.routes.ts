import { Router, type Request, type Response } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import { createShareLinkBody, listShareLinksQuery } from '../contract/share.contract';
import { AppError } from '../base/errors';
import { parseWith } from '../base/fields';
import { cutFilename } from '../evidence/segments';
import type { ShareLinkService } from '../share/share-link.service';
import { actorOf, audited, authenticate, requirePermission } from './auth.middleware';
import { sendBlob, sendRepresentation } from './send-blob';
import type { PreparedBundle } from '../bundles/bundle.service';
import { zipRepresentation } from './bundle.routes';

export interface ShareRoutesDeps {
  keys: ApiKeyService;
  shareLinks: ShareLinkService;
  /** Prepares a bundle for a link (the bundle service); absent, bundle links answer 404. */
  prepareBundle?: (
    actor: Parameters<ShareLinkService['recordUse']>[1],
    bundleId: string,
    via: { shareLinkId: string; clientAddress?: string },
  ) => Promise<PreparedBundle>;
}

/**
 * Share links: managed with a support or admin key under /v1/share-links, opened by anyone who
 * has the link at /s/{token}, with no key: read-only, until it expires or is revoked.
 */
export function shareRoutes(deps: ShareRoutesDeps): Router {
  const { shareLinks } = deps;
  const router = Router();
  const auth = authenticate(deps.keys);

  router
    .route('/v1/share-links')
    .post(
      audited('share_link.create'),
      auth,
      requirePermission('share:manage'),
      async (req, res) => {
        const { link, token, url } = await shareLinks.create(
          actorOf(req),
          parseWith(createShareLinkBody, req.body),
        );
        res.location(`/v1/share-links/${link.id}`);
        res
          .status(201)
          .set('Cache-Control', 'no-store')
          .json({ ...link, token, url });
      },
    )
    .get(auth, requirePermission('share:manage'), async (req, res) => {
      res.json({
        items: await shareLinks.list(actorOf(req), parseWith(listShareLinksQuery, req.query)),
      });
    });

  router
    .route('/v1/share-links/:id')
    .get(auth, requirePermission('share:manage'), async (req, res) => {
      res.json(await shareLinks.get(req.params.id!));
    })
    .delete(
      audited('share_link.revoke'),
      auth,
      requirePermission('share:manage'),
      async (req, res) => {
        res.json(await shareLinks.revoke(actorOf(req), req.params.id!));
      },
    );

  router.route('/s/:token').get(audited('share_link.use'), (req, res) => openLink(req, res, deps));

  return router;
}

/** The answers of `resolve` that mean "this token does not open anything": 404, 410. */
const SHARE_LINK_MISSES = new Set(['not_found', 'share_link_revoked', 'share_link_expired']);

async function openLink(req: Request, res: Response, deps: ShareRoutesDeps): Promise<void> {
  // Nothing about a link may linger in a cache or leak to the next site.
  res.set({
    'Cache-Control': 'private, no-store',
    'Referrer-Policy': 'no-referrer',
    'X-Robots-Tag': 'noindex, nofollow',
  });
  let resolved;
  try {
    resolved = await deps.shareLinks.resolve(String(req.params.token), {
      requestId: req.id,
      clientIp: req.ip,
    });
  } catch (err) {
    // A miss (or a revoked or expired link): a stranger's refusal, limited per address. Nothing
    // else is (an outage, a damaged item, a cut not ready): those are not the client's doing.
    if (err instanceof AppError && SHARE_LINK_MISSES.has(err.code)) {
      res.locals.shareLinkRefused = true;
    }
    if (err instanceof AppError && typeof err.extra.shareLinkId === 'string') {
      // The refusal's record names the link; the answer does not.
      res.locals.auditAttempt = {
        ...res.locals.auditAttempt,
        details: { shareLinkId: err.extra.shareLinkId },
      };
      throw new AppError(err.code, err.message);
    }
    throw err;
  }
  const { link, actor, content } = resolved;
  // From here on, a refusal (a range, a bundle whose item went) is recorded under the link.
  res.locals.auditAttempt = { ...res.locals.auditAttempt, details: { shareLinkId: link.id } };
  if (content.type === 'bundle') {
    if (!deps.prepareBundle) throw new AppError('not_found', 'No such link.');
    const bundle = await deps.prepareBundle(actor, content.bundleId, {
      shareLinkId: link.id,
      clientAddress: req.ip,
    });
    await sendRepresentation(req, res, {
      ...zipRepresentation(bundle),
      // A use is recorded only for an answer served (200/206 once its first byte is ready, 304,
      // HEAD), as for an item: a 412/416 or a refused bundle is not a use of the link.
      open: async (range, details, signal) => {
        const body = await bundle.open(range, details, signal);
        try {
          await deps.shareLinks.recordUse(link, actor, details);
        } catch (err) {
          body.destroy();
          throw err;
        }
        return body;
      },
      check: async (details) => {
        await bundle.check(details);
        await deps.shareLinks.recordUse(link, actor, details);
      },
    });
    return;
  }
  const item = content.item;
  const blob =
    content.type === 'item'
      ? {
          sha256: item.sha256,
          size: item.size_bytes,
          contentType: item.content_type,
          filename: item.original_filename ?? item.id,
        }
      : {
          sha256: content.cut.sha256,
          size: content.cut.size,
          contentType: content.cut.contentType,
          filename: cutFilename(item, content.segment.order_id, content.cut.contentType),
        };
  await sendBlob(req, res, {
    ...blob,
    // A reviewer's browser plays what it is sent; ?download asks for a file instead.
    disposition: req.query.download === undefined ? 'inline' : 'attachment',
    cacheControl: 'private, no-store',
    open: (range, details) => deps.shareLinks.open(link, actor, content, range, details),
    check: (details) => deps.shareLinks.recordUse(link, actor, details),
  });
}
