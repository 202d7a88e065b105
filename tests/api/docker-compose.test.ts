import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/base/config';
import { SigningKey } from '../../src/custody/signing-key';
import { readEnvExample, ROOT, uncommented } from '../support/env-example';
import { startTestApp, type TestApp } from '../support/harness';
import {
  ownPostgresUnavailable,
  startOwnPostgres,
  type OwnPostgres,
} from '../support/own-postgres';
import { AppContext } from '../../src/context';
import { createLogger } from '../../src/base/logger';
import { loginReach } from '../../src/db/logins';

/**
 * docker-compose.yml, checked with Debian's `docker-compose` (1.x), whose `config` needs no Docker
 * engine: it interpolates the file, merges env_file into each service's environment and prints the
 * result, which is what the containers would get.
 */
const haveCompose = spawnSync('docker-compose', ['version'], { stdio: 'ignore' }).status === 0;
const inCI = process.env.CI === 'true';
if (!haveCompose && !inCI) {
  console.warn(
    'tests/api/docker-compose.test.ts skipped: no docker-compose (apt-get install docker-compose). In CI this fails instead.',
  );
}

const example = readEnvExample();
const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');

interface Service {
  image?: string;
  build?: unknown;
  environment?: Record<string, string>;
  volumes?: (string | { type?: string; source?: string; target: string })[];
  healthcheck?: { test?: string[] | string; disable?: boolean };
  depends_on?: Record<string, { condition?: string }>;
  restart?: string;
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, { external?: boolean } | null>;
}

const dirs: string[] = [];
/** A directory holding the compose file and what it reads, and `.env` when given. */
function project(env?: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'evidence-compose-'));
  dirs.push(dir);
  for (const f of ['docker-compose.yml', 'Dockerfile', '.env.example']) {
    copyFileSync(path.join(ROOT, f), path.join(dir, f));
  }
  if (env !== undefined) writeFileSync(path.join(dir, '.env'), env);
  return dir;
}

/** Only PATH and HOME: a variable of the test's own environment would win over `.env`. */
const bareEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmpdir() };

