// Builds the support web app (web/) into dist/web: one bundled, minified script and one
// stylesheet, each named by its content hash (served as immutable), and index.html naming them.
// Run by `npm run build`; the tests run it too before they drive the app in a browser.
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const web = path.join(root, 'web');
const out = path.join(root, 'dist', 'web');

const hashed = (name, ext, bytes) =>
  `${name}-${createHash('sha256').update(bytes).digest('hex').slice(0, 8).toUpperCase()}.${ext}`;

const result = await build({
  entryPoints: [path.join(web, 'src', 'main.ts')],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  write: false,
  legalComments: 'none',
  logLevel: 'warning',
});
const js = Buffer.from(result.outputFiles[0].contents);
const css = readFileSync(path.join(web, 'app.css'));

// Written beside dist/web and swapped in at the end, so a running service (or a test suite
// building at the same time) never sees half a build for longer than a rename.
const next = `${out}.${process.pid}.tmp`;
rmSync(next, { recursive: true, force: true });
mkdirSync(next, { recursive: true });
const assets = { js: hashed('app', 'js', js), css: hashed('app', 'css', css) };
writeFileSync(path.join(next, assets.js), js);
writeFileSync(path.join(next, assets.css), css);
const html = readFileSync(path.join(web, 'index.html'), 'utf8')
  .replace('/app/app.css', `/app/${assets.css}`)
  .replace('/app/app.js', `/app/${assets.js}`);
writeFileSync(path.join(next, 'index.html'), html);
// The service serves dist/web only where this exists (a build finished).
writeFileSync(path.join(next, 'assets.json'), `${JSON.stringify(assets)}\n`);
rmSync(out, { recursive: true, force: true });
renameSync(next, out);
// stderr: `npm run keys -- ... --json` builds first, and its stdout must be the JSON alone.
process.stderr.write(`web app: dist/web (${readdirSync(out).join(', ')})\n`);
