// Builds the browser apps into dist/: the support web app (web/, served at /app/) into dist/web and
// the packing station (web/station/, served at /station/) into dist/station. Each is one bundled,
// minified script and one stylesheet, each named by its content hash (served as immutable), and
// an index.html naming them. Run by `npm run build`; the tests run it too before they drive the
// apps in a browser.
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const web = path.join(root, 'web');

const hashed = (name, ext, bytes) =>
  `${name}-${createHash('sha256').update(bytes).digest('hex').slice(0, 8).toUpperCase()}.${ext}`;

/** One app: its entry script, stylesheet and page, served under `prefix`, built into `out`. */
async function buildApp({ entry, css: cssFile, html: htmlFile, prefix, name, out }) {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    sourcemap: false,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    write: false,
    legalComments: 'none',
    logLevel: 'warning',
  });
  const js = Buffer.from(result.outputFiles[0].contents);
  const css = readFileSync(cssFile);

  // Written beside the output and swapped in at the end, so a running service (or a test suite
  // building at the same time) never sees half a build for longer than a rename.
  const next = `${out}.${process.pid}.tmp`;
  rmSync(next, { recursive: true, force: true });
  mkdirSync(next, { recursive: true });
  const assets = { js: hashed(name, 'js', js), css: hashed(name, 'css', css) };
  writeFileSync(path.join(next, assets.js), js);
  writeFileSync(path.join(next, assets.css), css);
  const html = readFileSync(htmlFile, 'utf8')
    .replace(`${prefix}${name}.css`, `${prefix}${assets.css}`)
    .replace(`${prefix}${name}.js`, `${prefix}${assets.js}`);
  writeFileSync(path.join(next, 'index.html'), html);
  // The service serves the folder only where this exists (a build finished).
  writeFileSync(path.join(next, 'assets.json'), `${JSON.stringify(assets)}\n`);
  // The same build as the one in place (another build ran just before, e.g. two browser test files
  // at once): left as it is, so that a service serving it never meets the gap of a swap.
  const same = (f) =>
    existsSync(path.join(out, f)) &&
    readFileSync(path.join(out, f)).equals(readFileSync(path.join(next, f)));
  if (same('assets.json') && same('index.html')) {
    rmSync(next, { recursive: true, force: true });
  } else {
    rmSync(out, { recursive: true, force: true });
    renameSync(next, out);
  }
  // stderr: `npm run keys -- ... --json` builds first, and its stdout must be the JSON alone.
  process.stderr.write(`${prefix}: ${path.relative(root, out)} (${readdirSync(out).join(', ')})\n`);
}

await buildApp({
  entry: path.join(web, 'src', 'main.ts'),
  css: path.join(web, 'app.css'),
  html: path.join(web, 'index.html'),
  prefix: '/app/',
  name: 'app',
  out: path.join(root, 'dist', 'web'),
});
await buildApp({
  entry: path.join(web, 'src', 'station', 'main.ts'),
  css: path.join(web, 'station', 'station.css'),
  html: path.join(web, 'station', 'index.html'),
  prefix: '/station/',
  name: 'station',
  out: path.join(root, 'dist', 'station'),
});
