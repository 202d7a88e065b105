/**
 * BENCH_ONLY=cluster: lookups through HAProxy (examples/haproxy/haproxy.cfg, as docs/operations.md
 * shows it) in front of 1, 2 and 3 service instances on one database, loaded by Debian's `wrk`;
 * and the audit chain's append ceiling with 1 and 3 processes appending to it.
 *
 *   BENCH_CLUSTER_ITEMS (500,000), BENCH_CLUSTER_CONNECTIONS (32), BENCH_SECONDS (20),
 *   BENCH_ROUNDS (2; rounds alternate 1-2-3 and 3-2-1, the best of each is reported),
 *   BENCH_AUDIT_SECONDS (10), WRK_PATH (wrk), HAPROXY_PATH (/usr/sbin/haproxy)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { cpuSeconds, toMs } from './lookup-bench';
import type { Seeded } from './seed';
import path from 'node:path';
import { sql } from 'kysely';
import { AuditRepository } from '../src/base/audit.repository';
import { AuditLog } from '../src/base/audit.service';
import { systemActor } from '../src/base/actor';
import { createLogger } from '../src/base/logger';
import { createDb } from '../src/db/database';
import { startHaproxy } from '../tests/support/haproxy';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const ITEMS = env('BENCH_CLUSTER_ITEMS', 500_000);
const CONNECTIONS = env('BENCH_CLUSTER_CONNECTIONS', 32);
const SECONDS = env('BENCH_SECONDS', 20);
const ROUNDS = env('BENCH_ROUNDS', 2);
const AUDIT_SECONDS = env('BENCH_AUDIT_SECONDS', 10);
/** Connections appending at once, in total over the writer processes (a PostgreSQL is shared). */
const AUDIT_WRITERS = 24;
const fmt = (n: number, digits = 1) => n.toFixed(digits);

export interface ClusterBenchDeps {
  work: string;
  adminUrl: string;
  seedLookups(adminUrl: string, items?: number): Promise<Seeded>;
  startService(
    vars: Record<string, string>,
  ): Promise<{ url: string; proc: ChildProcess; stop(): Promise<void> }>;
}

interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
  /** Answers other than 200, by status. */
  statuses: string;
}

/** `wrk` with random orders (lookups.lua): requests per second and latency percentiles. */
function wrk(url: string, script: string, vars: Record<string, string>): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.env.WRK_PATH ?? 'wrk',
      ['-t', '2', '-c', String(CONNECTIONS), '-d', `${SECONDS}s`, '--latency', '-s', script, url],
      { env: { ...process.env, ...vars }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    proc.on('error', reject);
    proc.on('exit', (code) => {
      const pct = (p: string) => {
        const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
        return m ? toMs(m[1]!, m[2]!) : NaN;
      };
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      if (code !== 0 || !rps) {
        reject(new Error(`wrk failed (${code}):\n${out}`));
        return;
      }
      resolve({
        rps: Number(rps[1]),
        p50: pct('50'),
        p99: pct('99'),
        requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
        errors: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0),
        statuses: Object.entries(
          [...out.matchAll(/^status (\d+) (\d+)$/gm)].reduce<Record<string, number>>(
            (by, m) => ({ ...by, [m[1]!]: (by[m[1]!] ?? 0) + Number(m[2]) }),
            {},
          ),
        )
          .map(([code, n]) => `${n} x ${code}`)
          .join(', '),
      });
    });
  });
}

const LUA = `-- One lookup of a random order per request (orders ORD-0 .. ORD-<BENCH_ORDERS - 1>);
-- answers other than 200 are counted by status and printed at the end ("status <code> <count>").
local key = os.getenv("BENCH_KEY")
local orders = tonumber(os.getenv("BENCH_ORDERS"))
local headers = { ["Authorization"] = "Bearer " .. key }
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  statuses = {}
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end
function request()
  return wrk.format("GET", "/v1/orders/ORD-" .. math.random(0, orders - 1) .. "/evidence", headers)
end
function response(status, hdrs, body)
  if status ~= 200 then statuses[status] = (statuses[status] or 0) + 1 end
end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do io.write("status " .. code .. " " .. n .. "\\n") end
  end
end
`;

interface Measured extends WrkResult {
  /** CPU ms per request, summed over the instances (and HAProxy's alone). */
  cpuMsPerRequest: number;
  haproxyCpuMsPerRequest: number;
}

