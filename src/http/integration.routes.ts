import express, { Router } from 'express';
import type { ApiKeyService } from '../access/api-key.service';
import type { AppConfig } from '../base/config';
import { listProviderRecordingsQuery } from '../contract/integrations.contract';
import { parseWith } from '../base/fields';
import type { ProviderRecordingService } from '../integrations/provider-recording.service';
import type { TwilioService } from '../integrations/twilio/twilio.service';
import { actorOf, audited, authenticate, requirePermission } from './auth.middleware';

export interface IntegrationRoutesDeps {
  keys: ApiKeyService;
  twilio: TwilioService;
  recordings: ProviderRecordingService;
  publicUrl?: AppConfig['publicUrl'];
}

/**
 * Provider webhooks, and what became of the recordings they announced. The webhooks carry no API
 * key: each is authenticated by the provider's own signature, checked by its service before
 * anything is recorded.
 */
export function integrationRoutes({
  keys,
  twilio,
  recordings,
  publicUrl,
}: IntegrationRoutesDeps): Router {
  const router = Router();
  router
    .route('/v1/integrations/twilio/recording')
    .post(
      audited('integration.callback'),
      express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 100 }),
      async (req, res) => {
        // Twilio signs the URL it called: behind a proxy, PUBLIC_URL (or TRUST_PROXY, for the
        // scheme and host the proxy forwards) says what that was.
        const url = publicUrl
          ? new URL(req.originalUrl, publicUrl).toString()
          : `${req.protocol}://${req.host}${req.originalUrl}`;
        const result = await twilio.callback(
          (req.body ?? {}) as Record<string, string | string[]>,
          {
            signature: req.get('x-twilio-signature'),
            settings: req.get('x-twilio-webhooks-signature-settings'),
          },
          url,
        );
        // 202: a fetch is (or already was) queued; 200: nothing to fetch (ignored, absent).
        res.status(result.status === 'queued' || result.status === 'duplicate' ? 202 : 200);
        res.json(result);
      },
    );

  router
    .route('/v1/integrations/recordings')
    .get(
      audited('custody.read'),
      authenticate(keys),
      requirePermission('integration:read'),
      async (req, res) => {
        res.json(
          await recordings.list(actorOf(req), parseWith(listProviderRecordingsQuery, req.query)),
        );
      },
    );
  return router;
}
