import request from 'supertest';
import { SigningKey } from '../../src/custody/signing-key';
import { bearer, startTestApp, type TestApp } from '../support/harness';

jest.setTimeout(60_000);

/** AppContext.fromConfig's overrides reach the services it builds (tests pass a clock or a key). */
describe('the composition root with overrides', () => {
  const NOW = new Date('2021-03-04T05:06:07.000Z');
  const key = SigningKey.ephemeral();
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('fs', {}, { now: () => NOW, signingKey: key });
  });
  afterAll(async () => {
    await app.close();
  });

  it('gives the services the clock it was given', async () => {
    const complaint = await request(app.url)
      .put('/v1/complaints/CMP-CLOCK')
      .set(bearer(app.keys.support))
      .send({ status: 'open' });
    expect(complaint.status).toBe(201);
    expect(complaint.body.openedAt).toBe(NOW.toISOString());

    const report = await request(app.url).get('/v1/reports/coverage').set(bearer(app.keys.support));
    expect(report.status).toBe(200);
    expect(report.body.generatedAt).toBe(NOW.toISOString());
    expect(report.body.to).toBe(NOW.toISOString());
  });

  it('signs with the key it was given', async () => {
    const res = await request(app.url).get('/v1/custody/public-key').expect(200);
    expect(res.body.fingerprint).toBe(key.fingerprint);
    expect(app.ctx.signingKeyMissing).toBe(false);
  });
});
