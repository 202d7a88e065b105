import express, { Router } from 'express';
import type { AppConfig } from '../config';
import type { TwilioService } from '../integrations/twilio/twilio.service';
import { audited } from './auth.middleware';

export interface IntegrationRoutesDeps {
  twilio: TwilioService;
  publicUrl?: AppConfig['publicUrl'];
}

/**
 * Provider webhooks. They carry no API key: each is authenticated by the provider's own
 * signature, checked by its service before anything is recorded.
 */
export function integrationRoutes({ twilio, publicUrl }: IntegrationRoutesDeps): Router {
  const router = Router();
  router
    .route('/v1/integrations/twilio/recording')
    .post(
      audited('integration.callback'),
      express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 100 }),
      async (req, res) => {
        // Twilio signs the URL it called: behind a proxy, PUBLIC_URL says what that was.
        const url = publicUrl
          ? new URL(req.originalUrl, publicUrl).toString()
          : `${req.protocol}://${req.get('host')}${req.originalUrl}`;
        const result = await twilio.callback(
          (req.body ?? {}) as Record<string, string | string[]>,
          req.get('x-twilio-signature'),
          url,
        );
        res.status(result.status === 'ignored' ? 200 : 202).json(result);
      },
    );
  return router;
}
