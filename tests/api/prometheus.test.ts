import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from '../support/env-example';
import { startTestApp, type TestApp } from '../support/harness';
import { freePort } from '../support/own-postgres';
import { waitFor } from '../support/service-process';

/**
 * docs/operations.md's Prometheus scrape config, as written: checked by promtool, then used by a real
 * Prometheus (Debian's `prometheus` package ships both) to scrape the real service.
 */
const haveProm =
  spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0 &&
  spawnSync('prometheus', ['--version'], { stdio: 'ignore' }).status === 0;
const inCI = process.env.CI === 'true';
if (!haveProm && !inCI) {
  console.warn(
    'tests/api/prometheus.test.ts skipped: no promtool/prometheus (apt-get install prometheus). In CI this fails instead.',
  );
}

const TOKEN = 'metrics-token-0123456789abcdef';

function readmeSnippet(): string {
  const readme = readFileSync(path.join(ROOT, 'docs', 'operations.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Scraping with Prometheus'));
  return /```yaml\n([\s\S]*?)```/.exec(section)![1]!;
}

interface Target {
  labels: { job: string };
  health: 'up' | 'down' | 'unknown';
  lastError: string;
}

(haveProm || inCI ? describe : describe.skip)(
  "docs/operations.md's Prometheus scrape config",
  () => {
    let app: TestApp;
    let dir: string;
    let prometheus: ChildProcess | undefined;
    let promUrl: string;

    beforeAll(async () => {
      if (!haveProm)
        throw new Error('promtool and prometheus are required in CI: apt-get install prometheus');
      app = await startTestApp('fs', { METRICS_TOKEN: TOKEN });
      dir = mkdtempSync(path.join(tmpdir(), 'evidence-prometheus-'));
    });
    afterAll(async () => {
      if (prometheus && prometheus.exitCode === null) {
        const exited = new Promise((r) => prometheus!.once('exit', r));
        prometheus.kill('SIGTERM');
        await exited;
      }
      await app?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('passes promtool check config as written', () => {
      writeFileSync(path.join(dir, 'prometheus.yml'), readmeSnippet());
      writeFileSync(path.join(dir, 'evidence-metrics-token'), TOKEN);
      const r = spawnSync('promtool', ['check', 'config', 'prometheus.yml'], {
        cwd: dir,
        encoding: 'utf8',
      });
      expect([r.status, r.stdout + r.stderr]).toEqual([0, expect.stringContaining('SUCCESS')]);
    });

    it('scrapes the service with METRICS_TOKEN; the same job with another token is refused', async () => {
      const snippet = readmeSnippet();
      const target = `['${new URL(app.url).host}']`;
      const job = snippet.slice(snippet.indexOf('  - job_name:'));
      const config =
        'global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n' +
        snippet.replace(/targets: \[[^\]]*\]/, `targets: ${target}`) +
        job
          .replace(/job_name: \S+/, 'job_name: wrong-token')
          .replace(/credentials_file: \S+/, 'credentials_file: wrong-token')
          .replace(/targets: \[[^\]]*\]/, `targets: ${target}`);
      writeFileSync(path.join(dir, 'test.yml'), config);
      writeFileSync(path.join(dir, 'evidence-metrics-token'), TOKEN);
      writeFileSync(path.join(dir, 'wrong-token'), 'x'.repeat(TOKEN.length));
      const port = await freePort();
      promUrl = `http://127.0.0.1:${port}`;
      let log = '';
      prometheus = spawn(
        'prometheus',
        [
          `--config.file=${path.join(dir, 'test.yml')}`,
          `--storage.tsdb.path=${path.join(dir, 'tsdb')}`,
          `--web.listen-address=127.0.0.1:${port}`,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      prometheus.stdout!.on('data', (c: Buffer) => (log += c.toString()));
      prometheus.stderr!.on('data', (c: Buffer) => (log += c.toString()));
      const targets = async () => {
        // Until it is ready (socket refused, or 503 "Service Unavailable" as plain text): not yet.
        const body = (await fetch(`${promUrl}/api/v1/targets`).then(
          (r) => (r.ok ? r.json() : undefined),
          () => undefined,
        )) as { data: { activeTargets: Target[] } } | undefined;
        const list = body?.data.activeTargets ?? [];
        return list.length === 2 && list.every((t) => t.health !== 'unknown') ? list : undefined;
      };
      const list = await waitFor('Prometheus to scrape both jobs', targets, 60_000).catch((err) => {
        throw new Error(`${String(err)}\n${log}`);
      });
      const byJob = Object.fromEntries(list.map((t) => [t.labels.job, t]));
      expect(byJob['evidence-archive']).toMatchObject({ health: 'up', lastError: '' });
      expect(byJob['wrong-token']).toMatchObject({ health: 'down' });
      expect(byJob['wrong-token']!.lastError).toMatch(/401/);
      // The series docs/operations.md lists arrive.
      const query = async (q: string) =>
        (
          (await (
            await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`)
          ).json()) as {
            data: { result: { metric: Record<string, string> }[] };
          }
        ).data.result;
      const items = await query('evidence_items{job="evidence-archive"}');
      expect(items.map((r) => r.metric.state).sort()).toEqual(
        expect.arrayContaining(['archived', 'deleted']),
      );
      expect(await query('legal_holds_active{job="evidence-archive"}')).toHaveLength(1);
    });

    it('serves metrics that promtool check metrics accepts', async () => {
      const res = await fetch(`${app.url}/metrics`, {
        headers: { Authorization: `Bearer ${TOKEN}` },
      });
      expect(res.status).toBe(200);
      const text = await res.text();
      const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      expect([r.status, r.stdout + r.stderr]).toEqual([0, '']);
    });
  },
);
