import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  FetchError,
  hostAllowed,
  isPrivateAddress,
  MediaFetcher,
  type FetchPolicy,
} from '../../src/integrations/media-fetcher';

describe('fetching media a webhook points at', () => {
  it('knows private, loopback, link-local and metadata addresses', () => {
    for (const a of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '0.0.0.0',
      '100.64.0.1',
      '::1',
      'fe80::1',
      'fd00::1',
      '::ffff:127.0.0.1',
    ]) {
      expect([a, isPrivateAddress(a)]).toEqual([a, true]);
    }
    for (const a of ['8.8.8.8', '54.172.60.1', '2600:1f18::1']) {
      expect([a, isPrivateAddress(a)]).toEqual([a, false]);
    }
  });

  it('matches hosts exactly or by a *. suffix rule', () => {
    expect(hostAllowed('api.twilio.com', ['api.twilio.com'])).toBe(true);
    expect(hostAllowed('API.Twilio.com.', ['api.twilio.com'])).toBe(true);
    expect(hostAllowed('evil-api.twilio.com', ['api.twilio.com'])).toBe(false);
    expect(hostAllowed('media.twiliocdn.com', ['*.twiliocdn.com'])).toBe(true);
    expect(hostAllowed('twiliocdn.com.evil.org', ['*.twiliocdn.com'])).toBe(false);
    expect(hostAllowed('twiliocdn.com', ['*.twiliocdn.com'])).toBe(false);
  });

  describe('against local servers', () => {
    const seen: { port: number; authorization?: string }[] = [];
    let target: http.Server;
    let redirector: http.Server;
    let targetPort = 0;
    let redirectPort = 0;

    beforeAll(async () => {
      target = http.createServer((req, res) => {
        seen.push({ port: targetPort, authorization: req.headers.authorization });
        res
          .writeHead(200, { 'Content-Type': 'audio/wav', 'Content-Length': 12 })
          .end('RIFF....WAVE');
      });
      redirector = http.createServer((req, res) => {
        seen.push({ port: redirectPort, authorization: req.headers.authorization });
        res.writeHead(302, { Location: `http://127.0.0.1:${targetPort}/media.wav` }).end();
      });
      for (const s of [target, redirector]) {
        await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      }
      targetPort = (target.address() as AddressInfo).port;
      redirectPort = (redirector.address() as AddressInfo).port;
    });
    afterAll(() => {
      target.close();
      redirector.close();
    });

    const policy = (p: Partial<FetchPolicy> = {}): FetchPolicy => ({
      allowHosts: ['127.0.0.1', 'localhost'],
      allowPrivate: false,
      timeoutMs: 5000,
      maxBytes: 1024,
      ...p,
    });
    const fetcher = new MediaFetcher();

    it('refuses loopback, by literal address and by a name that resolves to it', async () => {
      await expect(fetcher.fetch('https://127.0.0.1/x', policy())).rejects.toThrow(
        /private address/,
      );
      await expect(
        fetcher.fetch('https://[::1]/x', policy({ allowHosts: ['[::1]'] })),
      ).rejects.toThrow(/private address/);
      await expect(fetcher.fetch('https://localhost/x', policy())).rejects.toThrow(
        /resolves only to private addresses/,
      );
      await expect(fetcher.fetch(`https://localhost:${targetPort}/x`, policy())).rejects.toThrow(
        /port/,
      );
      await expect(fetcher.fetch(`http://localhost:${targetPort}/x`, policy())).rejects.toThrow(
        /https only/,
      );
      expect(seen).toEqual([]);
    });

    it('sends credentials to the first host only, never to where a redirect leads', async () => {
      const got = await fetcher.fetch(
        `http://127.0.0.1:${redirectPort}/Recordings/RE1.wav`,
        policy({ allowPrivate: true, basicAuth: { username: 'AC1', password: 'secret' } }),
      );
      got.body.resume();
      expect(seen.map((s) => [s.port, Boolean(s.authorization)])).toEqual([
        [redirectPort, true],
        [targetPort, false],
      ]);
    });

    it('refuses credentials in the URL and media above the size limit', async () => {
      await expect(
        fetcher.fetch(`http://u:p@127.0.0.1:${targetPort}/x`, policy({ allowPrivate: true })),
      ).rejects.toThrow(/credentials/);
      await expect(
        fetcher.fetch(
          `http://127.0.0.1:${targetPort}/x`,
          policy({ allowPrivate: true, maxBytes: 4 }),
        ),
      ).rejects.toBeInstanceOf(FetchError);
    });
  });
});
