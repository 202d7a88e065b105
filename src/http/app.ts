import { randomUUID } from 'node:crypto';
import express, { type Express, type Request, type Response } from 'express';
import type { AppContext } from '../context';
import type { AppError } from '../base/errors';
import { errorMiddleware, notFoundHandler } from './error.middleware';
import { callRoutes } from './call.routes';
import { complaintRoutes } from './complaint.routes';
import { custodyRoutes } from './custody.routes';
import { evidenceRoutes } from './evidence.routes';
import { healthRoutes } from './health.routes';
import { integrationRoutes } from './integration.routes';
import { bundleRoutes } from './bundle.routes';
import { compression } from './compression';
import { cors } from './cors';
import { mediaRoutes } from './media.routes';
import { openApiDocument } from './openapi-document';
import { loggablePath } from './redact';
import { shareRoutes } from './share.routes';
import { uploadRoutes } from './upload.routes';
import { consoleRoutes } from './console.routes';
import { knownRoutesOnly, methodNotAllowed, RouteTable } from './route-table';
import { webRoutes } from './web.routes';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function createApp(ctx: AppContext): Express {
  const app = express();
  const onError = errorMiddleware(ctx.logger, ctx.audit, ctx.refusals);
  app.disable('x-powered-by');
  app.set('etag', false);
  if (ctx.config.http.trustProxy) app.set('trust proxy', ctx.config.http.trustProxy);

  app.use((req, res, next) => {
    const incoming = req.get('x-request-id');
    req.id = incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    // setHeader, not express's res.set: plain strings, no Content-Type to add a charset to.
    res.setHeader('X-Request-Id', req.id);
    // No other site's page may embed an answer (an <img>/<video> of evidence); a share link's
    // content is meant to be opened from anywhere.
    if (!req.path.startsWith('/s/')) res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      ctx.logger.info(
        {
          reqId: req.id,
          method: req.method,
          path: loggablePath(req.path), // never the query (phone numbers), never a link's token
          status: res.statusCode,
          ms: Number(process.hrtime.bigint() - started) / 1e6,
          keyId: req.principal?.keyId,
        },
        'request',
      );
    });
    next();
  });

  // What each path serves, read from the routes registered below (at the first request).
  const routes = new RouteTable(app);
  app.use(compression());
  // With no origin listed the middleware does nothing: it is not mounted at all.
  if (ctx.config.http.corsOrigins.length > 0) app.use(cors(ctx.config.http.corsOrigins, routes));
  // 404 and 405 before any body parser: a wrong method or path is answered as such, whatever the body.
  app.use(knownRoutesOnly(routes));

  const answerNow = (req: Request, res: Response, err: AppError) => {
    if (res.headersSent) return;
    res.set('Connection', 'close');
    onError(err, req, res, () => undefined);
  };

  app.use(healthRoutes(ctx));
  app.use(webRoutes());
  app.get('/openapi.json', openApiDocument());
  app.use(express.json({ limit: '64kb', strict: true, type: 'application/json' }));
  app.use(
    evidenceRoutes({
      keys: ctx.apiKeys,
      ingest: ctx.ingest,
      evidence: ctx.evidence,
      deletion: ctx.deletion,
      derivatives: ctx.derivatives,
      segments: ctx.segments,
      store: ctx.blobStore,
      maxUploadBytes: ctx.config.maxUploadBytes,
      socketIdleTimeoutMs: ctx.config.http.socketIdleTimeoutMs,
      answerNow,
    }),
  );
  app.use(
    callRoutes({
      keys: ctx.apiKeys,
      ingest: ctx.ingest,
      store: ctx.blobStore,
      maxUploadBytes: ctx.config.maxUploadBytes,
      socketIdleTimeoutMs: ctx.config.http.socketIdleTimeoutMs,
      answerNow,
    }),
  );
  app.use(
    uploadRoutes({
      keys: ctx.apiKeys,
      uploads: ctx.uploads,
      locker: ctx.uploadLocker,
      audit: ctx.audit,
      logger: ctx.logger,
      maxUploadBytes: ctx.config.maxUploadBytes,
    }),
  );
  app.use(
    integrationRoutes({
      keys: ctx.apiKeys,
      twilio: ctx.twilio,
      recordings: ctx.providerRecordings,
      publicUrl: ctx.config.publicUrl,
    }),
  );
  app.use(mediaRoutes({ keys: ctx.apiKeys, derivatives: ctx.derivatives }));
  app.use(bundleRoutes({ keys: ctx.apiKeys, bundles: ctx.bundles, budgets: ctx.budgets }));
  app.use(
    complaintRoutes({
      keys: ctx.apiKeys,
      complaints: ctx.complaints,
      workspace: ctx.complaintWorkspace,
      coverage: ctx.coverage,
    }),
  );
  app.use(
    shareRoutes({
      keys: ctx.apiKeys,
      shareLinks: ctx.shareLinks,
      prepareBundle: (actor, id, via) => ctx.bundles.prepare(actor, id, via),
    }),
  );
  app.use(
    consoleRoutes({
      keys: ctx.apiKeys,
      sessions: ctx.sessions,
      holds: ctx.holds,
      lookup: ctx.lookup,
      publicUrl: ctx.config.publicUrl,
    }),
  );
  app.use(
    custodyRoutes({
      keys: ctx.apiKeys,
      evidence: ctx.evidence,
      trail: ctx.trail,
      integrity: ctx.integrity,
      checkpoints: ctx.checkpoints,
      signingKey: ctx.signingKey,
      holds: ctx.holds,
      status: ctx.custodyStatus,
      jobs: ctx.jobs,
      metrics: ctx.metrics,
      metricsToken: ctx.config.metricsToken,
      budgets: ctx.budgets,
    }),
  );
  app.use(methodNotAllowed(routes));
  app.use(notFoundHandler);
  app.use(onError);
  return app;
}
