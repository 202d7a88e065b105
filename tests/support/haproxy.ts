import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { freePort } from './free-port';

/** examples/haproxy/haproxy.cfg: the configuration docs/operations.md shows, run as it is. */
export const HAPROXY_CONFIG = [
  path.resolve(__dirname, '../../examples/haproxy/haproxy.cfg'),
  // Compiled for the bench: dist/tests/support.
  path.resolve(__dirname, '../../../examples/haproxy/haproxy.cfg'),
].find((file) => existsSync(file))!;
/** Debian's binary (in /usr/sbin, which a non-root PATH may lack), HAPROXY_PATH, or the PATH's. */
export const HAPROXY_BINARY =
  process.env.HAPROXY_PATH ?? (existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy');

/** How many instances that configuration names. */
export const HAPROXY_INSTANCES = 3;

export interface Balancer {
  url: string;
  pid: number;
  /** Resolves once HAProxy's health checks have marked exactly `up` instances ready. */
  waitUp(up: number, ms?: number): Promise<void>;
  output(): string;
  stop(): Promise<void>;
}

export { freePort };

/**
 * Debian's HAProxy (`apt-get install haproxy`) in the foreground with HAPROXY_CONFIG, in front of
 * these instances (`host:port`; fewer than three leaves the rest pointing at a closed port, marked
 * down by their health check). `served()` of each answer's X-Served-By says which one answered.
 */
export async function startHaproxy(
  instances: string[],
  opts: { checkInter?: string; binary?: string } = {},
): Promise<Balancer> {
  if (instances.length > HAPROXY_INSTANCES) {
    throw new Error(`${HAPROXY_CONFIG} names ${HAPROXY_INSTANCES} instances`);
  }
  const port = await freePort();
  // A port nothing listens on, for the slots left empty.
  const closed = `127.0.0.1:${await freePort()}`;
  const slots = Object.fromEntries(
    Array.from({ length: HAPROXY_INSTANCES }, (_, i) => [
      `EVIDENCE_INSTANCE_${i + 1}`,
      instances[i] ?? closed,
    ]),
  );
  const inter = opts.checkInter ?? '500ms';
  const interMs = inter.endsWith('ms')
    ? Number(inter.slice(0, -2))
    : Number.parseFloat(inter) * 1000;
  const proc = spawn(opts.binary ?? HAPROXY_BINARY, ['-db', '-f', HAPROXY_CONFIG], {
    env: {
      ...process.env,
      EVIDENCE_LISTEN: `127.0.0.1:${port}`,
      EVIDENCE_CHECK_INTER: inter,
      ...slots,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const url = `http://127.0.0.1:${port}`;
  // HAProxy starts with every server up: the empty slots are marked down only after two failed
  // checks (fall 2). Until then a request may be sent to them and, retried onto another empty
  // slot, answered 503 (the bench's one-instance rounds saw a few).
  const settle = instances.length < HAPROXY_INSTANCES ? 2.5 * interMs : 100;
  await new Promise((r) => setTimeout(r, settle));
  const balancer: Balancer = {
    url,
    pid: proc.pid!,
    output: () => out,
    async waitUp(up, ms = 30_000) {
      // Distinct X-Served-By over a few rounds of /readyz: only instances marked up answer.
      const until = Date.now() + ms;
      for (;;) {
        if (!alive()) throw new Error(`haproxy exited (${proc.exitCode}):\n${out}`);
        const seen = new Set<string>();
        for (let i = 0; i < HAPROXY_INSTANCES * 4; i++) {
          const res = await fetch(`${url}/readyz`).catch(() => undefined);
          const by = res?.headers.get('x-served-by');
          if (res?.ok && by) seen.add(by);
          await res?.arrayBuffer();
        }
        if (seen.size === up) return;
        if (Date.now() > until) {
          throw new Error(`haproxy: ${seen.size} instances up, not ${up}, after ${ms} ms\n${out}`);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    async stop() {
      if (alive()) proc.kill('SIGTERM');
      await exited;
    },
  };
  return balancer;
}
