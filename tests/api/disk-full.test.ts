import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { loadConfig } from '../../src/config';
import { AppContext } from '../../src/context';
import { createLogger } from '../../src/logger';
import { sha256 } from '../support/media';
import { upload } from '../support/multipart';
import { freePort } from '../support/own-postgres';
import { startServiceProcess, type ServiceProcess } from '../support/service-process';
import { createTestDatabase } from '../support/test-db';

jest.setTimeout(120_000);

/** Whether this process may mount a tmpfs (root, as here and in CI); the reason if not. */
function tmpfsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: cannot mount a tmpfs';
  const probe = mkdtempSync(path.join(tmpdir(), 'evidence-tmpfs-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { stdio: 'pipe' });
    execFileSync('umount', [probe], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return `mount -t tmpfs failed: ${(err as Error).message.split('\n')[0]}`;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

const unavailable = tmpfsUnavailable();
if (unavailable && process.env.CI)
  throw new Error(`the disk-full test must run in CI: ${unavailable}`);
if (unavailable) console.warn(`Skipping the disk-full test: ${unavailable}`);
const describeTmpfs = unavailable ? describe.skip : describe;

const MiB = 1024 * 1024;
const jpeg = (size: number) =>
  Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(size - 4)]);

/**
 * The blob directory on an 8 MiB tmpfs: an upload that does not fit is refused with 507
 * insufficient_storage, leaves nothing behind, the service stays up and serves what it holds,
 * and /readyz says not ready once the disk is nearly full.
 */
describeTmpfs('disk full', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let dataDir: string;
  let blobs: string;
  let mounted = false;
  let ctx: AppContext;
  let service: ServiceProcess;
  let keys: { ingest: string; support: string };

  beforeAll(async () => {
    database = await createTestDatabase();
    dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-disk-full-'));
    blobs = path.join(dataDir, 'blobs');
    mkdirSync(blobs);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0750', 'tmpfs', blobs]);
    mounted = true;
    const env = { DATABASE_URL: database.url, DATA_DIR: dataDir };
    ctx = await AppContext.fromConfig(
      loadConfig({ ...env, LOG_LEVEL: 'silent' }),
      { migrate: true, mediaTools: false },
      { logger: createLogger('silent') },
    );
    keys = {
      ingest: (await ctx.apiKeys.create('ingest', 'disk station')).key,
      support: (await ctx.apiKeys.create('support', 'disk support')).key,
    };
    service = await startServiceProcess(
      {
        ...env,
        LOG_LEVEL: 'warn',
        WORKERS: '0',
        // The data directory itself is on the machine's disk: only the tmpfs is measured low.
        READY_MIN_FREE_DISK_PERCENT: '25',
        READY_MIN_FREE_DISK_BYTES: '0',
      },
      await freePort(),
    );
    await service.ready();
  });

  afterAll(async () => {
    await service?.kill();
    await ctx?.close();
    await database?.drop();
    if (mounted) execFileSync('umount', ['-l', blobs]);
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const readiness = async () => {
    const res = await fetch(`${service.url}/readyz`);
    return {
      status: res.status,
      body: (await res.json()) as { checks: { disk: { status: string } } },
    };
  };
  const staging = () =>
    existsSync(path.join(blobs, 'staging')) ? readdirSync(path.join(blobs, 'staging')) : [];

  it('refuses an upload that does not fit with 507, keeps nothing of it, and reports a nearly full disk as not ready', async () => {
    const first = jpeg(Math.round(2.5 * MiB));
    const second = jpeg(Math.round(2.5 * MiB));
    for (const [name, body] of [
      ['first.jpg', first],
      ['second.jpg', second],
    ] as const) {
      const res = await upload(service.url, keys.ingest, [['kind', 'photo']], {
        filename: name,
        contentType: 'image/jpeg',
        content: body,
      });
      expect(res.status).toBe(201);
    }
    // About 3 MiB of 8 free: still ready.
    expect((await readiness()).body.checks.disk.status).toBe('ok');

    const res = await upload(service.url, keys.ingest, [['kind', 'photo']], {
      filename: 'too-big.jpg',
      contentType: 'image/jpeg',
      content: jpeg(6 * MiB),
    });
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect([res.status, res.json().code]).toEqual([507, 'insufficient_storage']);
    expect(service.alive()).toBe(true);
    expect(staging()).toEqual([]);
    const { rows } = await sql<{
      original_filename: string;
    }>`select original_filename from evidence_items order by original_filename`.execute(ctx.db);
    expect(rows.map((r) => r.original_filename)).toEqual(['first.jpg', 'second.jpg']);

    // What it holds is still served whole.
    const items = await sql<{
      id: string;
    }>`select id from evidence_items where original_filename = 'first.jpg'`.execute(ctx.db);
    const content = await fetch(`${service.url}/v1/evidence/${items.rows[0]!.id}/content`, {
      headers: { Authorization: `Bearer ${keys.support}` },
    });
    expect(sha256(Buffer.from(await content.arrayBuffer()))).toBe(sha256(first));

    // Nearly full (under 25 % free): not ready, though everything else is up.
    const third = await upload(service.url, keys.ingest, [['kind', 'photo']], {
      filename: 'third.jpg',
      contentType: 'image/jpeg',
      content: jpeg(Math.round(1.5 * MiB)),
    });
    expect(third.status).toBe(201);
    const ready = await readiness();
    expect([ready.status, ready.body.checks.disk.status]).toEqual([503, 'low']);
  });
});
