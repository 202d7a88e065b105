import { execFile, spawnSync } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');

/** The verify-bundle CLI, from its sources, as a third party would run it: exit code and output. */
export const verifyCli = (args: string[]) => cli('verify-bundle', args);

/** A CLI of src/cli, from its sources, with `env` added to this process's: exit code and output. */
export async function cli(
  name: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string }> {
  try {
    const { stdout } = await run(
      process.execPath,
      [path.join(ROOT, 'tests/support/run-ts.js'), `src/cli/${name}.cli.ts`, ...args],
      { cwd: ROOT, env: { ...process.env, ...env } },
    );
    return { code: 0, out: stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: `${e.stdout}${e.stderr}` };
  }
}

/** Runs one of VERIFY.txt's commands in a shell, in the unpacked bundle. */
export function shell(cmd: string, cwd: string) {
  const r = spawnSync('bash', ['-c', cmd], { cwd, encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}
