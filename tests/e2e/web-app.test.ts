import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_FLAGS, eventually, haveBrowser } from '../support/chromium';
import { bearer, startTestApp, type TestApp } from '../support/harness';
import { sha256 } from '../support/media';
import { MediaFiles } from '../support/media-files';
import { upload } from '../support/multipart';
import { unzipToMemory } from '../support/zip';

/**
 * The support web app in a real browser (Debian's Chromium driven by playwright-core) against the
 * real service: the README's walk-through without a command line. Screenshots of the main pages
 * are taken on every run, into a temporary directory removed afterwards, so `npm test` leaves the
 * work tree clean. UPDATE_SCREENSHOTS=1 writes them into docs/screenshots instead, which the
 * README shows: `UPDATE_SCREENSHOTS=1 npx jest tests/e2e/web-app.test.ts`, then commit them.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const UPDATE_SCREENSHOTS = process.env.UPDATE_SCREENSHOTS === '1';
const SHOTS = UPDATE_SCREENSHOTS
  ? path.join(ROOT, 'docs', 'screenshots')
  : mkdtempSync(path.join(tmpdir(), 'evidence-screenshots-'));
const LAPTOP = { width: 1366, height: 768 };
const DESKTOP = { width: 1920, height: 1080 };

if (!haveBrowser && !process.env.CI) {
  console.warn(
    `tests/e2e/web-app.test.ts skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH). In CI this fails instead.`,
  );
}

jest.setTimeout(120_000);

const shows = (loc: Locator, text: string | RegExp) =>
  eventually(async () => {
    const actual = (await loc.first().innerText()).replace(/\s+/g, ' ').trim();
    if (typeof text === 'string') expect(actual).toContain(text);
    else expect(actual).toMatch(text);
  });

const counts = (loc: Locator, n: number) =>
  eventually(async () => expect(await loc.count()).toBe(n));

const visible = (loc: Locator) => loc.first().waitFor({ state: 'visible', timeout: 15_000 });

// What the callbacks run in the page use of the DOM (the tests compile without the DOM library).
interface Video {
  readyState: number;
  currentTime: number;
  muted: boolean;
  seeking: boolean;
  play(): Promise<void>;
  pause(): void;
  addEventListener(type: string, listener: () => void, options?: object): void;
}
declare const document: {
  getElementById(id: string): unknown;
  activeElement: { id: string } | null;
  cookie: string;
};
declare const sessionStorage: { length: number };
declare const localStorage: { length: number };

(haveBrowser || process.env.CI ? describe : describe.skip)('support web app in Chromium', () => {
  let app: TestApp;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const files = new MediaFiles();
  const problems: string[] = [];
  let clipId: string;
  let callId: string;

  beforeAll(async () => {
    if (!haveBrowser) {
      throw new Error(`No Chromium at ${CHROMIUM}: CI must install it (apt-get install chromium).`);
    }
    // The app as `npm run build` makes it: dist/web, served by the service at /app/.
    execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build-web.mjs')], {
      stdio: 'ignore',
    });
    mkdirSync(SHOTS, { recursive: true });
    app = await startTestApp('fs', { DEFAULT_PHONE_REGION: 'GB' });

    // The README's sample data: a clip as a phone writes it (no browser plays it: the preview
    // does), for two orders, with the part of each; the customer's call; a complaint.
    const clip = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'packing_video'],
        ['orderId', 'ORD-1001'],
        ['orderId', 'ORD-1002'],
        ['stationId', 'PK-03'],
        ['operatorId', 'op-7'],
        ['trackingNumber', '1Z999AA10123456784'],
        ['capturedAt', new Date(Date.now() - 3 * 86_400_000).toISOString()],
        [
          'segments',
          JSON.stringify([
            { orderId: 'ORD-1001', startSec: 0, endSec: 4 },
            { orderId: 'ORD-1002', startSec: 4, endSec: 8 },
          ]),
        ],
      ],
      { filename: 'clip.mov', content: files.mov(8, '640x360') },
    );
    expect(clip.status).toBe(201);
    clipId = clip.json().id;
    const call = await upload(
      app.url,
      app.keys.ingest.key,
      [
        ['kind', 'call_recording'],
        ['callId', '1700000000.42'],
        ['source', 'asterisk-1'],
        ['fromNumber', '+44 20 7946 0958'],
        ['toNumber', '+442071234567'],
        ['direction', 'inbound'],
        ['capturedAt', new Date(Date.now() - 2 * 86_400_000).toISOString()],
      ],
      { filename: 'call.wav', content: files.mulawWav(6) },
    );
    expect(call.status).toBe(201);
    callId = call.json().id;
    for (const id of [clipId, callId]) await app.ctx.media.process(id);
    const complaint = await request(app.url)
      .put('/v1/complaints/CMP-77')
      .set(bearer(app.keys.support))
      .send({
        status: 'open',
        orderIds: ['ORD-1001'],
        customerPhone: '+44 20 7946 0958',
        channel: 'marketplace',
        topic: 'packing',
        description: 'The box arrived with an item missing.',
      });
    expect(complaint.status).toBe(201);

    const { chromium } = await import('playwright-core');
    // headless: false so that Playwright adds no headless flag of its own: --headless is ours.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: false,
      args: CHROMIUM_FLAGS,
    });
    context = await browser.newContext({ viewport: LAPTOP, acceptDownloads: true });
    page = await context.newPage();
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    files.cleanup();
    if (!UPDATE_SCREENSHOTS) rmSync(SHOTS, { recursive: true, force: true });
  });

  afterEach(() => {
    // No console errors, no uncaught exceptions, on any page.
    const seen = problems.splice(0);
    expect(seen).toEqual([]);
  });

  // Keys and share links are masked: a committed screenshot must not look like it leaks one.
  const shot = (name: string) =>
    page.screenshot({
      path: path.join(SHOTS, `${name}.png`),
      fullPage: false,
      mask: [page.locator('#minted-key, #share-url')],
    });

  async function signIn(key: string) {
    await page.goto(`${app.url}/app/`);
    await page.getByLabel('API key').fill(key);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  it('serves the app with a strict Content-Security-Policy', async () => {
    const res = await page.goto(`${app.url}/`);
    expect(page.url()).toBe(`${app.url}/app/`);
    const csp = res!.headers()['content-security-policy'];
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).not.toContain('unsafe');
  });

  it('refuses an ingest key clearly, and signs a support key in for this tab only', async () => {
    await signIn(app.keys.ingest.key);
    await shows(page.getByRole('alert'), /device \(ingest\) key/);
    // The refusal is the API's 403, which the browser itself logs; nothing else may be logged.
    expect(problems).toEqual([
      'console: Failed to load resource: the server responded with a status of 403 (Forbidden)',
    ]);
    problems.length = 0;

    await page.getByLabel('API key').fill(app.keys.support.key);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await shows(page.getByTestId('signed-in'), 'Signed in as Agent Ana (support)');
    const stored = await page.evaluate(() => ({
      session: Array.from({ length: sessionStorage.length }, (_, i) => {
        const s = sessionStorage as unknown as {
          key(i: number): string;
          getItem(k: string): string;
        };
        return [s.key(i), s.getItem(s.key(i))];
      }),
      local: localStorage.length,
      cookie: document.cookie,
    }));
    // The tab keeps the session's token, never the key; the cookie holds another token.
    const secret = app.keys.support.key.slice('eak_'.length + 16 + 1); // (base64url: may hold '_')
    expect(stored.session).toEqual([['evidence-archive.session', expect.stringMatching(/^eas_/)]]);
    expect(JSON.stringify(stored.session)).not.toContain(secret);
    expect(stored.local).toBe(0);
    expect(stored.cookie).toBe(''); // HttpOnly: not readable by scripts
    const [cookie] = await context.cookies(`${app.url}/v1/`);
    expect(cookie).toMatchObject({ name: 'eak_session', httpOnly: true, sameSite: 'Strict' });
    expect(cookie!.value).not.toContain(secret);
  });

  it('finds the order in one search, in under a second', async () => {
    await visible(page.locator('#q'));
    await page.locator('h1').click(); // focus elsewhere: "/" brings it back to the box
    await page.keyboard.press('/');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('q');
    await page.keyboard.type('ORD-1001');
    await page.keyboard.press('Enter');
    const order = page.locator('section[data-match="order"]');
    await shows(order.getByRole('heading', { level: 2 }), 'Order ORD-1001');
    await counts(order.locator('li.item'), 1);
    const took = await page.locator('.result-count').textContent();
    expect(Number(/in (\d+) ms/.exec(took ?? '')?.[1])).toBeLessThan(1000);
    // The same box takes the customer's phone as people write it.
    await page.locator('#q').fill('(020) 7946-0958');
    await page.keyboard.press('Enter');
    await shows(page.locator('section[data-match="phone"] h2'), '+442079460958');
    await page.locator('#q').fill('ORD-1001');
    await page.keyboard.press('Enter');
    await counts(order.locator('li.item'), 1);
    await shot('search');
  });

  it('plays the clip, seeks in it, jumps to an order and verifies it', async () => {
    const ranges: number[] = [];
    page.on('response', (r) => {
      if (r.url().includes(`/v1/evidence/${clipId}/preview`)) ranges.push(r.status());
    });
    await page.locator('section[data-match="order"] a.item-link').first().click();
    await shows(page.getByRole('heading', { level: 1 }), 'clip.mov');
    const video = page.locator('video#player');
    expect(await video.getAttribute('src')).toBe(`/v1/evidence/${clipId}/preview`);
    await video.evaluate((v: Video) => {
      v.muted = true;
      return v.play();
    });
    await page.waitForFunction(() => (document.getElementById('player') as Video).readyState >= 2);
    const seeked = await video.evaluate(
      (v: Video) =>
        new Promise<number>((resolve) => {
          v.pause();
          v.addEventListener('seeked', () => resolve(v.currentTime), { once: true });
          v.currentTime = 6;
        }),
    );
    expect(seeked).toBeGreaterThan(5.5);
    expect(seeked).toBeLessThan(6.5);
    // The segment buttons jump to each order's part.
    await page.getByRole('button', { name: /^ORD-1002: 0:04/ }).click();
    await page.waitForFunction(() => {
      const v = document.getElementById('player') as Video;
      return Math.abs(v.currentTime - 4) < 0.5 && !v.seeking;
    });
    expect(ranges).toContain(206); // the browser seeks with Range requests
    // Stills and metadata.
    await visible(page.getByRole('img', { name: /Contact sheet/ }));
    await shows(page.locator('.facts'), 'PK-03');
    expect(await page.locator('#sha256').inputValue()).toBe(
      (await request(app.url).get(`/v1/evidence/${clipId}`).set(bearer(app.keys.support))).body
        .sha256,
    );

    await page.getByRole('button', { name: 'Verify' }).click();
    await shows(page.locator('#verify-result'), 'Verified: ok');
    await page.setViewportSize(DESKTOP);
    await page.evaluate('window.scrollTo(0, 0)');
    await shot('evidence');
    await page.setViewportSize(LAPTOP);
    // The item's custody history shows this verification, by this person.
    await page.reload();
    await shows(
      page.locator('.custody tbody tr', { hasText: 'evidence.verify' }),
      'Agent Ana (support)',
    );
  });

  it('opens the complaint, accepts a suggestion, and downloads a bundle whose hashes match', async () => {
    await page.goto(`${app.url}/app/#/search?q=CMP-77`);
    await page.getByRole('link', { name: 'Open complaint CMP-77' }).click();
    await shows(page.getByRole('heading', { level: 1 }), 'Complaint CMP-77');
    await visible(page.locator('.timeline li'));

    const suggestions = page.locator('.suggestions > li');
    await counts(suggestions, 2); // the clip (its order) and the call (the order, the phone)
    await page.getByRole('button', { name: 'Accept call.wav' }).click();
    await counts(suggestions, 1);
    await page.getByRole('button', { name: 'Accept clip.mov' }).click();
    await counts(page.locator('.suggestions'), 0);

    await page.getByRole('button', { name: 'Create dispute bundle' }).click();
    const link = page.locator('.bundle-download').first();
    await visible(link);
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const zip = readFileSync((await download.path())!);
    const entries = await unzipToMemory(zip);
    const manifest = JSON.parse(entries.get('manifest.json')!.toString('utf8')) as {
      files: { path: string; sha256: string; itemId: string }[];
    };
    expect(new Set(manifest.files.map((f) => f.itemId))).toEqual(new Set([clipId, callId]));
    for (const f of manifest.files) {
      expect(entries.has(f.path)).toBe(true);
      expect(sha256(entries.get(f.path)!)).toBe(f.sha256);
    }
    expect(entries.has('SHA256SUMS')).toBe(true);
    await shot('complaint');
  });

  it('creates a share link, and revokes it', async () => {
    // After a reload the bundle is still there (the complaint's bundles come from the server),
    // and it can be shared.
    await page.reload();
    await visible(page.locator('.bundle-download').first());
    expect(await page.getByLabel('What to share').locator('option[value^="bundle:"]').count()).toBe(
      1,
    );
    await page.getByLabel('What to share').selectOption(`item:${clipId}`);
    await page.getByLabel('Note (who it is for)').fill('Marketplace reviewer');
    await page.getByRole('button', { name: 'Create share link' }).click();
    const url = await page.locator('#share-url').inputValue();
    expect(url).toMatch(new RegExp(`^${app.url}/s/[A-Za-z0-9_-]{43}$`));
    const opened = await fetch(url);
    expect(opened.status).toBe(200);
    await opened.arrayBuffer();
    const row = page.locator('table.share-links tbody tr', { hasText: 'Marketplace reviewer' });
    await shows(row, 'active');
    await row.getByRole('button', { name: /Revoke/ }).click();
    await shows(row, 'revoked');
    expect((await fetch(url)).status).toBe(410);
    // The hold status is shown to support; placing one is for admins.
    await shows(page.locator('section[aria-labelledby="hold-h"]'), 'Not on hold');
    await counts(page.getByRole('button', { name: 'Place hold' }), 0);
  });

  it('lets an admin mint and revoke a key, and see custody', async () => {
    // Signing out ends the session on the server: a copy of the cookie opens nothing after.
    const [cookie] = await context.cookies(`${app.url}/v1/`);
    const copied = () =>
      request(app.url)
        .get(`/v1/evidence/${clipId}/content`)
        .set('Cookie', `eak_session=${cookie!.value}`);
    expect((await copied()).status).toBe(200);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await visible(page.getByLabel('API key'));
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    expect((await copied()).status).toBe(401);
    await page.setViewportSize(DESKTOP);
    await signIn(app.keys.admin.key);
    await shows(page.getByTestId('signed-in'), 'Admin (admin)');

    // The same person signed in elsewhere: listed under Sessions, and ended from here.
    const elsewhere = await request(app.url)
      .post('/v1/session')
      .set('User-Agent', 'Other Browser/1.0')
      .send({ key: app.keys.admin.key });
    expect(elsewhere.status).toBe(200);
    const elsewhereCookie = String(elsewhere.headers['set-cookie']).split(';')[0]!;
    const readElsewhere = () =>
      request(app.url).get(`/v1/evidence/${clipId}/content`).set('Cookie', elsewhereCookie);
    expect((await readElsewhere()).status).toBe(200);
    await page.getByRole('link', { name: 'Sessions' }).click();
    await shows(page.getByRole('heading', { level: 1 }), 'Your sessions');
    await counts(page.locator('tr', { hasText: 'this browser' }), 1);
    await shows(page.locator('tr', { hasText: 'Other Browser/1.0' }), 'End');
    await page.getByRole('button', { name: `End session ${elsewhere.body.session.id}` }).click();
    await counts(page.locator('tr', { hasText: 'Other Browser/1.0' }), 0);
    expect((await readElsewhere()).status).toBe(401);

    await page.getByRole('link', { name: 'Keys' }).click();
    await shows(page.getByRole('heading', { level: 1 }), 'API keys');
    // Every key that signed in shows when it was last used.
    await eventually(async () =>
      expect(await page.locator('tr', { hasText: 'Agent Ana' }).innerText()).not.toContain('never'),
    );

    await page.getByLabel('Name (the person or device)').fill('Temp Tom');
    await page.getByLabel('Role').selectOption('support');
    // Minting from a session asks for the signed-in key again: another key is refused.
    await page.getByLabel('Your own admin key, to confirm').fill(app.keys.support.key);
    await page.getByRole('button', { name: 'Mint key' }).click();
    await shows(page.locator('#key-result'), 'signed-in key itself');
    // (The browser logs the refused request; that one is expected.)
    expect(problems.splice(0)).toEqual([expect.stringContaining('403 (Forbidden)')]);
    await page.getByLabel('Your own admin key, to confirm').fill(app.keys.admin.key);
    await page.getByRole('button', { name: 'Mint key' }).click();
    const minted = await page.locator('#minted-key').inputValue();
    expect(minted).toMatch(/^eak_[0-9a-f]{16}_/);
    expect(
      (await request(app.url).get('/v1/me').set('Authorization', `Bearer ${minted}`)).status,
    ).toBe(200);
    await shot('admin-keys');
    await page.getByRole('button', { name: 'Revoke key Temp Tom' }).click();
    await shows(page.locator('tr', { hasText: 'Temp Tom' }), 'revoked');
    expect(
      (await request(app.url).get('/v1/me').set('Authorization', `Bearer ${minted}`)).status,
    ).toBe(401);

    await page.getByRole('link', { name: 'Custody' }).click();
    await shows(page.getByRole('heading', { level: 1 }), 'Custody');
    await shows(page.locator('section[aria-labelledby="chain-h"]'), 'Head');
    await shows(page.locator('section[aria-labelledby="settings-h"]'), 'After a complaint closes');
    await shot('admin-custody');
  });

  it('records what the app did in the audit trail, as the people who did it', async () => {
    const trail = await request(app.url)
      .get(`/v1/evidence/${clipId}/audit?limit=1000`)
      .set(bearer(app.keys.admin));
    const bySupport = trail.body.events
      .filter((e: { actor: { name: string } }) => e.actor.name === 'Agent Ana')
      .map((e: { action: string }) => e.action);
    for (const action of [
      'evidence.list',
      'evidence.view',
      'derivative.download',
      'evidence.verify',
      'evidence.link',
    ]) {
      expect(bySupport).toContain(action);
    }
    // Signing in and out, refused sign-ins, sessions ended and key listings are in the trail too.
    const whole = await request(app.url).get('/v1/audit?limit=1000').set(bearer(app.keys.admin));
    expect(whole.status).toBe(200);
    const seen = whole.body.events.map(
      (e: { action: string; outcome: string; actor: { name: string } }) =>
        `${e.action} ${e.outcome} ${e.actor.name}`,
    );
    for (const line of [
      'session.open denied PK-03', // the ingest key
      'session.open success Agent Ana',
      'session.close success Agent Ana',
      'session.open success Admin',
      'session.end success Admin',
      'key.list success Admin',
    ]) {
      expect(seen).toContain(line);
    }
  });
});
