import { execFile, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startTestApp, type TestApp, itemView } from '../support/harness';
import { fakeMedia } from '../support/media';
import { readDoc } from '../support/readme';

/**
 * The command blocks of docs/integrations.md, run as written against the real service: the sample
 * media of the README's step 0, a phone system's push, the station uploader (one file, and a
 * watched folder), and a tus upload by hand with curl. Only the archive's address and the key
 * are put in, as a reader would.
 */
const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');
const PAGE = 'docs/integrations.md';

/** The ```sh blocks of a page. */
function blocks(page: string): string[] {
  return [...readDoc(page).matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}
function blockWith(page: string, needle: string): string {
  const found = blocks(page).filter((b) => b.includes(needle));
  expect(found).toHaveLength(1);
  return found[0]!;
}

let app: TestApp;
let dir: string;
const shellEnv = () => ({ ...process.env, INGEST: app.keys.ingest.key, EVIDENCE_URL: app.url });
const inDocs = (block: string) =>
  block
    .replaceAll('http://127.0.0.1:8080', app.url)
    .replaceAll('https://evidence.example.com', app.url)
    .replaceAll('eak_...', app.keys.ingest.key);

/** A reader's directory: `npm run upload` runs in the project, so it is a view of it (as .ci/smoke's). */
function readerDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'evidence-docs-commands-'));
  dirs.push(d);
  for (const entry of readdirSync(ROOT)) {
    if (entry !== '.git') symlinkSync(path.join(ROOT, entry), path.join(d, entry));
  }
  return d;
}
const dirs: string[] = [];

beforeAll(async () => {
  app = await startTestApp('fs');
  dir = readerDir();
  await run(process.execPath, [path.join(ROOT, 'scripts', 'ensure-built.mjs')], { cwd: ROOT });
  // The README's step 0: the sample clip and call.
  const readme = blockWith('README.md', 'ffmpeg -loglevel error');
  const step0 = readme.slice(
    readme.indexOf('ffmpeg'),
    readme.indexOf('\n\n', readme.indexOf('ffmpeg')),
  );
  await run('bash', ['-e', '-c', step0], { cwd: dir });
}, 300_000);

afterAll(async () => {
  await app?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe(`the command blocks of ${PAGE}, run as written`, () => {
  it('pushes a call recording with curl (PUT /v1/calls/{callId}/recording)', async () => {
    const { stdout } = await run('bash', ['-e', '-c', inDocs(blockWith(PAGE, '/v1/calls/'))], {
      cwd: dir,
      env: shellEnv(),
    });
    const item = JSON.parse(stdout) as { id: string; callId: string; kind: string };
    expect(item).toMatchObject({ kind: 'call_recording', callId: '1700000000.42' });
    expect(await itemView(app, item.id)).toMatchObject({ orderIds: ['ORD-1001'] });
  });

  it('sends a clip with tus by hand, resuming after the first MiB', async () => {
    const block = blockWith(PAGE, 'b64() {');
    const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', inDocs(block)], {
      cwd: dir,
      env: shellEnv(),
    });
    expect(stdout).toMatch(/Upload-Offset: 1048576/);
    const id = /Evidence-Item-Id: ([0-9a-f-]{36})/.exec(stdout)?.[1];
    expect(id).toBeDefined();
    expect(stdout).toMatch(/Evidence-Item-Status: created/);
    expect(await itemView(app, id!)).toMatchObject({
      kind: 'packing_video',
      orderIds: ['ORD-1001', 'ORD-1002'],
      stationId: 'PK-03',
    });
  });

  it('uploads with the station uploader (npm run upload), as the tus section shows', async () => {
    const block = blockWith(PAGE, '--order ORD-1002 --station PK-03');
    // Another station's clip: the walk-through's is archived already (the tus test above).
    const station = readerDir();
    writeFileSync(path.join(station, 'clip.mov'), fakeMedia('mov', 3 * 1024 * 1024));
    const { stdout, stderr } = await run('bash', ['-e', '-c', inDocs(block)], {
      cwd: station,
      env: shellEnv(),
    });
    expect(stdout + stderr).toMatch(
      /clip\.mov: archived as [0-9a-f-]{36} \(SHA-256 [0-9a-f]{64} matches\)/,
    );
  });

  it('uploads one file, then a watched folder, with the station uploader', async () => {
    const block = blockWith(PAGE, '--watch /srv/station/clips');
    const [one, watch] = block.trim().split('\n');
    writeFileSync(path.join(dir, 'clip.mp4'), fakeMedia('mp4', 256 * 1024));
    const { stdout, stderr } = await run('bash', ['-e', '-c', inDocs(one!)], {
      cwd: dir,
      env: shellEnv(),
    });
    expect(stdout + stderr).toMatch(/clip\.mp4: archived as [0-9a-f-]{36}/);

    const clips = path.join(dir, 'station-clips');
    mkdirSync(clips);
    writeFileSync(path.join(clips, 'bench-1.mp4'), fakeMedia('mp4', 128 * 1024));
    const command = inDocs(watch!).replace('/srv/station/clips', clips);
    // Its own process group: npm does not pass SIGTERM on to the uploader.
    const child = spawn('bash', ['-c', command], {
      cwd: dir,
      env: shellEnv(),
      stdio: 'ignore',
      detached: true,
    });
    try {
      const done = path.join(clips, 'done', 'bench-1.mp4');
      for (let i = 0; i < 240 && !existsSync(done); i++) {
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(existsSync(done)).toBe(true);
    } finally {
      process.kill(-child.pid!, 'SIGTERM');
    }
  }, 120_000);
});
