import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import request from 'supertest';
import { bearer, itemCount, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';

const run = promisify(execFile);
const SCRIPT = path.resolve(__dirname, '../../examples/asterisk/evidence-push.sh');

/** examples/asterisk/evidence-push.sh against the real service, as MixMonitor would run it. */
describe('the Asterisk post-recording script', () => {
  let app: TestApp;
  let dir: string;
  let conf: string;

  beforeAll(async () => {
    app = await startTestApp('fs');
    dir = mkdtempSync(path.join(tmpdir(), 'evidence-asterisk-'));
    writeFileSync(path.join(dir, 'ingest.key'), `Authorization: Bearer ${app.keys.ingest.key}\n`);
    conf = path.join(dir, 'push.conf');
    writeFileSync(
      conf,
      `EVIDENCE_URL=${app.url}\nEVIDENCE_SOURCE=asterisk-1\nEVIDENCE_KEY_FILE=${dir}/ingest.key\n`,
    );
  });
  afterAll(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const push = (...args: string[]) =>
    run('sh', [SCRIPT, ...args], { env: { ...process.env, EVIDENCE_PUSH_CONF: conf } }).then(
      () => 0,
      (err: { code: number }) => err.code,
    );
  const recording = (name: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, fakeMedia('wav'));
    return file;
  };
  const byCall = async (callId: string) => {
    const res = await request(app.url)
      .get('/v1/evidence')
      .query({ kind: 'call_recording' })
      .set(bearer(app.keys.support));
    return res.body.items.find((i: { callId: string }) => i.callId === callId);
  };

  it('pushes a recording with its call metadata, and a second run is a harmless retry', async () => {
    const file = recording('1700000000.42.wav');
    expect(await push(file, '1700000000.42', '+442079460958', '201', 'inbound')).toBe(0);
    expect(await push(file, '1700000000.42', '+442079460958', '201', 'inbound')).toBe(0);
    const item = await byCall('1700000000.42');
    expect(item).toMatchObject({
      source: 'asterisk-1',
      fromNumberE164: '+442079460958',
      direction: 'inbound',
    });
  });

  it.each([
    '$(touch PWNED-1)',
    '`touch PWNED-2`',
    '+44; touch PWNED-3',
    "'; touch PWNED-4; '",
    '+44\nX-Injected: 1',
  ])('never lets a caller ID reach a shell: %j', async (callerId) => {
    const before = await itemCount(app);
    const file = recording(`call-${before}.wav`);
    expect(await push(file, `1700000001.${before}`, callerId, '201', 'inbound')).toBe(0);
    const item = await byCall(`1700000001.${before}`);
    expect(item.fromNumber).toBeNull(); // dropped, not passed on
    for (const n of [1, 2, 3, 4]) {
      expect(existsSync(path.join(process.cwd(), `PWNED-${n}`))).toBe(false);
      expect(existsSync(path.join(dir, `PWNED-${n}`))).toBe(false);
    }
  });

  it('refuses a call id that is not a plain id', async () => {
    const before = await itemCount(app);
    expect(await push(recording('x.wav'), '1.2;touch PWNED-5')).toBe(2);
    expect(await push(recording('y.wav'), '../../v1/evidence')).toBe(2);
    expect(await itemCount(app)).toBe(before);
  });
});
