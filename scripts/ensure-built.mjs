// Builds the project only when its sources changed since the last build: `npm start`, the worker
// and every CLI run this first, so a start with nothing changed costs a few stat calls, not a
// compile. The stamp (dist/.build-stamp) is a hash of every input's path, size and mtime; tsc is
// incremental (dist/tsconfig.build.tsbuildinfo), so a stale build recompiles only what changed.
// Everything this prints goes to stderr: a CLI's --json output stays clean JSON on stdout.
// `--force` builds whatever the stamp says (`npm run build`).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  openSync,
  closeSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const stampFile = path.join(dist, '.build-stamp');
const lockFile = path.join(dist, '.build-lock');

/** What the build reads: tsconfig.build.json's inputs, the web app, and the build's own config. */
const INPUTS = [
  'src',
  'migrations',
  'bench',
  'web',
  'tests/support/s3-server.ts',
  'tests/support/s3rver.d.ts',
  'tests/support/test-db.ts',
  'tsconfig.json',
  'tsconfig.build.json',
  'scripts/build-web.mjs',
  'scripts/ensure-built.mjs',
  'package-lock.json',
];
/** What a finished build leaves: without these the stamp is not trusted. */
const OUTPUTS = ['dist/src/main.js', 'dist/web/assets.json', 'dist/station/assets.json'];

function listFiles(rel, out) {
  const abs = path.join(root, rel);
  let st;
  try {
    st = statSync(abs);
  } catch {
    return;
  }
  if (st.isDirectory()) {
    for (const name of readdirSync(abs).sort()) listFiles(path.join(rel, name), out);
  } else {
    out.push(`${rel}\0${st.size}\0${st.mtimeMs}`);
  }
}

function fingerprint() {
  const files = [];
  for (const rel of INPUTS) listFiles(rel, files);
  return createHash('sha256').update(files.join('\n')).digest('hex');
}

function fresh(stamp) {
  if (!OUTPUTS.every((f) => existsSync(path.join(root, f)))) return false;
  try {
    return readFileSync(stampFile, 'utf8').trim() === stamp;
  } catch {
    return false;
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** One build at a time: `npm start` and `npm run worker` started together must not both compile. */
function lock() {
  mkdirSync(dist, { recursive: true });
  for (;;) {
    try {
      closeSync(openSync(lockFile, 'wx'));
      writeFileSync(lockFile, String(process.pid));
      return;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      const holder = Number(readFileSync(lockFile, 'utf8') || 0);
      if (holder && !alive(holder)) rmSync(lockFile, { force: true });
      else sleep(200);
    }
  }
}

function run(args) {
  // stdout of the build tools goes to stderr too: callers may be piping a CLI's JSON.
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 2, 2] });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const force = process.argv.includes('--force');
if (force || !fresh(fingerprint())) {
  lock();
  try {
    // Taken before building: a source saved during the build makes the next run build again.
    const stamp = fingerprint();
    if (force || !fresh(stamp)) {
      const started = Date.now();
      if (!force) process.stderr.write('evidence-archive: sources changed, building...\n');
      rmSync(stampFile, { force: true });
      const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
      run([tsc, '-p', 'tsconfig.build.json']);
      run([path.join(root, 'scripts', 'build-web.mjs')]);
      writeFileSync(stampFile, `${stamp}\n`);
      if (!force) process.stderr.write(`evidence-archive: built in ${Date.now() - started} ms\n`);
    }
  } finally {
    rmSync(lockFile, { force: true });
  }
}
