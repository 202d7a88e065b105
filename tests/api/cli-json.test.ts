import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readDoc } from '../support/readme';
import { createTestDatabase } from '../support/test-db';

/**
 * The README mints keys with `KEY=$(npm run keys -- create ... --json | jq -r .key)`: the CLI's
 * --json output must be the only thing on stdout however it is invoked (npm 11 prints its
 * "> name@version script" banner on stdout unless its log level is silent: the project's .npmrc
 * sees to that), and a CLI must not rebuild the project when nothing changed.
 */
const ROOT = path.resolve(__dirname, '..', '..');

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let dataDir: string;

/** The environment of a shell: none of the npm_config_* a parent `npm test` would pass down. */
function shellEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_/i.test(k)) env[k] = v;
  }
  return { ...env, DATABASE_URL: db.url, DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
}

function run(command: string, args: string[], env = shellEnv()) {
  const r = spawnSync(command, args, { cwd: ROOT, env, encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${r.status}:\n${r.stderr}${r.stdout}`);
  }
  return r;
}

beforeAll(async () => {
  // The build `npm ci` leaves (prepare); here it runs only if the sources changed since.
  db = await createTestDatabase();
  dataDir = mkdtempSync(path.join(tmpdir(), 'evidence-cli-json-'));
  run(process.execPath, [path.join(ROOT, 'scripts', 'ensure-built.mjs')]);
}, 300_000);

afterAll(async () => {
  await db?.drop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('the CLIs print clean JSON on stdout', () => {
  it('npm run keys -- create --json (no -s): stdout is exactly the minted key as JSON', () => {
    const r = run('npm', [
      'run',
      'keys',
      '--',
      'create',
      '--role',
      'ingest',
      '--name',
      'PK-03',
      '--json',
    ]);
    const minted = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(minted).sort()).toEqual(['id', 'key', 'name', 'role']);
    expect(minted).toMatchObject({ role: 'ingest', name: 'PK-03' });
    expect(minted.key).toMatch(/^eak_[0-9a-f]+_\S+$/);
    // Nothing was rebuilt: ensure-built says so on stderr when it builds.
    expect(r.stderr).not.toMatch(/building/);
  });

  it('npm run -s keys and node on the built file print the same kind of JSON', () => {
    const silent = JSON.parse(
      run('npm', [
        'run',
        '-s',
        'keys',
        '--',
        'create',
        '--role',
        'support',
        '--name',
        'Ana',
        '--json',
      ]).stdout,
    ) as { role: string };
    expect(silent.role).toBe('support');
    const direct = JSON.parse(
      run(process.execPath, [
        'dist/src/cli/keys.cli.js',
        'create',
        '--role',
        'admin',
        '--name',
        'Lee',
        '--json',
      ]).stdout,
    ) as { role: string };
    expect(direct.role).toBe('admin');
  });

  it('npm run keys -- list --json lists every key as one JSON array', () => {
    const keys = JSON.parse(run('npm', ['run', 'keys', '--', 'list', '--json']).stdout) as {
      name: string;
    }[];
    expect(keys.map((k) => k.name).sort()).toEqual(['Ana', 'Lee', 'PK-03']);
  });
});

describe("docs/api.md's keys commands", () => {
  it('run as written: mint, list, mint as JSON and revoke', () => {
    const page = readDoc('docs/api.md');
    const marker = page.indexOf('<!-- run as written by tests/api/cli-json.test.ts -->');
    expect(marker).toBeGreaterThan(0);
    const block = /```sh\n([\s\S]*?)```/.exec(page.slice(marker))![1]!;
    const { stdout } = run('bash', ['-euo', 'pipefail', '-c', block]);
    expect(stdout).toMatch(/^Created ingest key "PK-04" \(id [0-9a-f]+\)\./m);
    expect(stdout).toMatch(/^[0-9a-f]+ +ingest +active +PK-04$/m);
    expect(stdout).toMatch(/^Revoked key [0-9a-f]+\.$/m);
    const keys = JSON.parse(run('npm', ['run', 'keys', '--', 'list', '--json']).stdout) as {
      name: string;
      revoked_at: string | null;
    }[];
    expect(keys.find((k) => k.name === 'Temp')?.revoked_at).toEqual(expect.any(String));
  });
});
