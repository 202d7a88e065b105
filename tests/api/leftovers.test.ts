import { Readable } from 'node:stream';
import { bearer, DRIVERS, startTestApp, type Driver, type TestApp } from '../support/harness';
import { leftovers, storeOf } from '../support/leftovers';
import { fakeMedia } from '../support/media';
import { rawRequest, upload } from '../support/multipart';

jest.setTimeout(120_000);

/** A PUT of raw bytes to a call, as a PBX sends it; status 0 when the connection failed. */
function push(app: TestApp, callId: string, body: Buffer) {
  return rawRequest(
    `${app.url}/v1/calls/${encodeURIComponent(callId)}/recording?source=race`,
    {
      method: 'PUT',
      headers: {
        ...bearer(app.keys.ingest),
        'Content-Type': 'audio/wav',
        'Content-Length': String(body.length),
      },
    },
    Readable.from([body]),
  ).catch(() => ({ status: 0, json: () => ({}) }) as { status: number; json: () => any }); // eslint-disable-line @typescript-eslint/no-explicit-any
}

const RETRYABLE = new Set([503]);

/**
 * Refused and racing uploads leave nothing in the store: every evidence blob has its row, and no
 * staging object outlives its request.
 */
describe.each(DRIVERS)(
  'nothing left behind by refused or racing uploads (%s)',
  (driver: Driver) => {
    let app: TestApp;
    beforeAll(async () => {
      app = await startTestApp(driver);
    });
    afterAll(() => app.close());

    const stored = () => leftovers(app.ctx.db, storeOf(app.dataDir, app.s3));

    it('50 concurrent pushes of different recordings for one call: one item, 409 for the rest, no orphan blob', async () => {
      const bodies = Array.from({ length: 50 }, () => fakeMedia('wav', 96 * 1024));
      const answers = await Promise.all(bodies.map((b) => push(app, 'race-1', b)));
      const statuses = answers.map((a) => a.status);
      expect(statuses.filter((s) => s === 201)).toHaveLength(1);
      for (const a of answers) {
        if (a.status === 201) continue;
        expect(a.status).toBe(409);
        expect(['call_id_conflict', 'recording_of_another_call']).toContain(a.json().code);
      }
      const rows = await app.ctx.db
        .selectFrom('evidence_items')
        .select('sha256')
        .where('call_id', '=', 'race-1')
        .execute();
      expect(rows).toHaveLength(1);
      expect(await stored()).toEqual({ orphans: [], staging: [] });
    });

    it('50 concurrent retries under one Idempotency-Key: one item, every answer that item or a clean retryable error, no orphan', async () => {
      const clip = fakeMedia('mp4', 128 * 1024);
      const answers = await Promise.all(
        Array.from({ length: 50 }, () =>
          upload(
            app.url,
            app.keys.ingest.key,
            [['kind', 'packing_video']],
            { filename: 'retry.mp4', content: clip },
            { 'Idempotency-Key': 'retry-50' },
          ),
        ),
      );
      const ids = new Set<string>();
      for (const a of answers) {
        if (RETRYABLE.has(a.status)) {
          expect(a.headers['retry-after']).toBeDefined();
          continue;
        }
        expect([a.status, a.status < 300 ? '' : a.body]).toEqual([
          a.status < 300 ? a.status : 201,
          '',
        ]);
        ids.add(a.json().id);
      }
      expect(ids.size).toBe(1);
      expect(answers.filter((a) => a.status === 201).length).toBeGreaterThanOrEqual(1);
      const rows = await app.ctx.db
        .selectFrom('evidence_items')
        .select('id')
        .where('original_filename', '=', 'retry.mp4')
        .execute();
      expect(rows.map((r) => r.id)).toEqual([...ids]);
      expect(await stored()).toEqual({ orphans: [], staging: [] });
    });

    it('50 concurrent different clips under one Idempotency-Key: one item, the rest refused, no orphan', async () => {
      const answers = await Promise.all(
        Array.from({ length: 50 }, () =>
          upload(
            app.url,
            app.keys.ingest.key,
            [['kind', 'packing_video']],
            { filename: 'reuse.mp4', content: fakeMedia('mp4', 96 * 1024) },
            { 'Idempotency-Key': 'reused-50' },
          ),
        ),
      );
      expect(answers.filter((a) => a.status === 201)).toHaveLength(1);
      for (const a of answers.filter((x) => x.status !== 201)) {
        expect([a.status, a.json().code]).toEqual([422, 'idempotency_key_reused']);
      }
      expect(await stored()).toEqual({ orphans: [], staging: [] });
    });
  },
);
