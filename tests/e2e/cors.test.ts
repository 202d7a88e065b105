import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { startTestApp, type TestApp } from '../support/harness';

/**
 * CORS as a browser enforces it (Debian's Chromium driven by playwright-core): a page of an origin
 * listed in CORS_ORIGINS calls the API on another origin; a page of an unlisted origin cannot.
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveBrowser = existsSync(CHROMIUM);

jest.setTimeout(120_000);

/** A site of its own (its own port, so its own origin) serving one empty page. */
async function site(): Promise<{ origin: string; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' }).end('<!doctype html><title>site</title>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

interface Outcome {
  status?: number;
  code?: string;
  role?: string;
  location?: string | null;
  tusResumable?: string | null;
  error?: string;
}

/** Runs fetch in the page: what its script can see of the answer, or the error it gets. */
function call(
  page: Page,
  url: string,
  init: { method?: string; headers?: Record<string, string>; credentials?: 'include' },
): Promise<Outcome> {
  return page.evaluate(
    async ({ url, init }) => {
      try {
        const res = await fetch(url, init);
        const type = res.headers.get('content-type') ?? '';
        const body = (type.includes('json') ? await res.json() : {}) as Record<string, string>;
        return {
          status: res.status,
          code: body.code,
          role: body.role,
          location: res.headers.get('location'),
          tusResumable: res.headers.get('tus-resumable'),
        };
      } catch (err) {
        return { error: String(err) };
      }
    },
    { url, init },
  );
}

(haveBrowser || process.env.CI ? describe : describe.skip)('CORS in Chromium', () => {
  let app: TestApp;
  let listed: Awaited<ReturnType<typeof site>>;
  let unlisted: Awaited<ReturnType<typeof site>>;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    if (!haveBrowser) throw new Error(`No Chromium at ${CHROMIUM}: CI must install it.`);
    listed = await site();
    unlisted = await site();
    app = await startTestApp('fs', { CORS_ORIGINS: listed.origin });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: false, // --headless is ours, as in web-app.test.ts
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    page = await (await browser.newContext()).newPage();
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await listed?.close();
    await unlisted?.close();
  });

  const key = () => ({ Authorization: `Bearer ${app.keys.ingest.key}` });
  const tusCreate = () => ({
    method: 'POST',
    headers: {
      ...key(),
      'Tus-Resumable': '1.0.0',
      'Upload-Length': '70000',
      'Upload-Metadata': `kind ${Buffer.from('packing_video').toString('base64')}`,
    },
  });

  it('lets a listed origin’s page call the API with its key and read the answer', async () => {
    await page.goto(`${listed.origin}/`);
    expect(await call(page, `${app.url}/v1/me`, { headers: key() })).toMatchObject({
      status: 200,
      role: 'ingest',
    });
    // A refusal is readable too (the page can tell a bad key from a network failure).
    expect(await call(page, `${app.url}/v1/me`, {})).toMatchObject({
      status: 401,
      code: 'unauthorized',
    });
    // A tus creation, preflighted for its headers, with the headers a tus client reads.
    const created = await call(page, `${app.url}/v1/uploads`, tusCreate());
    expect(created).toMatchObject({ status: 201, tusResumable: '1.0.0' });
    expect(created.location).toMatch(/^\/v1\/uploads\/[0-9a-f]+$/);
  });

  it('lets a listed origin’s page send Content-Digest and the date preconditions (preflighted)', async () => {
    await page.goto(`${listed.origin}/`);
    for (const [name, value] of [
      ['Content-Digest', 'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:'],
      ['If-Modified-Since', 'Thu, 01 Jan 1970 00:00:00 GMT'],
      ['If-Unmodified-Since', 'Fri, 31 Dec 9999 23:59:59 GMT'],
    ] as const) {
      const res = await call(page, `${app.url}/v1/me`, { headers: { ...key(), [name]: value } });
      expect({ name, ...res }).toMatchObject({ name, status: 200, role: 'ingest' });
    }
  });

  it('never lets a page send or use credentials (the session cookie) across origins', async () => {
    await page.goto(`${listed.origin}/`);
    const res = await call(page, `${app.url}/v1/me`, { credentials: 'include' });
    expect(res.error).toMatch(/TypeError/);
  });

  it('gives an unlisted origin’s page nothing: every call fails in the browser', async () => {
    await page.goto(`${unlisted.origin}/`);
    for (const [url, init] of [
      [`${app.url}/v1/me`, { headers: key() }],
      [`${app.url}/healthz`, {}],
      [`${app.url}/v1/uploads`, tusCreate()],
    ] as const) {
      const res = await call(page, url, init);
      expect({ url, error: res.error }).toEqual({ url, error: expect.stringMatching(/TypeError/) });
    }
  });
});
