/**
 * Lookups by order under an external load generator (Debian's `wrk`), against the thinnest Node
 * service doing the very same query (bench/thin-lookup-server.ts), in alternating rounds: req/s,
 * p50, p99 and the server's CPU milliseconds per request (utime + stime of its process, from
 * /proc/<pid>/stat), at BENCH_LOOKUP_CONNECTIONS (32,4) connections for BENCH_SECONDS each.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';

export interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  /** Server CPU per request, ms (user + system of the server's process). */
  cpuMs: number;
}

export interface LookupTarget {
  url: string;
  pid: number;
}

const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** utime + stime of a process so far, in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command (which may hold spaces) start at the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** utime + stime of a process so far, in ms. */
export const cpuMsOf = async (pid: number) => cpuSeconds(pid) * 1000;

/** A wrk latency figure in ms. */
export const toMs = (v: string, unit: string) =>
  Number(v) * (unit === 'us' ? 1e-3 : unit === 's' ? 1e3 : unit === 'm' ? 6e4 : 1);

/** Parses wrk --latency output. */
export function parseWrk(out: string): Omit<WrkResult, 'cpuMs'> {
  const pct = (p: string) => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    if (!m) throw new Error(`wrk printed no ${p}% latency:\n${out}`);
    return toMs(m[1]!, m[2]!);
  };
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const total = /(\d+) requests in/.exec(out);
  if (!rps || !total) throw new Error(`unexpected wrk output:\n${out}`);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(out);
  if (errors) throw new Error(`wrk saw errors (${errors[0]}):\n${out}`);
  return { rps: Number(rps[1]), p50: pct('50'), p99: pct('99'), requests: Number(total[1]) };
}

/**
 * A Lua script for wrk: each request asks for a random order among `orders` (ORD-0 ...), with
 * this Authorization header.
 */
export async function orderScript(dir: string, orders: number, authorization: string) {
  const file = path.join(dir, `orders-${orders}.lua`);
  await fs.writeFile(
    file,
    [
      `wrk.headers["Authorization"] = "${authorization}"`,
      'local counter = 0',
      'setup = function(thread) counter = counter + 1; thread:set("seed", counter) end',
      'init = function(args) math.randomseed(os.time() * 1000 + seed) end',
      'request = function()',
      `  return wrk.format("GET", "/v1/orders/ORD-" .. math.random(0, ${orders - 1}) .. "/evidence")`,
      'end',
      '',
    ].join('\n'),
  );
  return file;
}

/** One wrk run of `seconds` at `connections` against a server, with the server's CPU per request. */
export async function runWrk(
  target: LookupTarget,
  script: string,
  connections: number,
  seconds: number,
): Promise<WrkResult> {
  const threads = Math.min(2, connections);
  const cpu0 = await cpuMsOf(target.pid);
  const proc = spawn(
    'wrk',
    [
      `-t${threads}`,
      `-c${connections}`,
      `-d${seconds}s`,
      '--timeout',
      '10s',
      '--latency',
      '-s',
      script,
      target.url,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const [code] = (await once(proc, 'exit')) as [number | null];
  const cpu1 = await cpuMsOf(target.pid);
  if (code !== 0) throw new Error(`wrk exited with ${code}:\n${out}`);
  const r = parseWrk(out);
  return { ...r, cpuMs: (cpu1 - cpu0) / r.requests };
}

/** Starts the thin baseline server on this database; resolves once it listens. */
export async function startThinServer(
  databaseUrl: string,
): Promise<LookupTarget & { stop(): Promise<void> }> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const proc: ChildProcess = spawn(
    process.execPath,
    [path.join(__dirname, 'thin-lookup-server.js')],
    {
      env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    proc.once('exit', (c) => reject(new Error(`thin server exited with ${c}`)));
    proc.stdout!.once('data', () => resolve());
  });
  return {
    url: `http://127.0.0.1:${port}`,
    pid: proc.pid!,
    async stop() {
      proc.kill('SIGTERM');
      if (proc.exitCode === null) await once(proc, 'exit');
    },
  };
}

/** Warms a server: each connection's first requests pay for pool connections and JIT. */
export async function warm(target: LookupTarget, script: string) {
  await runWrk(target, script, 32, 3);
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export function wrkText(r: WrkResult): string {
  return `${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.p50.toFixed(2).padStart(6)} ms  p99 ${r.p99.toFixed(2).padStart(6)} ms  CPU ${r.cpuMs.toFixed(3)} ms/req`;
}

export interface LookupSides {
  service: LookupTarget;
  thin: LookupTarget;
}

/**
 * Alternating rounds, service then thin then thin then service ..., at each connection count;
 * prints each round and the medians, and returns the medians per connection count.
 */
export async function compareLookups(
  sides: LookupSides,
  script: string,
  connections: number[],
  seconds: number,
  rounds: number,
  log: (line: string) => void,
) {
  await warm(sides.service, script);
  await warm(sides.thin, script);
  const summary: Record<number, { service: WrkResult; thin: WrkResult }> = {};
  for (const c of connections) {
    const runs: Record<'service' | 'thin', WrkResult[]> = { service: [], thin: [] };
    for (let round = 0; round < rounds; round++) {
      const order =
        round % 2 === 0 ? (['service', 'thin'] as const) : (['thin', 'service'] as const);
      for (const side of order) {
        const r = await runWrk(sides[side], script, c, seconds);
        runs[side].push(r);
        log(`  ${c} conns, round ${round + 1}, ${side.padEnd(7)} ${wrkText(r)}`);
      }
    }
    const med = (side: 'service' | 'thin'): WrkResult => ({
      rps: median(runs[side].map((r) => r.rps)),
      p50: median(runs[side].map((r) => r.p50)),
      p99: median(runs[side].map((r) => r.p99)),
      requests: runs[side].reduce((a, r) => a + r.requests, 0),
      cpuMs: median(runs[side].map((r) => r.cpuMs)),
    });
    summary[c] = { service: med('service'), thin: med('thin') };
  }
  return summary;
}
