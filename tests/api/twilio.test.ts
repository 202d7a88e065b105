import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import express from 'express';
import request from 'supertest';
// The official helper library signs every callback here: our validator must agree with it, not
// with an imitation of it.
import twilio from 'twilio';
import { auditEvents, bearer, itemCount, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';

jest.setTimeout(60_000);

const AUTH_TOKEN = 'test-auth-token-0123456789abcdef';
const SHARED_KEY_SECRET = 'test-shared-key-secret-fedcba9876543210';
const SHARED_KEY_ID = 'webhooks_sharedkey_01jxk3y7a2b5c8d9e0f1g2h3j4';
const ACCOUNT = `AC${'1'.repeat(32)}`;
const KEY_ID = 'twilio-ingest-test';
const PATH = '/v1/integrations/twilio/recording';
const hex32 = () => randomBytes(16).toString('hex');
const run = promisify(execFile);

type Params = Record<string, string | string[]>;

/** A local HTTP server playing Twilio's media host: Basic auth, and "not ready yet" at first. */
async function fakeTwilio() {
  const media = new Map<string, { bytes: Buffer; notReadyFor: number }>();
  const seen: { path: string; authorization?: string }[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ path: req.url!, authorization: req.headers.authorization });
    const expected = `Basic ${Buffer.from(`${ACCOUNT}:${AUTH_TOKEN}`).toString('base64')}`;
    if (req.headers.authorization !== expected) return res.writeHead(401).end();
    const m = /\/Recordings\/(RE[0-9a-f]{32})\.wav(\?.*)?$/.exec(req.url!);
    const entry = m && media.get(m[1]!);
    if (!entry) return res.writeHead(404).end();
    if (entry.notReadyFor-- > 0) return res.writeHead(404).end();
    res.writeHead(200, { 'Content-Type': 'audio/x-wav', 'Content-Length': entry.bytes.length });
    res.end(entry.bytes);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { media, seen, base, close: () => server.close() };
}

/** The form body as Twilio sends it: a repeated parameter is repeated, in the order given. */
function formBody(params: Params): string {
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const v of Array.isArray(value) ? value : [value]) body.append(name, v);
  }
  return body.toString();
}