export async function benchCluster(deps: ClusterBenchDeps): Promise<void> {
  console.log(
    `\n== several instances: lookups through HAProxy in front of 1, 2 and 3 instances (${ITEMS} items, wrk with ${CONNECTIONS} connections, ${SECONDS} s, best of ${ROUNDS} alternating rounds)`,
  );
  const seeded = await deps.seedLookups(deps.adminUrl, ITEMS);
  const orders = Math.max(1, Math.floor(ITEMS / 2));
  const script = path.join(deps.work, 'lookups.lua');
  writeFileSync(script, LUA);
  const vars = { BENCH_KEY: seeded.support, BENCH_ORDERS: String(orders) };
  const instances: Awaited<ReturnType<ClusterBenchDeps['startService']>>[] = [];
  try {
    console.log(`seeded ${seeded.counts.items} items in ${fmt(seeded.seedSecs)} s`);
    for (let i = 0; i < 3; i++) {
      // One database, one data directory (lookups read no blobs; the signing key is shared).
      instances.push(
        await deps.startService({ DATABASE_URL: seeded.database.url, DATA_DIR: seeded.dataDir }),
      );
    }
    const hosts = instances.map((s) => new URL(s.url).host);
    const measure = async (n: number): Promise<Measured> => {
      const lb = await startHaproxy(hosts.slice(0, n), { checkInter: '2s' });
      try {
        await lb.waitUp(n);
        const pids = instances.slice(0, n).map((s) => s.proc.pid!);
        const before = pids.map(cpuSeconds);
        const lbBefore = cpuSeconds(lb.pid);
        const r = await wrk(lb.url, script, vars);
        const used = pids.reduce((sum, pid, i) => sum + cpuSeconds(pid) - before[i]!, 0);
        return {
          ...r,
          cpuMsPerRequest: (used * 1000) / r.requests,
          haproxyCpuMsPerRequest: ((cpuSeconds(lb.pid) - lbBefore) * 1000) / r.requests,
        };
      } finally {
        await lb.stop();
      }
    };
    const direct = async (): Promise<Measured> => {
      const pid = instances[0]!.proc.pid!;
      const before = cpuSeconds(pid);
      const r = await wrk(instances[0]!.url, script, vars);
      return {
        ...r,
        cpuMsPerRequest: ((cpuSeconds(pid) - before) * 1000) / r.requests,
        haproxyCpuMsPerRequest: 0,
      };
    };
    // Warm every instance (JIT, pools, the key cache) once, through the balancer.
    await measure(3).catch(() => undefined);
    const best = new Map<string, Measured>();
    const keep = (label: string, m: Measured) => {
      const had = best.get(label);
      if (!had || m.rps > had.rps) best.set(label, m);
    };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [1, 2, 3] : [3, 2, 1];
      if (round % 2 === 0) keep('1 instance, no HAProxy', await direct());
      for (const n of order)
        keep(`${n} instance${n > 1 ? 's' : ''} behind HAProxy`, await measure(n));
      if (round % 2 === 1) keep('1 instance, no HAProxy', await direct());
    }
    const one = best.get('1 instance behind HAProxy')!;
    for (const [label, m] of [...best.entries()].sort()) {
      console.log(
        `${label.padEnd(30)} ${fmt(m.rps, 0).padStart(6)} req/s  p50 ${fmt(m.p50, 2)} ms  p99 ${fmt(m.p99, 2)} ms  ` +
          `service CPU ${fmt(m.cpuMsPerRequest, 2)} ms/req` +
          (m.haproxyCpuMsPerRequest ? `  HAProxy ${fmt(m.haproxyCpuMsPerRequest, 3)} ms/req` : '') +
          (label.includes('behind') ? `  x${fmt(m.rps / one.rps, 2)}` : '') +
          (m.errors ? `  (${m.errors} errors: ${m.statuses})` : ''),
      );
    }
    for (const s of instances.splice(0)) await s.stop();

    console.log(
      `\n== audit chain append ceiling: ${AUDIT_WRITERS} connections appending as fast as they can for ${AUDIT_SECONDS} s, from 1 process or spread over 3 (one chain: events recorded with no lock, then linked by one chainer at a time)`,
    );
    for (const mode of ['write', 'write-async', 'read'] as const) {
      const results: Record<number, Awaited<ReturnType<typeof appendRate>>[]> = { 1: [], 3: [] };
      for (let round = 0; round < ROUNDS; round++) {
        for (const procs of round % 2 === 0 ? [1, 3] : [3, 1]) {
          results[procs]!.push(await appendRate(seeded.database.url, mode, procs));
        }
      }
      const best = (r: (typeof results)[number]) =>
        r.reduce((x, y) => (y.recorded > x.recorded ? y : x));
      const [a, b] = [best(results[1]!), best(results[3]!)];
      console.log(
        {
          write: "writes' events (one per transaction, append)",
          'write-async': 'the same, synchronous_commit off (no WAL flush wait)',
          read: "reads' events (group-committed, recordRead)",
        }[mode].padEnd(54) +
          `1 process ${fmt(a.recorded, 0).padStart(6)} events/s   3 processes ${fmt(b.recorded, 0).padStart(6)} events/s   x${fmt(b.recorded / a.recorded, 2)}` +
          `   linked ${fmt(a.linked, 0)} / ${fmt(b.linked, 0)} events/s (all linked ${fmt(a.settleMs, 0)} / ${fmt(b.settleMs, 0)} ms after the window)`,
      );
    }
  } finally {
    for (const s of instances) await s.stop();
    await seeded.drop();
  }
}

