import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * .ci/run installs Debian's prometheus (for promtool and docs/operations.md's scrape config test); on a
 * host without policy-rc.d the package starts its daemon on :9090. The script stops and disables
 * it right after the install, and a host without systemd (or with no daemon running) does not
 * fail CI. Run here as root would run it, with apt-get, systemctl and pkill replaced by stubs that
 * log their arguments (and fail, as they do on a host without systemd or without the daemon), up
 * to the Chromium check, which ends it.
 */
const ROOT = path.resolve(__dirname, '..', '..');

describe('.ci/run', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ci-run-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('stops the prometheus daemon the package started, without failing where that is not possible', () => {
    mkdirSync(path.join(dir, '.ci'));
    copyFileSync(path.join(ROOT, '.ci/run'), path.join(dir, '.ci/run'));
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    const log = path.join(dir, 'log');
    const stub = (name: string, body: string) => {
      writeFileSync(path.join(bin, name), `#!/bin/sh\necho "${name} $*" >> ${log}\n${body}\n`);
      chmodSync(path.join(bin, name), 0o755);
    };
    stub('id', 'echo 0');
    stub('apt-get', 'exit 0');
    stub('ffmpeg', 'echo "ffmpeg version stub"');
    stub('systemctl', 'echo "System has not been booted with systemd" >&2; exit 1');
    stub('pkill', 'exit 1');
    const r = spawnSync('bash', [path.join(dir, '.ci/run')], {
      env: {
        PATH: `${bin}:/usr/bin:/bin`,
        HOME: dir,
        CHROMIUM_PATH: path.join(dir, 'no-chromium'),
      },
      encoding: 'utf8',
    });
    const calls = readFileSync(log, 'utf8').trim().split('\n');
    const installed = calls.findIndex((c) => /^apt-get install .*\bprometheus\b/.test(c));
    expect(installed).toBeGreaterThanOrEqual(0);
    const after = calls.slice(installed + 1);
    expect(after).toContain('systemctl disable --now prometheus');
    expect(after).toContainEqual(expect.stringMatching(/^pkill .*-x .*prometheus$/));
    // Neither failure ended the script: it went on to the Chromium check, which ended it.
    expect(r.stdout).toContain(`no Chromium at ${path.join(dir, 'no-chromium')}`);
    expect(r.status).toBe(1);
  });
});
