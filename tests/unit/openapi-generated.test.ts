import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildOpenApiDocument } from '../../src/contract/document';

describe('src/http/openapi.json', () => {
  it('is what the contract files generate (run `npm run openapi` after changing one)', () => {
    const checkedIn = JSON.parse(
      readFileSync(join(__dirname, '..', '..', 'src', 'http', 'openapi.json'), 'utf8'),
    );
    expect(checkedIn).toEqual(buildOpenApiDocument());
  });

  it('is what `npm run openapi` writes, byte for byte (the command docs/architecture.md shows)', () => {
    // Run as written, with OPENAPI_OUT redirecting the output so the work tree is left alone.
    const dir = mkdtempSync(join(tmpdir(), 'openapi-'));
    try {
      const out = join(dir, 'openapi.json');
      const run = spawnSync('npm', ['run', 'openapi'], {
        cwd: join(__dirname, '..', '..'),
        env: { ...process.env, OPENAPI_OUT: out },
        encoding: 'utf8',
      });
      // stderr is shown when the command fails.
      expect({ status: run.status, stderr: run.stderr }).toEqual({
        status: 0,
        stderr: expect.any(String),
      });
      expect(run.stdout).toContain(`wrote ${out}\n`);
      expect(readFileSync(out, 'utf8')).toBe(
        readFileSync(join(__dirname, '..', '..', 'src', 'http', 'openapi.json'), 'utf8'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails when the checked-in file differs from the contract in one description', () => {
    const stale = buildOpenApiDocument();
    stale.paths['/v1/holds'].get.summary = 'List legal holds (old)';
    expect(stale).not.toEqual(buildOpenApiDocument());
  });
});
