import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import request from 'supertest';
import { MAX_STAMP_DELAY_MS } from '../../src/bundles/bundle-format';
import { verifyBundle } from '../../src/bundles/bundle-verifier';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { fakeMedia } from '../support/media';
import { getBytes } from '../support/media-files';
import { upload } from '../support/multipart';
import { makeTestPki, startTestTsa, type TestPki, type TestTsa } from '../support/test-tsa';
import { shell, verifyCli } from '../support/bundle-cli';
import { extractTo, unzipToMemory, zipEntries } from '../support/zip';

jest.setTimeout(120_000);

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');
const TIME_FILES = ['manifest.json.tsr', 'tsa-chain.pem', 'checkpoint.json', 'checkpoint.json.tsr'];

const readCa = (p: TestPki) => readFileSync(p.caFile, 'utf8');

/**
 * Bundles carry their third-party time: an RFC 3161 token over manifest.json (and over the
 * checkpoint when it is stamped) from a local TSA answering with `openssl ts -reply`.
 */
describe('RFC 3161 timestamps in dispute bundles', () => {
  let pki: TestPki;
  let otherPki: TestPki;
  let tsa: TestTsa;
  let app: TestApp | undefined;
  const work = mkdtempSync(path.join(tmpdir(), 'bundle-tsa-'));

  beforeAll(async () => {
    [pki, otherPki] = await Promise.all([makeTestPki('Test TSA'), makeTestPki('Stranger TSA')]);
    tsa = await startTestTsa(pki);
    app = await startTestApp('fs', {
      TIMESTAMP_AUTHORITY_URLS: tsa.url,
      TIMESTAMP_AUTHORITY_CA_FILE: pki.caFile,
      TIMESTAMP_AUTHORITY_TIMEOUT_MS: '1000',
    });
    await request(app.url)
      .put('/v1/complaints/C-T')
      .set(bearer(app.keys.support))
      .send({ status: 'open', orderIds: ['ORD-T'] })
      .expect(201);
    const res = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['complaintId', 'C-T'],
      ],
      { filename: 'clip.mp4', content: fakeMedia('mp4', 5000) },
    );
    expect(res.status).toBe(201);
  });
  afterAll(async () => {
    await app?.close();
    await tsa?.close();
    pki?.remove();
    otherPki?.remove();
    rmSync(work, { recursive: true, force: true });
  });
  beforeEach(() => {
    tsa.mode = 'ok';
  });

  const bundle = async () => {
    const res = await request(app!.url)
      .post('/v1/complaints/C-T/bundles')
      .set(bearer(app!.keys.support))
      .send({});
    expect(res.status).toBe(201);
    const zip = await getBytes(app!, `/v1/bundles/${res.body.id}/content`);
    expect(zip.status).toBe(200);
    return { id: res.body.id as string, zip: zip.body, entries: await unzipToMemory(zip.body) };
  };

  it('carries tokens that openssl ts -verify and sha256sum -c accept, and verify-bundle checks them', async () => {
    const b = await bundle();
    const sums = b.entries.get('SHA256SUMS')!.toString('utf8');
    for (const f of TIME_FILES) {
      expect({ f, present: b.entries.has(f) }).toEqual({ f, present: true });
      expect(sums).toContain(`  ${f}\n`);
    }
    // The frozen manifest v1 does not name them.
    expect(b.entries.get('manifest.json')!.toString('utf8')).not.toContain('.tsr');
    expect(b.entries.get('tsa-chain.pem')!.toString('utf8')).toContain('BEGIN CERTIFICATE');

    // VERIFY.txt's commands, run as written, with the TSA's root obtained separately.
    const dir = path.join(work, 'good');
    extractTo(dir, b.entries);
    writeFileSync(path.join(dir, 'tsa-root.pem'), readCa(pki));
    const verifyTxt = b.entries.get('VERIFY.txt')!.toString('utf8');
    expect(verifyTxt).toContain('never from this bundle');
    const commands = verifyTxt
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => /^(openssl|sha256sum) /.test(l));
    const tsCommands = commands.filter((c) => c.startsWith('openssl ts -verify'));
    expect(tsCommands).toEqual([
      'openssl ts -verify -data manifest.json -in manifest.json.tsr -CAfile tsa-root.pem',
      'openssl ts -verify -data checkpoint.json -in checkpoint.json.tsr -CAfile tsa-root.pem',
    ]);
    expect(commands).toContain('sha256sum -c SHA256SUMS');
    for (const c of commands) {
      const r = shell(c, dir);
      expect({ c, code: r.code }).toEqual({ c, code: 0 });
      if (c.startsWith('openssl ts')) expect(r.out).toContain('Verification: OK');
    }
    // docs/bundles.md's block, run as written.
    const doc = readFileSync(path.join(ROOT, 'docs/bundles.md'), 'utf8');
    const block =
      /<!-- run as written by tests\/api\/bundle-timestamps\.test\.ts -->\s*```sh\n([\s\S]*?)```/.exec(
        doc,
      )?.[1];
    expect(block).toContain('openssl ts -verify -data manifest.json');
    for (const c of block!.split('\n').filter((l) => l.trim() !== '')) {
      const r = shell(c, dir);
      expect({ c, code: r.code }).toEqual({ c, code: 0 });
      if (c.startsWith('openssl ts -verify')) expect(r.out).toContain('Verification: OK');
      if (c.startsWith('openssl ts -reply')) expect(r.out).toContain('Time stamp:');
    }

    // The same token against another authority's root fails.
    writeFileSync(path.join(dir, 'tsa-root.pem'), readCa(otherPki));
    expect(shell(tsCommands[0]!, dir).code).not.toBe(0);

    // The certificate names the authority's time.
    const text = (await run('pdftotext', ['-layout', path.join(dir, 'certificate.pdf'), '-']))
      .stdout;
    expect(text).toContain('RFC 3161');
    expect(text).toContain('CN=Test TSA');
    expect(text).not.toContain('no third-party time');

    // verify-bundle: passes with the right root, fails with another.
    const zipFile = path.join(work, 'good.zip');
    writeFileSync(zipFile, b.zip);
    const good = await verifyCli([zipFile, '--tsa-ca', pki.caFile]);
    expect(good.code).toBe(0);
    expect(good.out).toContain('manifest.json.tsr: an RFC 3161 token over manifest.json');
    expect(good.out).toContain('checkpoint.json.tsr: an RFC 3161 token over checkpoint.json');
    expect(good.out).toMatch(
      /Third-party time: manifest\.json existed at \S+Z \(RFC 3161 token by CN=Test TSA/,
    );
    const wrong = await verifyCli([zipFile, '--tsa-ca', otherPki.caFile]);
    expect(wrong.code).toBe(1);
    expect(wrong.out).toContain('manifest.json.tsr: refused');
    const unchecked = await verifyCli([zipFile]);
    expect(unchecked.code).toBe(0);
    expect(unchecked.out).toContain('manifest.json.tsr was not checked');

    // A token replaced by another real one (the checkpoint's: for other bytes) fails.
    const swapped = new Map(b.entries);
    swapped.set('manifest.json.tsr', b.entries.get('checkpoint.json.tsr')!);
    writeFileSync(path.join(work, 'swapped.zip'), await zipEntries(swapped));
    const other = await verifyBundle(path.join(work, 'swapped.zip'), { tsaCaPem: readCa(pki) });
    expect(other.ok).toBe(false);
    expect(other.problems).toContain(
      'manifest.json.tsr: refused: the token is for other bytes (message imprint differs)',
    );

    // A tampered token (its signature's last bytes changed) fails.
    const tampered = new Map(b.entries);
    const tok = Buffer.from(b.entries.get('manifest.json.tsr')!);
    tok.writeUInt8(tok.readUInt8(tok.length - 5) ^ 0xff, tok.length - 5);
    tampered.set('manifest.json.tsr', tok);
    writeFileSync(path.join(work, 'tampered.zip'), await zipEntries(tampered));
    const bad = await verifyBundle(path.join(work, 'tampered.zip'), { tsaCaPem: readCa(pki) });
    expect(bad.ok).toBe(false);
    expect(bad.problems.some((p) => p.startsWith('manifest.json.tsr: refused'))).toBe(true);
  });

  /**
   * The bundle with its manifest's createdAt moved by `shiftMs` and stamped now by the real TSA
   * (as one holding the archive's key could make): what verify-bundle says of it.
   */
  const redated = async (b: Awaited<ReturnType<typeof bundle>>, shiftMs: number, name: string) => {
    const m = JSON.parse(b.entries.get('manifest.json')!.toString('utf8'));
    const claimed = new Date(Date.parse(m.createdAt) + shiftMs).toISOString();
    const text = b.entries.get('manifest.json')!.toString('utf8').replace(m.createdAt, claimed);
    const token = (await app!.ctx.checkpointTimestamps.tsa!.stamp(Buffer.from(text))).response;
    const forged = new Map(b.entries);
    forged.set('manifest.json', Buffer.from(text));
    forged.set('manifest.json.tsr', token);
    const file = path.join(work, name);
    writeFileSync(file, await zipEntries(forged));
    const report = await verifyBundle(file, { tsaCaPem: readCa(pki) });
    expect(report.ok).toBe(false);
    return { claimed, problems: report.problems };
  };

  it('fails a token dated after the time the bundle claims', async () => {
    const b = await bundle();
    // Backdated by an hour: its token's time is an hour after the createdAt it claims.
    expect(MAX_STAMP_DELAY_MS).toBeLessThan(3600_000);
    const { claimed, problems } = await redated(b, -3600_000, 'backdated.zip');
    expect(
      problems.some(
        (p) =>
          p.startsWith('manifest.json.tsr is dated') &&
          p.includes(`after the bundle's creation time ${claimed}`),
      ),
    ).toBe(true);
    // The genuine bundle, same TSA, same root: its token is in time.
    const genuine = path.join(work, 'genuine.zip');
    writeFileSync(genuine, b.zip);
    expect((await verifyBundle(genuine, { tsaCaPem: readCa(pki) })).problems).toEqual([]);
  });

  it('fails a token dated before the time the bundle claims', async () => {
    // Dated an hour ahead (to claim a later creation) but stamped now.
    const { claimed, problems } = await redated(await bundle(), 3600_000, 'postdated.zip');
    expect(
      problems.some(
        (p) =>
          p.startsWith('manifest.json.tsr: refused: genTime') &&
          p.includes(`before the stamped bytes were made (${claimed})`),
      ),
    ).toBe(true);
  });

  it('still makes the bundle while the TSA is down, and says it carries no third-party time', async () => {
    tsa.mode = 'down';
    const b = await bundle();
    for (const f of TIME_FILES) expect(b.entries.has(f)).toBe(false);
    const verifyTxt = b.entries.get('VERIFY.txt')!.toString('utf8');
    expect(verifyTxt).toContain('Third-party time: none');
    expect(verifyTxt).not.toContain('openssl ts');
    const dir = path.join(work, 'down');
    extractTo(dir, b.entries);
    expect(shell('sha256sum -c SHA256SUMS', dir).code).toBe(0);
    const text = (await run('pdftotext', ['-layout', path.join(dir, 'certificate.pdf'), '-']))
      .stdout;
    expect(text).toContain('no third-party time');
    const file = path.join(work, 'down.zip');
    writeFileSync(file, b.zip);
    expect((await verifyCli([file])).code).toBe(0);
    const given = await verifyCli([file, '--tsa-ca', pki.caFile]);
    expect(given.code).toBe(1);
    expect(given.out).toContain('it carries no third-party time');
  });
});