describe('Twilio recording callbacks', () => {
  let app: TestApp;
  let provider: Awaited<ReturnType<typeof fakeTwilio>>;

  beforeAll(async () => {
    provider = await fakeTwilio();
    app = await startTestApp(
      'fs',
      {
        TWILIO_AUTH_TOKEN: AUTH_TOKEN,
        TWILIO_ACCOUNT_SID: ACCOUNT,
        TWILIO_INGEST_KEY_ID: KEY_ID,
        TWILIO_WEBHOOK_SHARED_KEY_SECRET: SHARED_KEY_SECRET,
        TWILIO_MEDIA_HOSTS: '127.0.0.1',
        MEDIA_FETCH_ALLOW_PRIVATE: 'true', // the fake provider is on loopback
        MEDIA_RETRY_DELAY_SECONDS: '1',
        // As behind a TLS-terminating proxy: X-Forwarded-Proto says the scheme Twilio called.
        TRUST_PROXY: 'loopback',
      },
      { jobQueue: true },
    );
    await app.ctx.db
      .insertInto('api_keys')
      .values({ id: KEY_ID, name: 'twilio', role: 'ingest', secret_hash: 'not-a-usable-secret' })
      .execute();
    await app.ctx.twilio.start({ workers: true });
  });
  afterAll(async () => {
    await app.close();
    provider.close();
  });

  interface Delivery {
    /** The URL Twilio signs (default: the address the test app listens on). */
    signedUrl?: string;
    /** The Host header and scheme the service sees (default: the test app's own). */
    host?: string;
    proto?: 'http' | 'https';
    /** A signature to send instead of the official library's. */
    sign?: string | null;
    /** The X-Twilio-Webhooks-Signature-Settings header, and the secret and algorithm it implies. */
    settings?: string;
    secret?: string;
    algorithm?: string;
    /** X-Forwarded-Host, as a proxy (or anyone) may send it. */
    forwardedHost?: string;
    /** The service to post to (default: the suite's). */
    to?: { url: string };
  }

  /** Posts a callback signed by Twilio's own helper library, as Twilio signs it. */
  function callback(params: Params, d: Delivery = {}) {
    const target = d.to ?? app;
    const signedUrl = d.signedUrl ?? `${target.url}${PATH}`;
    const signature =
      d.sign === undefined
        ? twilio.getExpectedTwilioSignature(d.secret ?? AUTH_TOKEN, signedUrl, params, d.algorithm)
        : d.sign;
    let req = request(target.url).post(PATH).type('form');
    if (signature !== null) req = req.set('X-Twilio-Signature', signature);
    if (d.host) req = req.set('Host', d.host);
    if (d.proto) req = req.set('X-Forwarded-Proto', d.proto);
    if (d.forwardedHost) req = req.set('X-Forwarded-Host', d.forwardedHost);
    if (d.settings !== undefined) req = req.set(twilio.SIGNATURE_SETTINGS_HEADER, d.settings);
    return req.send(formBody(params));
  }
  const fieldsFor = (recordingSid: string, overrides: Params = {}): Params => ({
    AccountSid: ACCOUNT,
    CallSid: `CA${hex32()}`,
    RecordingSid: recordingSid,
    RecordingUrl: `${provider.base}/2010-04-01/Accounts/${ACCOUNT}/Recordings/${recordingSid}`,
    RecordingStatus: 'completed',
    RecordingDuration: '12',
    RecordingChannels: '2',
    RecordingSource: 'DialVerb',
    ...overrides,
  });
  /** A callback that is answered without a fetch: checks the signature alone. */
  const inProgress = () => fieldsFor(`RE${hex32()}`, { RecordingStatus: 'in-progress' });
  const row = async (recordingSid: string) =>
    (
      await sql<{
        status: string;
        item_id: string | null;
        last_error: string | null;
        attempts: number;
      }>`select status, item_id, last_error, attempts from provider_recordings where recording_sid = ${recordingSid}`.execute(
        app.ctx.db,
      )
    ).rows[0];
  async function settled(recordingSid: string) {
    for (let i = 0; i < 120; i++) {
      const r = await row(recordingSid);
      if (r && r.status !== 'queued') return r;
      await new Promise((res) => setTimeout(res, 250));
    }
    throw new Error(`recording ${recordingSid} never settled`);
  }
  const metrics = async () =>
    (await request(app.url).get('/metrics').set(bearer(app.keys.admin)).expect(200)).text;
  const metric = (text: string, name: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(' ').at(-1)) : undefined;
  };
  const recordings = (query: Record<string, string>, key = app.keys.admin) =>
    request(app.url).get('/v1/integrations/recordings').query(query).set(bearer(key));

  it('fetches a completed recording once it is ready and archives it, exactly once however often Twilio calls', async () => {
    const sidValue = `RE${hex32()}`;
    const wav = fakeMedia('wav');
    provider.media.set(sidValue, { bytes: wav, notReadyFor: 1 });
    const fields = fieldsFor(sidValue);
    const first = await callback(fields);
    expect(first.status).toBe(202);
    expect(first.body).toEqual({ recordingSid: sidValue, status: 'queued' });
    // Twilio retries its webhook when it does not hear back in time.
    for (let i = 0; i < 3; i++) {
      const again = await callback(fields);
      expect(again.status).toBe(202);
      expect(again.body.status).toBe('duplicate');
    }
    const done = await settled(sidValue);
    expect(done.status).toBe('archived');
    expect(done.attempts).toBe(2); // the first fetch met "not ready yet"
    const item = await request(app.url)
      .get(`/v1/evidence/${done.item_id}`)
      .set(bearer(app.keys.support));
    expect(item.body).toMatchObject({
      kind: 'call_recording',
      callId: sidValue,
      source: 'twilio',
      sha256: sha256(wav),
    });
    const before = await itemCount(app);
    await app.ctx.twilio.fetchRecording(sidValue); // a job run twice changes nothing
    expect(await itemCount(app)).toBe(before);
    // The media host got the account's Basic credentials.
    expect(provider.seen.filter((s) => s.path.includes(sidValue)).length).toBe(2);
    // The custody trail has the callback and the archiving under the Twilio key.
    const trail = await request(app.url)
      .get(`/v1/evidence/${done.item_id}/audit`)
      .set(bearer(app.keys.support));
    expect(trail.body.events[0]).toMatchObject({
      action: 'evidence.create',
      actor: { keyId: KEY_ID, role: 'ingest' },
    });
    // Both outcomes of the fetch job are counted.
    const text = await metrics();
    expect(
      metric(text, 'provider_recording_fetches_total{provider="twilio",outcome="retry"}'),
    ).toBe(1);
    expect(
      metric(text, 'provider_recording_fetches_total{provider="twilio",outcome="archived"}'),
    ).toBeGreaterThanOrEqual(1);
  });

  describe('signatures, exactly as twilio.validateRequest checks them', () => {
    // [what Twilio signed, the Host the service sees, the scheme the proxy reports]
    const ports: [string, string, 'http' | 'https'][] = [
      ['http://archive.test:80', 'archive.test', 'http'],
      ['http://archive.test', 'archive.test:80', 'http'],
      ['https://archive.test:443', 'archive.test', 'https'],
      ['https://archive.test', 'archive.test:443', 'https'],
      ['https://archive.test', 'archive.test', 'https'],
    ];
    it.each(ports)(
      'accepts a callback signed for %s when the request arrived for Host %s over %s',
      async (signedAt, host, proto) => {
        const params = inProgress();
        const signedUrl = `${signedAt}${PATH}`;
        const signature = twilio.getExpectedTwilioSignature(AUTH_TOKEN, signedUrl, params);
        // The official library accepts it for the URL the service sees...
        expect(
          twilio.validateRequest(AUTH_TOKEN, signature, `${proto}://${host}${PATH}`, params),
        ).toBe(true);
        // ...and so does the service.
        const res = await callback(params, { signedUrl, host, proto });
        expect(res.status).toBe(200);
        expect(res.body.status).toBe('ignored');
      },
    );

    it('refuses a signature for another port or scheme, as the library does', async () => {
      for (const [signedAt, host, proto] of [
        ['https://archive.test:8443', 'archive.test', 'https'],
        ['http://archive.test:443', 'archive.test', 'https'],
        ['https://archive.test', 'archive.test', 'http'],
        ['https://other.test', 'archive.test', 'https'],
      ] as const) {
        const params = inProgress();
        const signedUrl = `${signedAt}${PATH}`;
        const signature = twilio.getExpectedTwilioSignature(AUTH_TOKEN, signedUrl, params);
        expect(
          twilio.validateRequest(AUTH_TOKEN, signature, `${proto}://${host}${PATH}`, params),
        ).toBe(false);
        const res = await callback(params, { signedUrl, host, proto });
        expect(res.status).toBe(403);
        expect(res.body.code).toBe('invalid_signature');
      }
    });

    it('signs a repeated parameter once per distinct value, sorted, as the library does', async () => {
      const params = { ...inProgress(), Tag: ['vip', 'escalated', 'vip'] };
      const res = await callback(params);
      expect(res.status).toBe(200);
      // Every value kept, in the order sent, duplicates included: that signature is not Twilio's.
      const naive = twilio.getExpectedTwilioSignature(AUTH_TOKEN, `${app.url}${PATH}`, {
        ...params,
        Tag: 'escalatedTagvipTagvip',
      });
      expect(twilio.validateRequest(AUTH_TOKEN, naive, `${app.url}${PATH}`, params)).toBe(false);
      const refused = await callback(params, { sign: naive });
      expect(refused.status).toBe(403);
    });

    it('checks an HMAC-SHA256 (or SHA-1) SharedKey signature when X-Twilio-Webhooks-Signature-Settings asks for it', async () => {
      const url = `${app.url}${PATH}`;
      for (const [settings, algorithm] of [
        [`key=${SHARED_KEY_ID},algorithm=${twilio.HMAC_SHA256}`, twilio.HMAC_SHA256],
        [` key=${SHARED_KEY_ID} , algorithm = hmac_sha256 `, 'hmac_sha256'],
        [`key=${SHARED_KEY_ID},algorithm=${twilio.HMAC_SHA1}`, twilio.HMAC_SHA1],
        [`key=${SHARED_KEY_ID}`, twilio.HMAC_SHA1], // no algorithm named: SHA-1
      ] as const) {
        const params = inProgress();
        expect(twilio.getSignatureAlgorithm(settings).toUpperCase()).toBe(algorithm.toUpperCase());
        const signature = twilio.getExpectedTwilioSignature(
          SHARED_KEY_SECRET,
          url,
          params,
          algorithm,
        );
        expect(twilio.validateRequest(SHARED_KEY_SECRET, signature, url, params, algorithm)).toBe(
          true,
        );
        const res = await callback(params, { settings, secret: SHARED_KEY_SECRET, algorithm });
        expect(res.status).toBe(200);
      }
    });

    it('refuses a SharedKey signature made with the wrong key, algorithm or header', async () => {
      const sha256Settings = `key=${SHARED_KEY_ID},algorithm=HMAC_SHA256`;
      const cases: [string, Delivery][] = [
        // the auth token is not the SharedKey's secret
        ['auth token', { settings: sha256Settings, secret: AUTH_TOKEN, algorithm: 'HMAC_SHA256' }],
        // SHA-1 signature where the header says SHA-256
        ['SHA-1 as SHA-256', { settings: sha256Settings, secret: SHARED_KEY_SECRET }],
        // a SharedKey signature without its header is checked against the auth token
        ['no header', { secret: SHARED_KEY_SECRET, algorithm: 'HMAC_SHA256' }],
        // an algorithm the library does not know fails validation
        [
          'unknown algorithm',
          { settings: `key=${SHARED_KEY_ID},algorithm=HMAC_SHA512`, secret: SHARED_KEY_SECRET },
        ],
      ];
      for (const [what, d] of cases) {
        const params = inProgress();
        const res = await callback(params, d);
        expect([what, res.status, res.body.code]).toEqual([what, 403, 'invalid_signature']);
      }
    });

    it('reads an empty X-Twilio-Webhooks-Signature-Settings as no header (auth token, SHA-1), as the library does', async () => {
      // Twilio's own express middleware, configured as this service is, for the URL Twilio signed.
      const url = `${app.url}${PATH}`;
      const reference = express()
        .post(
          PATH,
          express.urlencoded({ extended: false }),
          twilio.webhook(AUTH_TOKEN, { sharedKeySecret: SHARED_KEY_SECRET, url }),
          (_req, res) => {
            res.sendStatus(204);
          },
        )
        .listen(0, '127.0.0.1');
      await new Promise((r) => reference.once('listening', r));
      try {
        const referenceUrl = `http://127.0.0.1:${(reference.address() as AddressInfo).port}`;
        const cases: [string, Delivery, number][] = [
          // the auth token's SHA-1 signature with an empty header: accepted
          ['auth token', { settings: '' }, 200],
          // the SharedKey secret's SHA-1 signature with an empty header: refused
          ['SharedKey secret', { settings: '', secret: SHARED_KEY_SECRET }, 403],
        ];
        for (const [what, d, expected] of cases) {
          const params = inProgress();
          const byLibrary = await callback(params, {
            ...d,
            signedUrl: url,
            to: { url: referenceUrl },
          });
          expect([what, byLibrary.status]).toEqual([what, expected === 200 ? 204 : 403]);
          const res = await callback(params, d);
          expect([what, res.status]).toEqual([what, expected]);
          if (expected === 403) expect(res.body.code).toBe('invalid_signature');
        }
      } finally {
        reference.close();
      }
    });

    it('refuses a wrong signature, one for other parameters, one made with another token, recording nothing', async () => {
      const sidValue = `RE${hex32()}`;
      const fields = fieldsFor(sidValue);
      const url = `${app.url}${PATH}`;
      const valid = twilio.getExpectedTwilioSignature(AUTH_TOKEN, url, fields);
      const attempts: [string, string | null][] = [
        ['wrong', 'AAAAAAAAAAAAAAAAAAAAAAAAAAA='],
        [
          'other params',
          twilio.getExpectedTwilioSignature(AUTH_TOKEN, url, {
            ...fields,
            RecordingDuration: '13',
          }),
        ],
        ['other token', twilio.getExpectedTwilioSignature(`${AUTH_TOKEN}x`, url, fields)],
        ['other path', twilio.getExpectedTwilioSignature(AUTH_TOKEN, `${url}x`, fields)],
        ['truncated', valid.slice(0, -1)],
        ['extended', `${valid}A`],
        ['lower case', valid.toLowerCase()],
        ['empty', ''],
        ['absent', null],
      ];
      for (const [what, sign] of attempts) {
        const res = await callback(fields, { sign });
        expect([what, res.status]).toEqual([what, 403]);
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(res.body).toMatchObject({ code: 'invalid_signature', status: 403 });
        expect(res.body.title).not.toMatch(/role/);
        expect(res.body.title).toMatch(/signature/i);
      }
      expect(await row(sidValue)).toBeUndefined();
      // The refusals are in the trail as denied callbacks.
      const denied = (await auditEvents(app, 'integration.callback')).filter(
        (e) =>
          e.outcome === 'denied' && (e.details as { code?: string }).code === 'invalid_signature',
      );
      expect(denied.length).toBeGreaterThanOrEqual(attempts.length);
    });
  });

  it('answers hostile signature headers, hosts and fields with a 4xx, never a 5xx', async () => {
    const url = `${app.url}${PATH}`;
    const cases: [string, Delivery, Params?][] = [
      ['8 KiB signature', { sign: 'A'.repeat(8192) }],
      ['non-base64 signature', { sign: '!!!!' }],
      ['huge algorithm', { settings: `algorithm=${'x'.repeat(4000)}`, secret: SHARED_KEY_SECRET }],
      ['settings of commas', { settings: ',,,=,=', secret: SHARED_KEY_SECRET }],
      [
        'host with a bad port',
        { host: 'archive.test:99999', signedUrl: `http://archive.test:99999${PATH}` },
      ],
      [
        'host with a path',
        { host: 'archive.test/evil', signedUrl: `http://archive.test/evil${PATH}` },
      ],
      [
        'host with user info',
        { host: 'user@archive.test', signedUrl: `http://user@archive.test${PATH}` },
      ],
      ['IPv6 host', { host: '[::1]:80', signedUrl: `http://[::1]${PATH}` }],
      ['bracketed field names', {}, { ...inProgress(), 'a[b]': 'c', hasOwnProperty: 'x' }],
      ['unicode values', {}, { ...inProgress(), Name: 'Zoë 👩‍💼 \u0000' }],
    ];
    for (const [what, d, params] of cases) {
      const res = await callback(params ?? inProgress(), d);
      expect([what, res.status < 500]).toEqual([what, true]);
      if (res.status >= 400) {
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      }
    }
    // Signed correctly, odd fields are accepted as the library accepts them.
    const odd = { ...inProgress(), 'a[b]': 'c', hasOwnProperty: 'x', Name: 'Zoë 👩‍💼' };
    expect(
      twilio.validateRequest(
        AUTH_TOKEN,
        twilio.getExpectedTwilioSignature(AUTH_TOKEN, url, odd),
        url,
        odd,
      ),
    ).toBe(true);
    expect((await callback(odd)).status).toBe(200);
    // Still serving.
    expect((await callback(inProgress())).status).toBe(200);
  });

  it('refuses a callback for another account, and ignores recordings not yet completed', async () => {
    const other = await callback(fieldsFor(`RE${hex32()}`, { AccountSid: `AC${'2'.repeat(32)}` }));
    expect(other.status).toBe(403);
    expect(other.body.title).not.toMatch(/role/);
    const sidValue = `RE${hex32()}`;
    const res = await callback(fieldsFor(sidValue, { RecordingStatus: 'in-progress' }));
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('ignored');
    expect(await row(sidValue)).toBeUndefined();
  });

  it('records RecordingStatus=absent (no audio, empty RecordingUrl) as a known gap, once', async () => {
    const sidValue = `RE${hex32()}`;
    const callSid = `CA${hex32()}`;
    const fields = fieldsFor(sidValue, {
      CallSid: callSid,
      RecordingStatus: 'absent',
      RecordingUrl: '',
      RecordingDuration: '0',
    });
    const res = await callback(fields);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ recordingSid: sidValue, status: 'absent' });
    const again = await callback(fields); // Twilio delivers it again: the same answer
    expect(again.status).toBe(200);
    expect(again.body).toEqual(res.body);
    expect(await row(sidValue)).toMatchObject({ status: 'absent', item_id: null, attempts: 0 });
    // Listed with the other recordings that will not be archived...
    const list = await recordings({ status: 'absent' });
    expect(list.status).toBe(200);
    expect(list.body.items).toContainEqual(
      expect.objectContaining({
        provider: 'twilio',
        recordingSid: sidValue,
        callSid,
        status: 'absent',
        itemId: null,
      }),
    );
    // ...and in the custody trail, once.
    const events = (await auditEvents(app, 'integration.callback')).filter(
      (e) => (e.details as { recordingSid?: string }).recordingSid === sidValue,
    );
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      outcome: 'success',
      details: { provider: 'twilio', callSid, recordingStatus: 'absent' },
    });
    expect(metric(await metrics(), 'provider_recordings{provider="twilio",status="absent"}')).toBe(
      1,
    );
    // Absent with no RecordingUrl at all, too; a completed recording still needs its URL.
    const { RecordingUrl: _omitted, ...noUrl } = fieldsFor(`RE${hex32()}`, {
      RecordingStatus: 'absent',
    });
    expect((await callback(noUrl)).status).toBe(200);
    const completedNoUrl = await callback(fieldsFor(`RE${hex32()}`, { RecordingUrl: '' }));
    expect(completedNoUrl.status).toBe(400);
    expect(completedNoUrl.body.code).toBe('validation_failed');
    expect(completedNoUrl.body.detail).toMatch(/RecordingUrl/);
    const notUrl = await callback(fieldsFor(`RE${hex32()}`, { RecordingUrl: 'not a url' }));
    expect([notUrl.status, notUrl.body.detail]).toEqual([
      400,
      'Field "RecordingUrl" must be a URL.',
    ]);
  });

  it('fetches a recording Twilio called absent first and completed later, on record', async () => {
    const sidValue = `RE${hex32()}`;
    const callSid = `CA${hex32()}`;
    const wav = fakeMedia('wav');
    provider.media.set(sidValue, { bytes: wav, notReadyFor: 0 });
    const absent = await callback(
      fieldsFor(sidValue, {
        CallSid: callSid,
        RecordingStatus: 'absent',
        RecordingUrl: '',
        RecordingDuration: '0',
      }),
    );
    expect(absent.body).toEqual({ recordingSid: sidValue, status: 'absent' });
    // The media URL as a provider may sign it: the token in its query is needed for the fetch.
    const completed = fieldsFor(sidValue, {
      CallSid: callSid,
      RecordingUrl: `${provider.base}/2010-04-01/Accounts/${ACCOUNT}/Recordings/${sidValue}?Signature=secret-media-token`,
    });
    const res = await callback(completed);
    expect([res.status, res.body]).toEqual([202, { recordingSid: sidValue, status: 'queued' }]);
    const done = await settled(sidValue);
    expect(done.status).toBe('archived');
    expect(provider.seen.find((s) => s.path.includes(sidValue))?.path).toMatch(
      /\?Signature=secret-media-token$/,
    );
    const item = await request(app.url)
      .get(`/v1/evidence/${done.item_id}`)
      .set(bearer(app.keys.support));
    expect(item.body).toMatchObject({ callId: sidValue, sha256: sha256(wav) });
    // Both announcements are in the trail, the second saying what it changed.
    const events = (await auditEvents(app, 'integration.callback')).filter(
      (e) => (e.details as { recordingSid?: string }).recordingSid === sidValue,
    );
    expect(events.map((e) => [e.outcome, e.details])).toEqual([
      ['success', expect.objectContaining({ recordingStatus: 'absent' })],
      [
        'success',
        expect.objectContaining({
          previousStatus: 'absent',
          mediaUrl: `${provider.base}/2010-04-01/Accounts/${ACCOUNT}/Recordings/${sidValue}`,
        }),
      ],
    ]);
    // Delivered again: a duplicate, nothing more recorded.
    const again = await callback(completed);
    expect([again.status, again.body.status]).toEqual([202, 'duplicate']);
    expect(
      (await auditEvents(app, 'integration.callback')).filter(
        (e) => (e.details as { recordingSid?: string }).recordingSid === sidValue,
      ),
    ).toHaveLength(2);
  });

  it('never fetches from a host outside the allow-list: the failure is recorded, listed and counted', async () => {
    const sids = [`RE${hex32()}`, `RE${hex32()}`, `RE${hex32()}`];
    for (const sidValue of sids) {
      const res = await callback(
        fieldsFor(sidValue, {
          RecordingUrl: `http://localhost:1/Recordings/${sidValue}?Signature=secret`,
        }),
      );
      expect(res.status).toBe(202);
    }
    for (const sidValue of sids) {
      const failed = await settled(sidValue);
      expect(failed).toMatchObject({ status: 'failed', item_id: null, attempts: 1 });
      expect(failed.last_error).toMatch(/localhost is not in the allow-list/);
    }
    // Admins see them, newest first, a page at a time.
    const first = await recordings({ status: 'failed', limit: '2' });
    expect(first.status).toBe(200);
    expect(first.body.items).toHaveLength(2);
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const second = await recordings({
      status: 'failed',
      limit: '2',
      cursor: first.body.nextCursor,
    });
    expect(second.status).toBe(200);
    const listed = [...first.body.items, ...second.body.items];
    expect(listed.map((r: { recordingSid: string }) => r.recordingSid)).toEqual(
      expect.arrayContaining(sids),
    );
    expect(listed.map((r: { recordingSid: string }) => r.recordingSid).slice(0, 3)).toEqual(
      [...sids].reverse(),
    );
    expect(new Set(listed.map((r: { recordingSid: string }) => r.recordingSid)).size).toBe(
      listed.length,
    );
    const entry = listed.find((r: { recordingSid: string }) => r.recordingSid === sids[0]);
    expect(entry).toEqual({
      provider: 'twilio',
      recordingSid: sids[0],
      callSid: expect.stringMatching(/^CA[0-9a-f]{32}$/),
      status: 'failed',
      attempts: 1,
      lastError: expect.stringMatching(/localhost is not in the allow-list/),
      itemId: null,
      durationSeconds: 12,
      receivedAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    // Nothing secret: no auth token, no media URL with its credentials.
    for (const res of [first, second]) {
      expect(res.text).not.toContain(AUTH_TOKEN);
      expect(res.text).not.toContain('secret');
    }
    // Admin only; a bad query is a 400.
    expect((await recordings({ status: 'failed' }, app.keys.support)).status).toBe(403);
    expect((await recordings({ status: 'failed' }, app.keys.ingest)).status).toBe(403);
    expect((await request(app.url).get('/v1/integrations/recordings')).status).toBe(401);
    const bad = await recordings({ status: 'lost' });
    expect([bad.status, bad.body.code]).toEqual([400, 'validation_failed']);
    const badCursor = await recordings({ status: 'failed', cursor: 'x' });
    expect([badCursor.status, badCursor.body.code]).toEqual([400, 'invalid_cursor']);
    const unknown = await recordings({ status: 'failed', sort: 'asc' });
    expect(unknown.status).toBe(400);
    // And Prometheus sees them.
    const text = await metrics();
    expect(
      metric(text, 'provider_recording_fetches_total{provider="twilio",outcome="failed"}'),
    ).toBe(3);
    expect(metric(text, 'provider_recordings{provider="twilio",status="failed"}')).toBe(3);
  });

  it('keeps the media URL out of the custody trail without its query and user info', async () => {
    const sidValue = `RE${hex32()}`;
    const res = await callback(
      fieldsFor(sidValue, {
        RecordingUrl: `https://user:secret-password@localhost:1/Recordings/${sidValue}?Signature=secret-token&X-Amz-Credential=secret-key#secret-fragment`,
      }),
    );
    expect(res.status).toBe(202);
    await settled(sidValue);
    const events = (await auditEvents(app, 'integration.callback')).filter(
      (e) => (e.details as { recordingSid?: string }).recordingSid === sidValue,
    );
    expect(events.length).toBeGreaterThanOrEqual(1);
    expect(events[0]!.details).toMatchObject({
      mediaUrl: `https://localhost:1/Recordings/${sidValue}`,
    });
    for (const e of events) expect(JSON.stringify(e)).not.toMatch(/secret|Signature/);
  });

  it('refuses malformed SIDs', async () => {
    const res = await callback(fieldsFor('RE-not-a-sid'));
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('validation_failed');
  });

  it("runs docs/integrations.md's Twilio snippet as written", async () => {
    const readme = readFileSync(path.resolve(__dirname, '../../docs/integrations.md'), 'utf8');
    const block = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)]
      .map((m) => m[1]!)
      .find((b) => b.includes('getExpectedTwilioSignature'));
    expect(block).toBeDefined();
    const script = block!.replaceAll('http://127.0.0.1:8080', app.url);
    const { stdout } = await run('sh', ['-e', '-c', script], {
      cwd: path.resolve(__dirname, '../..'),
      env: {
        ...process.env,
        TWILIO_ACCOUNT_SID: ACCOUNT,
        TWILIO_AUTH_TOKEN: AUTH_TOKEN,
        ADMIN: app.keys.admin.key,
      },
    });
    const [posted, listed] = stdout.trim().split('\n');
    expect(posted).toMatch(/^200 \{"recordingSid":"RE[0-9a-f]{32}","status":"absent"\}$/);
    const sidValue = /"(RE[0-9a-f]{32})"/.exec(posted!)![1]!;
    expect(JSON.parse(listed!).items).toContainEqual(
      expect.objectContaining({ recordingSid: sidValue, status: 'absent' }),
    );
  });
  describe('without PUBLIC_URL, TRUST_PROXY or a SharedKey secret', () => {
    let bare: TestApp;
    beforeAll(async () => {
      bare = await startTestApp('fs', {
        TWILIO_AUTH_TOKEN: AUTH_TOKEN,
        TWILIO_ACCOUNT_SID: ACCOUNT,
        TWILIO_INGEST_KEY_ID: KEY_ID,
      });
    });
    afterAll(() => bare.close());
    afterEach(() => jest.restoreAllMocks());

    it('warns at start-up that the signed URL then comes from the Host header', async () => {
      const warn = jest.spyOn(bare.ctx.logger, 'warn');
      await bare.ctx.twilio.start({ workers: false });
      expect(warn).toHaveBeenCalledWith(
        expect.stringMatching(/without PUBLIC_URL.*Host header.*another deployment/),
      );
    });

    it('ignores X-Forwarded-Host and X-Forwarded-Proto', async () => {
      const own = `${bare.url}${PATH}`;
      const forwarded = `https://archive.test${PATH}`;
      // Signed for the address the forwarded headers name: refused, they do not count.
      const spoofed = await callback(inProgress(), {
        to: bare,
        signedUrl: forwarded,
        forwardedHost: 'archive.test',
        proto: 'https',
      });
      expect([spoofed.status, spoofed.body.code]).toEqual([403, 'invalid_signature']);
      // Signed for the address the request reached: accepted, whatever they say.
      const params = inProgress();
      expect(
        twilio.validateRequest(
          AUTH_TOKEN,
          twilio.getExpectedTwilioSignature(AUTH_TOKEN, own, params),
          own,
          params,
        ),
      ).toBe(true);
      const res = await callback(params, {
        to: bare,
        forwardedHost: 'archive.test',
        proto: 'https',
      });
      expect([res.status, res.body.status]).toEqual([200, 'ignored']);
    });

    it('logs a SharedKey callback it cannot check once, not once per request', async () => {
      const warn = jest.spyOn(bare.ctx.logger, 'warn');
      for (let i = 0; i < 5; i++) {
        const res = await callback(inProgress(), {
          to: bare,
          settings: `key=${SHARED_KEY_ID},algorithm=HMAC_SHA256`,
          secret: SHARED_KEY_SECRET,
          algorithm: 'HMAC_SHA256',
        });
        expect([res.status, res.body.code]).toEqual([403, 'invalid_signature']);
      }
      const about = warn.mock.calls.filter((c) =>
        String(c[0]).includes('TWILIO_WEBHOOK_SHARED_KEY_SECRET'),
      );
      expect(about).toHaveLength(1);
    });
  });

  describe('with PUBLIC_URL', () => {
    let pinned: TestApp;
    beforeAll(async () => {
      pinned = await startTestApp('fs', {
        TWILIO_AUTH_TOKEN: AUTH_TOKEN,
        TWILIO_ACCOUNT_SID: ACCOUNT,
        TWILIO_INGEST_KEY_ID: KEY_ID,
        PUBLIC_URL: 'https://archive.example',
        TRUST_PROXY: 'loopback',
      });
    });
    afterAll(() => pinned.close());
    afterEach(() => jest.restoreAllMocks());

    it('checks the signature against PUBLIC_URL only, whatever Host the client sends', async () => {
      const warn = jest.spyOn(pinned.ctx.logger, 'warn');
      await pinned.ctx.twilio.start({ workers: false });
      expect(warn).not.toHaveBeenCalledWith(expect.stringMatching(/PUBLIC_URL/));
      const res = await callback(inProgress(), {
        to: pinned,
        signedUrl: `https://archive.example${PATH}`,
        host: 'elsewhere.test',
      });
      expect([res.status, res.body.status]).toEqual([200, 'ignored']);
      // Signed for another deployment under the same auth token, named by the Host header (and
      // the forwarded headers of a trusted proxy): refused.
      for (const d of [
        { signedUrl: `http://other.example${PATH}`, host: 'other.example' },
        {
          signedUrl: `https://other.example${PATH}`,
          forwardedHost: 'other.example',
          proto: 'https' as const,
        },
      ]) {
        const refused = await callback(inProgress(), { to: pinned, ...d });
        expect([refused.status, refused.body.code]).toEqual([403, 'invalid_signature']);
      }
    });
  });
});