/**
 * Events per second recorded by `procs` writer processes sharing AUDIT_WRITERS connections, and
 * linked (the same events over the window and the time it took to link what was left).
 */
async function appendRate(
  url: string,
  mode: 'write' | 'write-async' | 'read',
  procs: number,
): Promise<{ recorded: number; linked: number; settleMs: number }> {
  const each = Math.floor(AUDIT_WRITERS / procs);
  const counts = await Promise.all(
    Array.from(
      { length: procs },
      () =>
        new Promise<{ counted: number; settleMs: number }>((resolve, reject) => {
          const proc = spawn(
            process.execPath,
            [__filename, 'audit-writer', url, mode, String(each), String(AUDIT_SECONDS)],
            { stdio: ['ignore', 'pipe', 'inherit'] },
          );
          let out = '';
          proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
          proc.on('exit', (code) =>
            code === 0
              ? resolve(JSON.parse(out) as { counted: number; settleMs: number })
              : reject(new Error(`audit writer exited ${code}`)),
          );
        }),
    ),
  );
  const recorded = counts.reduce((a, c) => a + c.counted, 0);
  const settleMs = Math.max(...counts.map((c) => c.settleMs));
  return {
    recorded: recorded / AUDIT_SECONDS,
    linked: recorded / (AUDIT_SECONDS + settleMs / 1000),
    settleMs,
  };
}

/**
 * One writer process, as one instance: `writers` loops recording events for `seconds` after a
 * second's warm-up, and its chainer linking them (and any other process's) meanwhile; prints how
 * many it recorded and how long after the window it took to link everything left waiting. 'write': each event in its own transaction, as a change to
 * evidence records its event (AuditLog.append). 'read': AuditLog.recordRead, as reads are recorded
 * (group-committed: one statement per batch, committed without waiting for the WAL flush), with 8
 * events in flight per loop. 'write-async':
 * as 'write' with synchronous_commit off, which shows what waiting for the WAL flush costs.
 */
async function auditWriter(url: string, mode: string, writers: number, seconds: number) {
  const db = createDb(url, mode === 'read' ? 2 : writers);
  const audit = new AuditLog({ db, repo: new AuditRepository(), logger: createLogger('silent') });
  audit.startChaining();
  const actor = systemActor('bench audit writer');
  const entry = () => ({ action: 'evidence.view' as const, actor, itemIds: [randomUUID()] });
  const start = Date.now() + 1000;
  const end = start + seconds * 1000;
  let counted = 0;
  const loops = mode === 'read' ? writers * 8 : writers;
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (Date.now() < end) {
        if (mode === 'read') await audit.recordRead(entry());
        else {
          await db.transaction().execute(async (tx) => {
            if (mode === 'write-async') await sql`set local synchronous_commit = off`.execute(tx);
            await audit.append(tx, [entry()]);
          });
        }
        const now = Date.now();
        if (now >= start && now < end) counted++;
      }
    }),
  );
  const settling = Date.now();
  await audit.close(); // links what is left waiting
  const settleMs = Math.max(0, Date.now() - Math.max(settling, end));
  await db.destroy();
  process.stdout.write(`${JSON.stringify({ counted, settleMs })}\n`);
}

if (require.main === module && process.argv[2] === 'audit-writer') {
  const [url, mode, writers, seconds] = process.argv.slice(3);
  auditWriter(url!, mode!, Number(writers), Number(seconds)).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