function run(dir: string, command: string, args: string[]): string {
  const r = spawnSync(command, args, { cwd: dir, env: bareEnv, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed:\n${r.stderr}`);
  return r.stdout;
}

const configs = new Map<string, Compose>();
/** `docker-compose config` with this `.env`, as JSON (python3-yaml comes with docker-compose). */
function config(env: string): Compose {
  if (!configs.has(env)) configs.set(env, configOf(project(env)));
  return configs.get(env)!;
}

function configOf(dir: string): Compose {
  const yaml = run(dir, 'docker-compose', ['config']);
  const json = execFileSync(
    'python3',
    ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'],
    { input: yaml, encoding: 'utf8' },
  );
  return JSON.parse(json) as Compose;
}

/** The runtime stage's ENV: what the container has before compose adds its environment. */
function imageEnv(): Record<string, string> {
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const env: Record<string, string> = {};
  for (const line of runtime.matchAll(/^ENV (.+)$/gm)) {
    for (const pair of line[1]!.trim().split(/\s+/)) {
      const [k, v] = pair.split('=');
      env[k!] = v!;
    }
  }
  return env;
}

/** A new Ed25519 key as one `.env` line, PEM line breaks written "\n" as .env.example says. */
function signingKeyLine(): { line: string; fingerprint: string } {
  const pem = generateKeyPairSync('ed25519')
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
  const line = `CUSTODY_SIGNING_KEY=${pem.trim().replace(/\n/g, '\\n')}`;
  return { line, fingerprint: SigningKey.fromPem(pem).fingerprint };
}

/** Hours of a Go duration such as "744h" or "96h30m" (MinIO's notation). */
function goDurationHours(value: string): number {
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(h|m|s)/g)];
  if (parts.map((p) => p[0]).join('') !== value || !parts.length) {
    throw new Error(`not a duration: ${value}`);
  }
  const unit = { h: 1, m: 1 / 60, s: 1 / 3600 } as const;
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2] as 'h' | 'm' | 's'], 0);
}

/** Where the compose wiring must win over `.env`, and what it sets. */
function wiring(env: Record<string, string>): Record<string, string> {
  return {
    DATABASE_URL: `postgres://postgres:${env.POSTGRES_PASSWORD}@postgres:5432/evidence`,
    APP_DATABASE_URL: `postgres://evidence_service:${env.POSTGRES_APP_PASSWORD}@postgres:5432/evidence`,
    STORAGE_DRIVER: 's3',
    S3_ENDPOINT: 'http://minio:9000',
    S3_ACCESS_KEY_ID: env.MINIO_ROOT_USER!,
    S3_SECRET_ACCESS_KEY: env.MINIO_ROOT_PASSWORD!,
    S3_FORCE_PATH_STYLE: 'true',
    HOST: '0.0.0.0',
    PORT: '8080',
    DATA_DIR: '/data',
  };
}

(haveCompose || inCI ? describe : describe.skip)('docker-compose.yml', () => {
  beforeAll(() => {
    if (!haveCompose) {
      throw new Error('docker-compose is required in CI: apt-get install docker-compose');
    }
  });
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('gives the archive every variable of .env with its value; its own wiring wins where it must', () => {
    // A distinct value for each variable .env.example lists (some with spaces and "=").
    const names = [...example.settings.keys(), ...example.composeOnly.keys()];
    const values = Object.fromEntries(
      names.map((n, i) => [n, i % 3 ? `v${i}-${n.toLowerCase()}` : `v${i} a=b ${n}`]),
    );
    const dotenv = names.map((n) => `${n}=${values[n]}`).join('\n') + '\n';
    const c = config(dotenv);
    const env = c.services.archive!.environment!;
    const wired = wiring(values);
    for (const name of example.settings.keys()) {
      expect([name, env[name]]).toEqual([name, wired[name] ?? values[name]]);
    }
    // Wired, but from .env: the bucket minio-init creates is the one the archive uses.
    expect(env.S3_BUCKET).toBe(values.S3_BUCKET);
    expect(c.services['minio-init']!.environment!.S3_BUCKET).toBe(values.S3_BUCKET);
    expect(c.services.postgres!.environment!.POSTGRES_PASSWORD).toBe(values.POSTGRES_PASSWORD);
    expect(c.services.postgres!.environment!.POSTGRES_APP_PASSWORD).toBe(
      values.POSTGRES_APP_PASSWORD,
    );
    expect(c.services.minio!.environment!.MINIO_ROOT_USER).toBe(values.MINIO_ROOT_USER);
    expect(c.services.minio!.environment!.MINIO_ROOT_PASSWORD).toBe(values.MINIO_ROOT_PASSWORD);
  });

  it('names the variables the stack wires itself in docs/operations.md and .env.example', () => {
    const readme = readFileSync(path.join(ROOT, 'docs', 'operations.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Production-like setup with Docker'));
    const composeNotes = example.text.slice(example.text.indexOf('docker-compose.yml only'));
    for (const name of Object.keys(wiring({}))) {
      expect([name, section.includes(`\`${name}\``)]).toEqual([name, true]);
      expect([name, composeNotes.includes(name)]).toEqual([name, true]);
    }
  });

  it("passes a single-quoted value literally: '$', '#', spaces and \\n survive", () => {
    const value = String.raw`a$b #c  d\n"e`;
    const c = config(`${example.text}\nMETRICS_TOKEN='${value}'\n`);
    // `config` prints a literal "$" as "$$", as a compose file must spell it.
    expect(c.services.archive!.environment!.METRICS_TOKEN!.replace(/\$\$/g, '$')).toBe(value);
  });

  it('starts the service from .env.example as it is and with every default set, signing with the key of .env', () => {
    const key = signingKeyLine();
    for (const dotenv of [example.text, uncommented(example)]) {
      const c = config(`${dotenv}\n${key.line}\n`);
      const cfg = loadConfig({ ...imageEnv(), ...c.services.archive!.environment });
      expect(cfg.storage).toMatchObject({
        driver: 's3',
        s3: { endpoint: 'http://minio:9000', bucket: 'evidence', forcePathStyle: true },
      });
      expect(cfg.database.url).toBe('postgres://postgres:evidence@postgres:5432/evidence');
      expect(cfg.database.appUrl).toBe(
        'postgres://evidence_service:evidence-app@postgres:5432/evidence',
      );
      expect([cfg.host, cfg.port, cfg.dataDir]).toEqual(['0.0.0.0', 8080, '/data']);
      expect(SigningKey.fromPem(cfg.custody.signingKeyPem!).fingerprint).toBe(key.fingerprint);
    }
    // Without CUSTODY_SIGNING_KEY the key file is created under DATA_DIR, i.e. on the volume.
    const c = config(example.text);
    const cfg = loadConfig({ ...imageEnv(), ...c.services.archive!.environment });
    expect(cfg.custody.signingKeyFile).toBe('/data/custody/signing-key.pem');
  });

  it('keeps /data on a named volume the container user can write', () => {
    const c = config(example.text);
    const mounts = c.services.archive!.volumes!.map((v) =>
      typeof v === 'string' ? { source: v.split(':')[0], target: v.split(':')[1] } : v,
    );
    const data = mounts.find((m) => m.target === '/data');
    expect(data?.source).toMatch(/^[a-z0-9][a-z0-9_.-]*$/); // a name, not a host path
    expect(Object.keys(c.volumes ?? {})).toContain(data!.source);
    expect(c.volumes![data!.source!]?.external).toBeFalsy();
    // A new named volume takes the owner of the image's /data: the user the service runs as.
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    const user = /^USER (\S+)$/m.exec(runtime)?.[1];
    expect(user).toBeDefined();
    expect(runtime).toMatch(new RegExp(`chown ${user}:${user} /data\\b`));
    expect(imageEnv().DATA_DIR).toBe('/data');
  });

  it('pins every image', () => {
    const c = config(example.text);
    for (const [name, service] of Object.entries(c.services)) {
      if (service.build) continue;
      expect([name, service.image]).toEqual([name, expect.stringMatching(/^[^:@]+(:|@)/)]);
      const tag = service.image!.split(':')[1] ?? '';
      expect([name, tag]).not.toEqual([name, 'latest']);
      expect([name, tag]).toEqual([name, expect.stringMatching(/^(\d+\.\d+|RELEASE\.[\dT-]+Z)/)]);
    }
    for (const [, image] of dockerfile.matchAll(/^FROM (\S+)/gm)) {
      expect(image).toMatch(/:(?!latest)[^:]+$/);
    }
  });

  it('creates the bucket with object locking when S3_OBJECT_LOCK_MODE is set, and without otherwise', () => {
    /** Runs minio-init's rendered script with its rendered environment, `mc` logging its arguments. */
    const mbOf = (dotenv: string) => {
      const init = config(dotenv).services['minio-init']! as Service & {
        entrypoint?: string[];
        command?: string[] | string;
      };
      expect(init.entrypoint).toEqual(['/bin/sh', '-c']);
      const script = [init.command].flat()[0]!.replace(/\$\$/g, '$');
      const bin = mkdtempSync(path.join(tmpdir(), 'fake-mc-'));
      dirs.push(bin);
      const log = path.join(bin, 'log');
      writeFileSync(path.join(bin, 'mc'), `#!/bin/sh\necho "$*" >> ${log}\n`, { mode: 0o755 });
      const r = spawnSync('/bin/sh', ['-c', script], {
        env: { ...init.environment, PATH: `${bin}:${bareEnv.PATH}` },
        encoding: 'utf8',
      });
      expect([r.status, r.stderr]).toEqual([0, '']);
      return readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('mb '));
    };
    const locked = `${example.text}\nS3_BUCKET=locked-bucket\nS3_OBJECT_LOCK_MODE=COMPLIANCE\nS3_OBJECT_LOCK_RETENTION_DAYS=3650\n`;
    const init = config(locked).services['minio-init']!;
    expect(init.environment).toMatchObject({
      S3_OBJECT_LOCK_MODE: 'COMPLIANCE',
      S3_OBJECT_LOCK_RETENTION_DAYS: '3650',
    });
    expect(mbOf(locked)).toEqual(['mb --ignore-existing --with-lock archive/locked-bucket']);
    expect(mbOf(example.text)).toEqual(['mb --ignore-existing archive/evidence']);
  });

  it('lets MinIO keep a multipart upload longer than any resumable upload may live', () => {
    const c = config(uncommented(example));
    const hours = goDurationHours(c.services.minio!.environment!.MINIO_API_STALE_UPLOADS_EXPIRY!);
    const tus = Number(c.services.archive!.environment!.RESUMABLE_UPLOAD_EXPIRY_HOURS);
    expect(tus).toBeGreaterThan(0);
    expect(hours).toBeGreaterThan(tus);
    // Not only the default: the service refuses any expiry MinIO would cut short.
    expect(() => loadConfig({ RESUMABLE_UPLOAD_EXPIRY_HOURS: String(Math.floor(hours)) })).toThrow(
      /RESUMABLE_UPLOAD_EXPIRY_HOURS/,
    );
  });

  describe('health checks', () => {
    let app: TestApp;
    beforeAll(async () => {
      app = await startTestApp('fs');
    });
    afterAll(() => app?.close());

    it('has one for every long-running service; the archive asks /healthz with node', () => {
      const c = config(example.text);
      const oneShot = new Set(
        Object.values(c.services).flatMap((s) =>
          Object.entries(s.depends_on ?? {})
            .filter(([, d]) => d.condition === 'service_completed_successfully')
            .map(([n]) => n),
        ),
      );
      for (const [name, service] of Object.entries(c.services)) {
        if (oneShot.has(name)) continue;
        expect([name, service.healthcheck?.disable ?? false]).toEqual([name, false]);
        expect([name, Array.isArray(service.healthcheck?.test)]).toEqual([name, true]);
      }
      const test = c.services.archive!.healthcheck!.test as string[];
      expect(test.slice(0, 2)).toEqual(['CMD', 'node']); // node:*-slim has no curl or wget
      expect(dockerfile.slice(dockerfile.lastIndexOf('\nFROM '))).toMatch(/^\nFROM node:/);
      expect(test.join(' ')).toContain('http://127.0.0.1:8080/healthz');
    });

    it("the archive's check passes against the real service and fails when nothing answers", async () => {
      const c = config(example.text);
      const [, , ...args] = c.services.archive!.healthcheck!.test as string[];
      const port = new URL(app.url).port;
      // Asynchronously: the service answers from this process.
      const against = (p: string) =>
        new Promise<number | null>((resolve) => {
          const child = spawn(
            process.execPath,
            args.map((a) => a.replace('127.0.0.1:8080', `127.0.0.1:${p}`)),
            { stdio: 'ignore', timeout: 10_000 },
          );
          child.on('exit', (code) => resolve(code));
        });
      expect(await against(port)).toBe(0);
      expect(await against('1')).toBe(1);
    });
  });

  it("runs docs/operations.md's Docker commands as written where no engine is needed", () => {
    const readme = readFileSync(path.join(ROOT, 'docs', 'operations.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Production-like setup with Docker'));
    const snippet = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
    const lines = snippet.trim().split('\n');
    const dir = project();
    const done: string[] = [];
    for (const line of lines) {
      // docs/operations.md shows `docker compose`; Debian's docker-compose 1.x takes the same arguments.
      const words = line.replace(/^docker compose /, 'docker-compose ').split(/\s+/);
      if (words[0] === 'cp' || (words[0] === 'docker-compose' && words[1] === 'config')) {
        run(dir, words[0], words.slice(1));
        done.push(words.slice(0, 2).join(' '));
      } else if (words[0] === 'docker-compose' && words[1] === 'up') {
        expect(words.slice(2)).toEqual(['--build', '-d']);
      } else if (words[0] === 'docker-compose' && words[1] === 'exec') {
        // Needs a running container: check what it names exists.
        const services = run(dir, 'docker-compose', ['config', '--services']).trim().split('\n');
        expect(services).toContain(words[2]);
        expect(words[3]).toBe('node');
        const source = words[4]!.replace(/^dist\//, '').replace(/\.js$/, '.ts');
        expect(readFileSync(path.join(ROOT, source), 'utf8')).toContain('create');
      } else {
        throw new Error(
          `docs/operations.md's Docker snippet has a command this test does not check: ${line}`,
        );
      }
    }
    expect(done).toEqual(['cp .env.example', 'docker-compose config']);
  });
});

const noOwnPostgres = ownPostgresUnavailable();
if (noOwnPostgres && inCI)
  throw new Error(`the compose init step must be tested in CI: ${noOwnPostgres}`);

/**
 * The bundled PostgreSQL's init step (docker/postgres-init, run by the postgres image on an empty
 * volume), run as the image runs it, with psql, against a real PostgreSQL this test starts: the
 * service then migrates as the owner and runs as the login it made.
 */
(noOwnPostgres ? describe.skip : describe)('docker-compose.yml: the app login', () => {
  let db: OwnPostgres;
  beforeAll(async () => {
    db = await startOwnPostgres();
  });
  afterAll(async () => {
    await db?.destroy();
  });

  it('makes a login that owns nothing and holds evidence_app; the service migrates as the owner and runs as it', async () => {
    const c = config(example.text);
    const composeEnv = c.services.postgres!.environment!;
    const mount = c.services.postgres!.volumes!.find((v) =>
      String(typeof v === 'string' ? v : (v as { target: string }).target).includes(
        '/docker-entrypoint-initdb.d',
      ),
    );
    expect(mount).toBeDefined();
    execFileSync('sh', [path.join(ROOT, 'docker/postgres-init/10-app-login.sh')], {
      env: {
        ...process.env,
        PGHOST: '127.0.0.1',
        PGPORT: String(db.port),
        POSTGRES_USER: 'postgres',
        POSTGRES_DB: 'postgres',
        POSTGRES_APP_PASSWORD: composeEnv.POSTGRES_APP_PASSWORD!,
      },
      stdio: 'pipe',
    });
    const appUrl = `postgres://evidence_service:${composeEnv.POSTGRES_APP_PASSWORD}@127.0.0.1:${db.port}/postgres`;
    const dataDir = mkdtempSync(path.join(tmpdir(), 'compose-login-'));
    dirs.push(dataDir);
    const ctx = await AppContext.fromConfig(
      loadConfig({ DATABASE_URL: db.url, APP_DATABASE_URL: appUrl, DATA_DIR: dataDir }),
      { migrate: true, mediaTools: false },
      { logger: createLogger('silent') },
    );
    try {
      const reach = await loginReach(ctx.db);
      expect(reach).toEqual({
        login: 'evidence_service',
        superuser: false,
        owner: false,
        holdsRole: true,
      });
      // It works as the app: a key minted, an audit event appended.
      const key = await ctx.apiKeys.create('support', 'compose');
      expect(await ctx.apiKeys.authenticate(key.key)).toMatchObject({ role: 'support' });
    } finally {
      await ctx.close();
    }
  });
});
