import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import pg from 'pg';
import { AppError, outageError } from '../../src/base/errors';
import { createS3Client } from '../../src/storage/s3-client';
import { startS3Server, type TestS3 } from '../support/s3-server';

/** The error a promise rejects with (fails the test when it resolves). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

const codeOf = (err: unknown) => outageError(err)?.code ?? 'not an outage (500)';

/**
 * Errors produced by real PostgreSQL, S3 and file system failures are told apart: outages are
 * 503 dependency_unavailable, a full disk 507 insufficient_storage, and everything else a bug.
 */
describe('outageError', () => {
  const adminUrl = process.env.TEST_DATABASE_URL!;
  let s3: TestS3;
  const servers: { close(): void }[] = [];
  beforeAll(async () => {
    s3 = await startS3Server();
  });
  afterAll(async () => {
    await s3.close();
    for (const s of servers) s.close();
  });

  const closedPort = () =>
    new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as net.AddressInfo;
        srv.close(() => resolve(port));
      });
    });

  it('PostgreSQL unreachable, its session terminated, or the pool exhausted: dependency_unavailable', async () => {
    const refused = new pg.Client({ host: '127.0.0.1', port: await closedPort(), user: 'x' });
    expect(codeOf(await rejection(refused.connect()))).toBe('dependency_unavailable');

    const victim = new pg.Client({ connectionString: adminUrl });
    await victim.connect();
    victim.on('error', () => undefined);
    const { rows } = await victim.query<{ pid: number }>('select pg_backend_pid() as pid');
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      const sleeping = rejection(victim.query('select pg_sleep(30)'));
      await new Promise((r) => setTimeout(r, 200));
      await admin.query('select pg_terminate_backend($1)', [rows[0]!.pid]);
      const err = await sleeping;
      expect((err as { code?: string }).code).toBe('57P01');
      expect(codeOf(err)).toBe('dependency_unavailable');
      // The next query on that client: "Client has encountered a connection error..."
      expect(codeOf(await rejection(victim.query('select 1')))).toBe('dependency_unavailable');
    } finally {
      await admin.end();
      await victim.end().catch(() => undefined);
    }

    const pool = new pg.Pool({ connectionString: adminUrl, max: 1, connectionTimeoutMillis: 200 });
    const held = await pool.connect();
    try {
      expect(codeOf(await rejection(pool.query('select 1')))).toBe('dependency_unavailable');
    } finally {
      held.release();
      await pool.end();
    }
  });

  it('a bad query or a constraint violation is a bug, not an outage', async () => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      expect(codeOf(await rejection(client.query('selec 1')))).toBe('not an outage (500)');
      expect(codeOf(await rejection(client.query('select 1/0')))).toBe('not an outage (500)');
      await client.query('create temporary table t (id int primary key)');
      await client.query('insert into t values (1)');
      expect(codeOf(await rejection(client.query('insert into t values (1)')))).toBe(
        'not an outage (500)',
      );
    } finally {
      await client.end();
    }
    expect(codeOf(new TypeError("Cannot read properties of undefined (reading 'id')"))).toBe(
      'not an outage (500)',
    );
    expect(outageError(new AppError('not_found', 'x'))).toBeUndefined();
    // A client that hangs up mid-body: Node's ECONNRESET "aborted" on the request is no outage.
    const clientGone = await new Promise<unknown>((resolve) => {
      const srv = http.createServer((req) => req.on('error', resolve).resume());
      servers.push(srv);
      srv.listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as net.AddressInfo;
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc');
          setTimeout(() => socket.destroy(), 100);
        });
      });
    });
    expect((clientGone as { code?: string }).code).toBe('ECONNRESET');
    expect(codeOf(clientGone)).toBe('not an outage (500)');
  });

  it('S3 silent past the timeout, or answering 503 SlowDown: dependency_unavailable; a missing key is not', async () => {
    const cfg = {
      bucket: s3.bucket,
      region: 'us-east-1',
      accessKeyId: 'S3RVER',
      secretAccessKey: 'S3RVER',
      forcePathStyle: true,
      prefix: '',
      partSizeBytes: 5 * 1024 * 1024,
      uploadConcurrency: 1,
      requestTimeoutMs: 1000,
    };
    const get = async (endpoint: string, key = 'nothing-here') => {
      const client: S3Client = createS3Client({ ...cfg, endpoint });
      try {
        return await rejection(client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key })));
      } finally {
        client.destroy();
      }
    };
    expect(codeOf(await get(s3.endpoint))).toBe('not an outage (500)'); // NoSuchKey
    // (A store refusing connections, ECONNREFUSED, is proven end to end in
    // tests/api/outage-s3.test.ts: under jest, Node's socket errors come from another realm and
    // the SDK's retry layer wraps them into a bare message.)
    // A server that accepts connections and never answers (a frozen store).
    const silent = net.createServer(() => undefined).listen(0, '127.0.0.1');
    servers.push(silent);
    await new Promise((r) => silent.once('listening', r));
    const silentErr = await get(`http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`);
    expect((silentErr as Error).name).toBe('TimeoutError');
    expect(codeOf(silentErr)).toBe('dependency_unavailable');
    // An overloaded store: 503 SlowDown, as S3 answers it.
    const slow = http
      .createServer((_req, res) => {
        res.writeHead(503, { 'Content-Type': 'application/xml' });
        res.end(
          '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
        );
      })
      .listen(0, '127.0.0.1');
    servers.push(slow);
    await new Promise((r) => slow.once('listening', r));
    const slowErr = await get(`http://127.0.0.1:${(slow.address() as net.AddressInfo).port}`);
    expect(codeOf(slowErr)).toBe('dependency_unavailable');
  }, 60_000);

  it("node-postgres's query timeout (a server that does not answer) is dependency_unavailable", async () => {
    const client = new pg.Client({ connectionString: adminUrl, query_timeout: 300 });
    await client.connect();
    try {
      const err = await rejection(client.query('select pg_sleep(2)'));
      expect((err as Error).message).toBe('Query read timeout');
      expect(codeOf(err)).toBe('dependency_unavailable');
    } finally {
      await client.end();
    }
  });

  it("the server's statement_timeout (57014, a statement cancelled) is dependency_unavailable", async () => {
    const client = new pg.Client({ connectionString: adminUrl, statement_timeout: 200 });
    await client.connect();
    try {
      const err = await rejection(client.query('select pg_sleep(2)'));
      expect((err as { code?: string }).code).toBe('57014');
      expect(codeOf(err)).toBe('dependency_unavailable');
    } finally {
      await client.end();
    }
  });

  it('PostgreSQL out of disk (53100) is insufficient_storage, out of memory (53200) dependency_unavailable', async () => {
    // Real server errors with those SQLSTATEs, as node-postgres delivers them.
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    const raise = (condition: string) =>
      rejection(
        client.query(
          `do $$ begin raise exception 'simulated' using errcode = '${condition}'; end $$`,
        ),
      );
    try {
      const diskFull = await raise('disk_full');
      expect((diskFull as { code?: string }).code).toBe('53100');
      expect(codeOf(diskFull)).toBe('insufficient_storage');
      const outOfMemory = await raise('out_of_memory');
      expect((outOfMemory as { code?: string }).code).toBe('53200');
      expect(codeOf(outOfMemory)).toBe('dependency_unavailable');
    } finally {
      await client.end();
    }
  });

  it("S3 RequestTimeTooSkewed (this host's clock) is a 500, not a retryable outage", async () => {
    const skewed = http
      .createServer((_req, res) => {
        res.writeHead(403, { 'Content-Type': 'application/xml' });
        res.end(
          '<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message></Error>',
        );
      })
      .listen(0, '127.0.0.1');
    servers.push(skewed);
    await new Promise((r) => skewed.once('listening', r));
    const client = createS3Client({
      endpoint: `http://127.0.0.1:${(skewed.address() as net.AddressInfo).port}`,
      bucket: 'b',
      region: 'us-east-1',
      accessKeyId: 'S3RVER',
      secretAccessKey: 'S3RVER',
      forcePathStyle: true,
      prefix: '',
      partSizeBytes: 5 * 1024 * 1024,
      uploadConcurrency: 1,
      requestTimeoutMs: 1000,
    });
    try {
      const err = await rejection(client.send(new GetObjectCommand({ Bucket: 'b', Key: 'k' })));
      expect((err as Error).name).toBe('RequestTimeTooSkewed');
      expect(codeOf(err)).toBe('not an outage (500)');
    } finally {
      client.destroy();
    }
  }, 30_000);

  it('a full disk (ENOSPC) is insufficient_storage', async () => {
    const err = await rejection(writeFile('/dev/full', Buffer.alloc(4096)));
    expect((err as { code?: string }).code).toBe('ENOSPC');
    expect(codeOf(err)).toBe('insufficient_storage');
  });

  it('the process guard keeps the process alive through an outage rejection, and ends it for a bug', async () => {
    const run = (reason: string) =>
      promisify(execFile)(
        process.execPath,
        [
          path.resolve(__dirname, '../support/run-ts.js'),
          path.resolve(__dirname, '../support/guard-probe.ts'),
          reason,
        ],
        { timeout: 30_000 },
      ).then(
        ({ stdout }) => ({ code: 0, stdout }),
        (err: { code: number; stdout: string }) => ({ code: err.code, stdout: err.stdout }),
      );
    const outage = await run('outage');
    expect(outage).toEqual({ code: 0, stdout: expect.stringContaining('still alive') });
    const bug = await run('bug');
    expect(bug.code).toBe(1);
    expect(bug.stdout).not.toContain('still alive');
  }, 60_000);
});
