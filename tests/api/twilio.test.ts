import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import request from 'supertest';
import { twilioSignature } from '../../src/integrations/twilio/twilio-signature';
import { bearer, itemCount, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';

jest.setTimeout(60_000);

const AUTH_TOKEN = 'test-auth-token-0123456789abcdef';
const ACCOUNT = `AC${'1'.repeat(32)}`;
const KEY_ID = 'twilio-ingest-test';
const hex32 = () => randomBytes(16).toString('hex');

/** A local HTTP server playing Twilio's media host: Basic auth, and "not ready yet" at first. */
async function fakeTwilio() {
  const media = new Map<string, { bytes: Buffer; notReadyFor: number }>();
  const seen: { path: string; authorization?: string }[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ path: req.url!, authorization: req.headers.authorization });
    const expected = `Basic ${Buffer.from(`${ACCOUNT}:${AUTH_TOKEN}`).toString('base64')}`;
    if (req.headers.authorization !== expected) return res.writeHead(401).end();
    const m = /\/Recordings\/(RE[0-9a-f]{32})\.wav$/.exec(req.url!);
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
        TWILIO_MEDIA_HOSTS: '127.0.0.1',
        MEDIA_FETCH_ALLOW_PRIVATE: 'true', // the fake provider is on loopback
        MEDIA_RETRY_DELAY_SECONDS: '1',
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

  /** Posts a callback signed as Twilio signs it. */
  function callback(fields: Record<string, string>, opts: { sign?: string } = {}) {
    const url = `${app.url}/v1/integrations/twilio/recording`;
    return request(app.url)
      .post('/v1/integrations/twilio/recording')
      .type('form')
      .set('X-Twilio-Signature', opts.sign ?? twilioSignature(AUTH_TOKEN, url, fields))
      .send(fields);
  }
  const fieldsFor = (recordingSid: string, overrides: Record<string, string> = {}) => ({
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
  });

  it('refuses a callback without a valid signature, recording nothing', async () => {
    const sidValue = `RE${hex32()}`;
    const res = await callback(fieldsFor(sidValue), { sign: 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=' });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('forbidden');
    const unsigned = await request(app.url)
      .post('/v1/integrations/twilio/recording')
      .type('form')
      .send(fieldsFor(sidValue));
    expect(unsigned.status).toBe(403);
    expect(await row(sidValue)).toBeUndefined();
  });

  it('refuses a callback for another account, and ignores recordings not yet completed', async () => {
    const other = await callback(fieldsFor(`RE${hex32()}`, { AccountSid: `AC${'2'.repeat(32)}` }));
    expect(other.status).toBe(403);
    const sidValue = `RE${hex32()}`;
    const inProgress = await callback(fieldsFor(sidValue, { RecordingStatus: 'in-progress' }));
    expect(inProgress.status).toBe(200);
    expect(inProgress.body.status).toBe('ignored');
    expect(await row(sidValue)).toBeUndefined();
  });

  it('never fetches from a host outside the allow-list: the failure is recorded, not retried', async () => {
    const sidValue = `RE${hex32()}`;
    const res = await callback(
      fieldsFor(sidValue, { RecordingUrl: `http://localhost:1/Recordings/${sidValue}` }),
    );
    expect(res.status).toBe(202);
    const failed = await settled(sidValue);
    expect(failed).toMatchObject({ status: 'failed', item_id: null, attempts: 1 });
    expect(failed.last_error).toMatch(/localhost is not in the allow-list/);
  });

  it('refuses malformed SIDs', async () => {
    const res = await callback(fieldsFor('RE-not-a-sid'));
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('validation_failed');
  });
});
