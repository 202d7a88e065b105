import path from 'node:path';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_FLAGS, haveBrowser } from '../support/chromium';
import { bearer, startTestApp, type TestApp, itemView } from '../support/harness';
import { fakeMedia, sha256 } from '../support/media';
import { docShows } from '../support/readme';

/**
 * docs/integrations.md's Uppy example (examples/uppy/upload.js, shown verbatim) with the real @uppy/core and
 * @uppy/tus from node_modules, bundled by esbuild, in Debian's Chromium driven by playwright-core,
 * against the real service. The page is served at the service's own origin (playwright answers
 * its two made-up paths), so this needs no CORS.
 */
const EXAMPLE = path.resolve(__dirname, '..', '..', 'examples', 'uppy', 'upload.js');
const PAGE = '/__uppy-example';

if (!haveBrowser && !process.env.CI) {
  console.warn(
    `tests/e2e/uppy.test.ts skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH). In CI this fails instead.`,
  );
}

jest.setTimeout(120_000);

(haveBrowser || process.env.CI ? describe : describe.skip)('Uppy in Chromium', () => {
  let app: TestApp;
  let browser: Browser;
  let script: string;

  beforeAll(async () => {
    if (!haveBrowser) {
      throw new Error(`No Chromium at ${CHROMIUM}: CI must install it (apt-get install chromium).`);
    }
    app = await startTestApp('fs');
    // The example as written; its page's two settings are what the page would define.
    const bundled = await build({
      entryPoints: [EXAMPLE],
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'chrome110',
      write: false,
      logLevel: 'silent',
      define: {
        EVIDENCE_URL: JSON.stringify(app.url),
        INGEST_KEY: JSON.stringify(app.keys.ingest.key),
      },
    });
    script = bundled.outputFiles[0]!.text;
    const { chromium } = await import('playwright-core');
    // headless: false so that Playwright adds no headless flag of its own: --headless is ours.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: false,
      args: CHROMIUM_FLAGS,
    });
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  /** A fresh page with the example loaded; resolves with what it logged once a line matches. */
  async function pick(
    file: { name: string; mimeType: string; buffer: Buffer },
    done: RegExp,
  ): Promise<{ lines: string[]; metadata: string[]; page: Page }> {
    const page = await browser.newPage();
    const lines: string[] = [];
    const metadata: string[] = [];
    page.on('console', (msg) => lines.push(`${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => lines.push(`pageerror: ${err.message}`));
    page.on('request', (req) => {
      const meta = req.headers()['upload-metadata'];
      if (req.method() === 'POST' && meta) metadata.push(meta);
    });
    await page.route(`${app.url}${PAGE}/**`, (route) => {
      const url = new URL(route.request().url());
      if (url.pathname === `${PAGE}/upload.js`) {
        return route.fulfill({ contentType: 'text/javascript', body: script });
      }
      return route.fulfill({
        contentType: 'text/html',
        body: `<!doctype html><meta charset="utf-8"><title>station</title><input type="file"><script type="module" src="${PAGE}/upload.js"></script>`,
      });
    });
    await page.goto(`${app.url}${PAGE}/index.html`);
    await page.setInputFiles('input[type=file]', file);
    const until = Date.now() + 60_000;
    while (!lines.some((l) => done.test(l))) {
      if (Date.now() > until) throw new Error(`no ${done} in:\n${lines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return { lines, metadata, page };
  }

  it('is in docs/integrations.md verbatim', () => {
    expect(docShows('docs/integrations.md', EXAMPLE)).toBe(true);
  });

  it('uploads a clip with its kind and order, with default options, and the archived SHA-256 matches', async () => {
    const clip = fakeMedia('mp4', 3 * 1024 * 1024 + 777);
    const { lines, metadata, page } = await pick(
      { name: 'bench-3.mp4', mimeType: 'video/mp4', buffer: clip },
      /archived as|error/,
    );
    await page.close();
    const itemId = /bench-3\.mp4: archived as ([0-9a-f-]{36})/.exec(lines.join('\n'))?.[1];
    expect({ itemId, lines }).toEqual({ itemId: expect.any(String), lines: expect.any(Array) });
    // Uppy sent its habits along with the fields (name, type, and their filename/filetype copies).
    const keys = metadata[0]!.split(',').map((pair) => pair.split(' ')[0]);
    expect(keys).toEqual(expect.arrayContaining(['kind', 'orderId', 'name', 'type', 'filename']));
    const item = await itemView(app, itemId!);
    expect(item).toMatchObject({
      sha256: sha256(clip),
      size: clip.length,
      kind: 'packing_video',
      contentType: 'video/mp4',
      originalFilename: 'bench-3.mp4',
    });
    const order = await fetch(`${app.url}/v1/orders/ORD-1001/evidence`, {
      headers: bearer(app.keys.support),
    }).then((r) => r.json());
    expect(JSON.stringify(order)).toContain(itemId);
  });

  it('trusts the bytes, not the type Uppy reports: a recording named clip.mp4 is refused', async () => {
    const { lines, page } = await pick(
      { name: 'clip.mp4', mimeType: 'video/mp4', buffer: fakeMedia('wav', 200_000) },
      /error: clip\.mp4/,
    );
    await page.close();
    expect(lines.join('\n')).toMatch(/415/);
    expect(lines.join('\n')).toContain('unsupported_media_type');
    expect(lines.join('\n')).not.toMatch(/archived as/);
  });
});
