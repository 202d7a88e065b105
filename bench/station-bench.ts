/**
 * The packing station part of `npm run bench` (BENCH_ONLY=station): the station page in Debian's
 * Chromium with a fake 720p camera (ffmpeg's testsrc2, which Chromium loops) records clips of
 * BENCH_STATION_SECONDS one after another, as a packer scanning the next order would, against a
 * fresh service (disk driver). For each clip: the time from its closing scan until the archive
 * lists it under its order (polled every 50 ms with a support key), that is, until the station's
 * upload was acknowledged. Prints each clip and the distribution; the target is under 5 s.
 *
 *   BENCH_STATION_CLIPS (10), BENCH_STATION_SECONDS (60), CHROMIUM_PATH (/usr/bin/chromium)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import path from 'node:path';
import type { PushBenchDeps } from './push-bench';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const CLIPS = env('BENCH_STATION_CLIPS', 10);
const SECONDS = env('BENCH_STATION_SECONDS', 60);
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number) => (n / 1000).toFixed(2);

export async function benchStation(deps: PushBenchDeps): Promise<void> {
  console.log(
    `\n== packing station: ${CLIPS} clips of ${SECONDS} s at 1280x720 recorded in Chromium, from closing scan to archived`,
  );
  if (!existsSync(CHROMIUM)) {
    console.log(`skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or CHROMIUM_PATH)`);
    return;
  }
  const database = await deps.createScratch(deps.adminUrl);
  const dataDir = mkdtempSync(path.join(deps.work, 'data-'));
  const service = await deps.startService({ DATABASE_URL: database.url, DATA_DIR: dataDir });
  const ingest = await deps.mintKey(database.url, 'ingest');
  const support = await deps.mintKey(database.url, 'support');
  const camera = path.join(deps.work, 'camera.y4m');
  execFileSync('ffmpeg', [
    ...['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30'],
    ...['-t', '2', '-pix_fmt', 'yuv420p', camera],
  ]);
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: false,
    args: [
      ...['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-video-capture=${camera}`,
    ],
  });
  const closedAt = new Map<string, number>();
  const archivedAt = new Map<string, number>();
  let polling = true;
  const poller = (async () => {
    while (polling || archivedAt.size < closedAt.size) {
      for (const order of closedAt.keys()) {
        if (archivedAt.has(order)) continue;
        const res = await fetch(`${service.url}/v1/orders/${order}/evidence`, {
          headers: { Authorization: `Bearer ${support}` },
        });
        const body = (await res.json()) as { items: unknown[] };
        if (body.items.length) archivedAt.set(order, Date.now());
      }
      await sleep(50);
    }
  })();
  try {
    const page = await browser.newPage();
    page.on('pageerror', (err) => console.log(`page error: ${err.message}`));
    await page.goto(`${service.url}/station/`);
    await page.fill('#key', ingest);
    await page.click('button[type=submit]');
    await page.locator('#camera').getByText('1280×720').waitFor({ timeout: 30_000 });
    const scan = async (code: string) => {
      await page.keyboard.type(code);
      await page.keyboard.press('Enter');
      return Date.now();
    };
    const orders = Array.from({ length: CLIPS }, (_, i) => `BENCH-ST-${i + 1}`);
    for (const [i, order] of orders.entries()) {
      const at = await scan(order);
      if (i > 0) closedAt.set(orders[i - 1]!, at);
      await sleep(SECONDS * 1000);
    }
    await page.keyboard.press('Escape');
    closedAt.set(orders[orders.length - 1]!, Date.now());
    polling = false;
    const until = Date.now() + 120_000;
    while (archivedAt.size < closedAt.size && Date.now() < until) await sleep(100);
    const latencies = orders.map((order) => {
      const ms = (archivedAt.get(order) ?? NaN) - closedAt.get(order)!;
      console.log(`${order}  ${Number.isNaN(ms) ? 'not archived within 120 s' : `${fmt(ms)} s`}`);
      return ms;
    });
    const sorted = latencies.filter((ms) => !Number.isNaN(ms)).sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
    if (sorted.length) {
      console.log(
        `closing scan to archived: min ${fmt(sorted[0]!)} s, median ${fmt(at(0.5))} s, p90 ${fmt(at(0.9))} s, max ${fmt(sorted[sorted.length - 1]!)} s over ${sorted.length} of ${CLIPS} clips (target < 5 s)`,
      );
    }
  } finally {
    polling = false;
    await browser.close();
    await poller.catch(() => undefined);
    await service.stop();
    await database.drop();
  }
}
