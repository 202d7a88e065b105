import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * The layer rules of .dependency-cruiser.cjs (docs/architecture.md), as `npm run lint:deps` runs
 * them: the tree keeps them, and each rule refuses the import it exists to refuse.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const CONFIG = path.join(ROOT, '.dependency-cruiser.cjs');
const DEPCRUISE = path.join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');

interface Cruise {
  modules: { source: string; dependencies: { resolved: string }[] }[];
  summary: { violations: { rule: { name: string }; from: string; to: string }[] };
}

/** dependency-cruiser's CLI (the package is ESM-only), on src and web/src of `cwd`. */
function cruise(cwd: string): Cruise {
  const run = spawnSync(
    process.execPath,
    [DEPCRUISE, 'src', 'web/src', '--config', CONFIG, '--output-type', 'json'],
    { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  if (!run.stdout) throw new Error(`depcruise printed nothing: ${run.stderr}`);
  return JSON.parse(run.stdout) as Cruise;
}

/** Top-level folders (or root files) of src/ and web/src/ that take part in a cycle. */
function topLevelCycles(result: Cruise): string[][] {
  const top = (p: string) => /^(src|web\/src)\/[^/]+/.exec(p)?.[0];
  const edges = new Map<string, Set<string>>();
  for (const m of result.modules) {
    const from = top(m.source);
    for (const d of m.dependencies) {
      const to = top(d.resolved);
      if (from && to && from !== to) edges.set(from, (edges.get(from) ?? new Set()).add(to));
    }
  }
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const visit = (node: string, trail: string[]) => {
    if (state.get(node) === 'done') return;
    if (state.get(node) === 'open') {
      cycles.push([...trail.slice(trail.indexOf(node)), node]);
      return;
    }
    state.set(node, 'open');
    for (const next of edges.get(node) ?? []) visit(next, [...trail, node]);
    state.set(node, 'done');
  };
  for (const node of edges.keys()) visit(node, []);
  return cycles;
}

describe('layers', () => {
  it('hold in the tree: no rule is broken and no two top-level folders import each other', () => {
    const result = cruise(ROOT);
    expect(result.modules.length).toBeGreaterThan(100);
    expect(result.summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`)).toEqual([]);
    expect(topLevelCycles(result)).toEqual([]);
  });

  describe('each rule refuses an import that runs back up', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'layers-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    const file = (name: string, ...imports: string[]) => {
      mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      const lines = imports.map((from, i) => `import * as m${i} from '${from}';\nvoid m${i};`);
      writeFileSync(path.join(dir, name), `${lines.join('\n')}\nexport const here = 1;\n`);
    };

    it('reports every rule by name', () => {
      copyFileSync(path.join(ROOT, 'tsconfig.json'), path.join(dir, 'tsconfig.json'));
      file('src/db/database.ts', '../base/errors');
      file('src/base/errors.ts', '../evidence/a');
      file('src/evidence/a.ts', '../ingest/b');
      file('src/ingest/b.ts', '../evidence/a');
      file('src/contract/k.ts', '../evidence/a');
      file('src/evidence/c.ts', '../http/r');
      file('src/jobs/q.ts', '../context');
      file('src/context.ts', './http/r');
      file('src/http/r.ts', '../main');
      file('src/main.ts');
      file('web/src/main.ts', './pages/p');
      file('web/src/pages/p.ts', '../main');

      const refused = new Set(cruise(dir).summary.violations.map((v) => v.rule.name));
      expect([...refused].sort()).toEqual(
        [
          'base-imports-only-db',
          'context-below-http-and-cli',
          'contract-imports-only-base',
          'db-imports-nothing-of-the-app',
          'features-below-http-and-cli',
          'infrastructure-imports-only-base',
          'no-folder-cycle',
          'no-import-of-an-entry-point',
          'only-the-top-imports-the-root',
          'web-no-import-of-the-entry-point',
        ].sort(),
      );
    });
  });
});
