import { Readable } from 'node:stream';
import request from 'supertest';
import type { MintedKey } from '../../src/access/api-key.service';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { rawRequest, upload } from '../support/multipart';
import { tusUpload } from '../support/tus';

/** What a key that uploads bytes someone else archived may learn: nothing it did not send. */
const RECEIPT_KEYS = ['complaintIds', 'duplicate', 'id', 'orderIds', 'sha256', 'size'];

describe('dedupe reveals nothing about an item another key uploaded', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp('fs');
  });
  afterAll(() => app.close());

  const push = (key: MintedKey, callId: string, body: Buffer, query: string) =>
    rawRequest(
      `${app.url}/v1/calls/${callId}/recording?${query}`,
      {
        method: 'PUT',
        headers: {
          ...bearer(key),
          'Content-Type': 'audio/wav',
          'Content-Length': String(body.length),
        },
      },
      Readable.from([body]),
    );

  /** A call recording with everything a second device must not learn, from the first key. */
  async function archivedCall() {
    const wav = fakeMedia('wav');
    const first = await push(
      app.keys.ingest,
      `secret-${Math.random().toString(36).slice(2)}`,
      wav,
      'source=pbx-1&fromNumber=%2B442079460958&toNumber=%2B442079460959&agentId=agent-7&orderId=SECRET-ORD&complaintId=SECRET-C',
    );
    expect(first.status).toBe(201);
    return { wav, item: first.json() };
  }

  const view = (key: MintedKey, id: string) =>
    request(app.url).get(`/v1/evidence/${id}`).set(bearer(key));

  it('multipart: 200 with id, sha256, size, its own links and duplicate: true, nothing else', async () => {
    const { wav, item } = await archivedCall();
    const dup = await upload(
      app.url,
      app.keys.ingest2.key,
      [
        ['kind', 'call_recording'],
        ['orderId', 'MINE-1'],
      ],
      { filename: 'mine.wav', content: wav },
    );
    expect(dup.status).toBe(200);
    expect(dup.headers.location).toBeUndefined();
    const body = dup.json();
    expect(Object.keys(body).sort()).toEqual(RECEIPT_KEYS);
    expect(body).toEqual({
      id: item.id,
      sha256: sha256(wav),
      size: wav.length,
      orderIds: ['MINE-1'],
      complaintIds: [],
      duplicate: true,
    });
    expect(JSON.stringify(body)).not.toMatch(/SECRET|agent-7|4420794609/);

    // No read access beyond that receipt: a later GET shows the same receipt, no media or segments.
    const later = await view(app.keys.ingest2, item.id);
    expect(later.status).toBe(200);
    expect(later.body).toEqual(body);
    // Nor may it add segments to the item (that answer lists the item's segments).
    const seg = await request(app.url)
      .post(`/v1/evidence/${item.id}/segments`)
      .set(bearer(app.keys.ingest2))
      .send({ segments: [{ orderId: 'MINE-1', startSec: 0, endSec: 1 }] });
    expect(seg.status).toBe(403);
    expect(seg.body.code).toBe('forbidden');

    // The uploader still sees its whole item, now with the other station's order; so do people.
    for (const key of [app.keys.ingest, app.keys.support, app.keys.admin]) {
      const full = await view(key, item.id);
      expect(full.status).toBe(200);
      expect(full.body).toMatchObject({
        id: item.id,
        fromNumber: '+442079460958',
        agentId: 'agent-7',
        orderIds: ['MINE-1', 'SECRET-ORD'],
        complaintIds: ['SECRET-C'],
      });
      expect(full.body.duplicate).toBeUndefined();
    }
  });

  it('an admin key uploading known bytes still gets the whole item', async () => {
    const { wav, item } = await archivedCall();
    const dup = await upload(app.url, app.keys.admin.key, [['kind', 'call_recording']], {
      filename: 'a.wav',
      content: wav,
    });
    expect(dup.status).toBe(200);
    expect(dup.json()).toMatchObject({ id: item.id, agentId: 'agent-7' });
  });

  it('the uploader re-sending its own bytes still gets its whole item', async () => {
    const { wav, item } = await archivedCall();
    const again = await upload(app.url, app.keys.ingest.key, [['kind', 'call_recording']], {
      filename: 'a.wav',
      content: wav,
    });
    expect(again.status).toBe(200);
    expect(again.json()).toMatchObject({
      id: item.id,
      agentId: 'agent-7',
      orderIds: ['SECRET-ORD'],
    });
  });

  it('an Idempotency-Key replay of a duplicate returns the same receipt, no more', async () => {
    const { wav, item } = await archivedCall();
    const send = () =>
      upload(
        app.url,
        app.keys.ingest2.key,
        [
          ['kind', 'call_recording'],
          ['complaintId', 'MINE-C'],
        ],
        { filename: 'x.wav', content: wav },
        { 'Idempotency-Key': `dup-${item.id}` },
      );
    const first = await send();
    const replay = await send();
    expect(first.status).toBe(200);
    expect(replay.status).toBe(200);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual(first.json());
    expect(replay.json()).toEqual({
      id: item.id,
      sha256: sha256(wav),
      size: wav.length,
      orderIds: [],
      complaintIds: ['MINE-C'],
      duplicate: true,
    });
  });

  it('a replay stored before receipts existed (the whole item) is cut down to the receipt', async () => {
    const { wav, item } = await archivedCall();
    const key = `legacy-${item.id}`;
    await app.ctx.db
      .insertInto('idempotency_keys')
      .values({
        api_key_id: app.keys.ingest2.id,
        key,
        content_sha256: sha256(wav),
        status_code: 200,
        response: JSON.stringify(item),
      })
      .execute();
    const replay = await upload(
      app.url,
      app.keys.ingest2.key,
      [['kind', 'call_recording']],
      { filename: 'x.wav', content: wav },
      { 'Idempotency-Key': key },
    );
    expect(replay.status).toBe(200);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual({
      id: item.id,
      sha256: sha256(wav),
      size: wav.length,
      orderIds: [],
      complaintIds: [],
      duplicate: true,
    });
  });

  it('a call push of the same bytes under the same call id answers with the receipt only', async () => {
    const wav = fakeMedia('wav');
    const first = await push(
      app.keys.ingest,
      'shared-call-1',
      wav,
      'source=pbx-9&agentId=agent-9&orderId=SECRET-ORD',
    );
    expect(first.status).toBe(201);
    const dup = await push(app.keys.ingest2, 'shared-call-1', wav, 'source=pbx-9&orderId=MINE-2');
    expect(dup.status).toBe(200);
    expect(dup.json()).toEqual({
      id: first.json().id,
      sha256: sha256(wav),
      size: wav.length,
      orderIds: ['MINE-2'],
      complaintIds: [],
      duplicate: true,
    });
  });

  it('a call push of another call’s bytes is refused without naming that call', async () => {
    const { wav, item } = await archivedCall();
    const refused = await push(app.keys.ingest2, 'my-own-call', wav, 'source=pbx-2');
    expect(refused.status).toBe(409);
    expect(refused.json().code).toBe('recording_of_another_call');
    expect(refused.body).not.toContain(item.callId);
  });

  it('the bytes of a deleted item are refused without another key learning why it was deleted', async () => {
    const { wav, item } = await archivedCall();
    const deleted = await request(app.url)
      .delete(`/v1/evidence/${item.id}`)
      .set(bearer(app.keys.admin))
      .send({ reason: 'customer SECRET-REASON' });
    expect(deleted.status).toBe(200);
    const send = (key: MintedKey) =>
      upload(app.url, key.key, [['kind', 'call_recording']], { filename: 'd.wav', content: wav });
    const other = await send(app.keys.ingest2);
    expect(other.status).toBe(410);
    expect(other.json().code).toBe('evidence_deleted');
    expect(other.body).not.toContain('SECRET-REASON');
    const own = await send(app.keys.ingest);
    expect(own.status).toBe(410);
    expect(own.body).toContain('SECRET-REASON');
  });

  it('a resumable upload of known bytes gains only the receipt', async () => {
    const { wav, item } = await archivedCall();
    const done = await tusUpload(app.url, app.keys.ingest2, wav, {
      kind: 'call_recording',
      orderId: 'MINE-3',
    });
    expect(done).toMatchObject({ itemId: item.id, status: 'duplicate' });
    const later = await view(app.keys.ingest2, item.id);
    expect(later.status).toBe(200);
    expect(later.body).toEqual({
      id: item.id,
      sha256: sha256(wav),
      size: wav.length,
      orderIds: ['MINE-3'],
      complaintIds: [],
      duplicate: true,
    });
  });
});
