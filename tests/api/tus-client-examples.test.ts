import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { bearer, startTestApp, type TestApp, itemView } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { docShows } from '../support/readme';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');
const EXAMPLE = path.join(ROOT, 'examples', 'tus-js-client', 'upload-clip.mjs');

/** docs/integrations.md's tus-js-client example, as written, in Node against the real service. */
describe('the tus-js-client example of docs/integrations.md', () => {
  let app: TestApp;
  let dir: string;
  beforeAll(async () => {
    app = await startTestApp('fs');
    dir = mkdtempSync(path.join(tmpdir(), 'evidence-tus-example-'));
  });
  afterAll(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is in docs/integrations.md verbatim', () => {
    expect(docShows('docs/integrations.md', EXAMPLE)).toBe(true);
  });

  it('uploads a clip in pieces with its orders, and the archived SHA-256 matches', async () => {
    // Three pieces of 8 MiB and a bit: resumable pieces, not one request.
    const clip = fakeMedia('mp4', 2 * 8 * 1024 * 1024 + 4321);
    const file = path.join(dir, 'bench 3.mp4');
    writeFileSync(file, clip);
    const { stdout } = await run(process.execPath, [EXAMPLE, file, 'ORD-EX-1,ORD-EX-2'], {
      env: { ...process.env, EVIDENCE_URL: app.url, EVIDENCE_KEY: app.keys.ingest.key },
    });
    const itemId = /archived as ([0-9a-f-]{36})/.exec(stdout)?.[1];
    expect(itemId).toBeDefined();
    expect(stdout).toContain(
      `Repr-Digest: sha-256=:${Buffer.from(sha256(clip), 'hex').toString('base64')}:`,
    );
    const item = await itemView(app, itemId!);
    expect(item).toMatchObject({
      sha256: sha256(clip),
      size: clip.length,
      kind: 'packing_video',
      originalFilename: 'bench 3.mp4',
    });
    for (const order of ['ORD-EX-1', 'ORD-EX-2']) {
      const linked = await fetch(`${app.url}/v1/orders/${order}/evidence`, {
        headers: bearer(app.keys.support),
      }).then((r) => r.json());
      expect(JSON.stringify(linked)).toContain(itemId);
    }
  });

  it('reports a refusal and exits non-zero', async () => {
    const file = path.join(dir, 'call.wav');
    writeFileSync(file, fakeMedia('wav', 50_000)); // not a video: 415 at the first bytes
    const failed = await run(process.execPath, [EXAMPLE, file, 'ORD-EX-3'], {
      env: { ...process.env, EVIDENCE_URL: app.url, EVIDENCE_KEY: app.keys.ingest.key },
    }).catch((err: { code: number; stderr: string }) => err);
    expect(failed).toMatchObject({ code: 1 });
    expect((failed as { stderr: string }).stderr).toContain('unsupported_media_type');
  });
});
