import { existsSync } from 'node:fs';

/** Debian's Chromium, which CI installs; the browser tests drive it with playwright-core. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const haveBrowser = existsSync(CHROMIUM);
