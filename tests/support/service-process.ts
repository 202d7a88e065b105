import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { childProcessReport } from './openapi-validator';

const SERVICE = path.resolve(__dirname, 'run-service.js');
/** `npm run worker` from its sources. */
export const WORKER_ARGS = [
  path.resolve(__dirname, 'run-ts.js'),
  path.resolve(__dirname, '../../src/worker.ts'),
];

export interface ServiceProcess {
  url: string;
  proc: ChildProcess;
  /** Everything the service wrote (its JSON log and console), for diagnostics and assertions. */
  output(): string;
  alive(): boolean;
  /** Resolves once /readyz answers 200; rejects when the process exits or after `ms`. */
  ready(ms?: number): Promise<void>;
  /**
   * SIGKILLs the process (if still running) and waits for its exit; then fails if any response
   * it sent did not match the OpenAPI document (see tests/support/openapi-validator.ts).
   */
  kill(): Promise<void>;
}

/**
 * The real service (src/main.ts) in a child process, for fault tests that need it to survive (or
 * not) what happens around it. `env` is added to the test's own environment.
 */
export async function startServiceProcess(
  env: Record<string, string>,
  port: number,
  /** Another entry point instead of the service, e.g. the worker: [run-ts.js, src/worker.ts]. */
  args: string[] = [SERVICE],
): Promise<ServiceProcess> {
  // The service's responses are checked against the OpenAPI document, unless OPENAPI_VALIDATE=off.
  const report = args[0] === SERVICE ? childProcessReport() : undefined;
  const proc = spawn(process.execPath, args, {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      ...report?.env,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (c: Buffer) => {
    out += c.toString('utf8');
    if (out.length > 2_000_000) out = out.slice(-1_000_000);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const url = `http://127.0.0.1:${port}`;
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const service: ServiceProcess = {
    url,
    proc,
    output: () => out,
    alive,
    async ready(ms = 60_000) {
      const until = Date.now() + ms;
      while (Date.now() < until) {
        if (!alive()) {
          throw new Error(`the service exited (${proc.exitCode ?? proc.signalCode}):\n${out}`);
        }
        const ok = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(5000) }).then(
          (r) => r.ok,
          () => false,
        );
        if (ok) return;
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`the service was not ready within ${ms} ms:\n${out.slice(-5000)}`);
    },
    async kill() {
      if (alive()) {
        await new Promise<void>((resolve) => {
          proc.once('exit', () => resolve());
          proc.kill('SIGKILL');
        });
      }
      report?.assertClean();
    },
  };
  return service;
}

/** Polls `fn` every `everyMs` until it returns something other than undefined, for at most `ms`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  ms = 60_000,
  everyMs = 250,
): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
