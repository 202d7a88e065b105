import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ROOT, readEnvExample } from '../support/env-example';

/**
 * The README is a front page and the docs/ pages hold the rest. Every command block they show is
 * run as written by a test or a CI script, and says which; links and anchors resolve; every
 * variable of .env.example is on the configuration page.
 */
const PAGES = [
  'README.md',
  ...readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const read = (page: string) => readFileSync(path.join(ROOT, page), 'utf8');

/** Pages another change of the same issue writes: links to them are checked once they exist. */
const WRITTEN_ELSEWHERE = new Set(['docs/architecture.md']);

/** Blocks no test can run here, by their first line, with the reason their mark gives. */
const NOT_RUN = new Map([
  ['mc mb --with-lock archive/evidence', 'no MinIO client'],
  ['aws s3api create-bucket --bucket evidence --region eu-west-1 \\', 'no AWS account'],
]);

interface Block {
  page: string;
  line: number;
  lang: string;
  body: string;
  mark: string | undefined;
}

function blocks(page: string): Block[] {
  const lines = read(page).split('\n');
  const found: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)$/.exec(lines[i]!);
    if (!open) continue;
    let end = i + 1;
    while (lines[end] !== '```') end++;
    let prev = i - 1;
    while (prev >= 0 && lines[prev] === '') prev--;
    const mark = /^<!-- (.*) -->$/.exec(lines[prev] ?? '')?.[1];
    found.push({
      page,
      line: i + 1,
      lang: open[1]!,
      body: lines.slice(i + 1, end).join('\n'),
      mark,
    });
    i = end;
  }
  return found;
}

/** GitHub's anchor for a heading. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');

function anchors(page: string): Set<string> {
  const out = new Set<string>();
  let fence = false;
  for (const line of read(page).split('\n')) {
    if (line.startsWith('```')) fence = !fence;
    const h = /^#{1,6} (.*)$/.exec(line);
    if (h && !fence) out.add(slug(h[1]!));
  }
  return out;
}

describe('the README and docs/', () => {
  it('keep the README a front page: at most 15 KB', () => {
    expect(Buffer.byteLength(read('README.md'))).toBeLessThanOrEqual(15 * 1024);
  });

  it('have an index of every page in docs/README.md', () => {
    const index = read('docs/README.md');
    for (const page of PAGES.filter((p) => p.startsWith('docs/') && p !== 'docs/README.md')) {
      expect([page, index.includes(`](${path.basename(page)})`)]).toEqual([page, true]);
    }
  });

  it('say, above every command block, which test or script runs it as written', () => {
    const problems: string[] = [];
    for (const page of PAGES) {
      for (const b of blocks(page)) {
        if (!['sh', 'js', 'yaml'].includes(b.lang)) continue;
        const where = `${b.page}:${b.line}`;
        const run = /^run as written by ([^\s,]+)/.exec(b.mark ?? '')?.[1];
        if (run) {
          const runner = path.join(ROOT, run);
          if (!existsSync(runner)) problems.push(`${where}: ${run} does not exist`);
          else if (!read(run).includes(path.basename(page))) {
            problems.push(`${where}: ${run} does not read ${page}`);
          }
        } else if (/^not run by a test: /.test(b.mark ?? '')) {
          const first = b.body.split('\n')[0]!;
          if (!NOT_RUN.has(first)) problems.push(`${where}: a new block no test runs: ${first}`);
        } else {
          problems.push(`${where}: no "<!-- run as written by ... -->" above the block`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('link only to files and headings that exist', () => {
    const problems: string[] = [];
    for (const page of PAGES) {
      const text = read(page).replace(/```[\s\S]*?```/g, '');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue; // http(s), mailto
        const [file, anchor] = target.split('#') as [string, string | undefined];
        const resolved = file ? path.normalize(path.join(path.dirname(page), file)) : page;
        if (WRITTEN_ELSEWHERE.has(resolved) && !existsSync(path.join(ROOT, resolved))) continue;
        if (!existsSync(path.join(ROOT, resolved))) {
          problems.push(`${page}: ${target}: no such file`);
        } else if (anchor && resolved.endsWith('.md') && !anchors(resolved).has(anchor)) {
          problems.push(`${page}: ${target}: no such heading`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('name every variable of .env.example on the configuration page', () => {
    const page = read('docs/configuration.md');
    const { settings, composeOnly } = readEnvExample();
    const missing = [...settings.keys(), ...composeOnly.keys()].filter(
      (name) => !page.includes(`\`${name}\``),
    );
    expect(missing).toEqual([]);
  });
});
