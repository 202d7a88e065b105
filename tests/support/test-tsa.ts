import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

const run = promisify(execFile);
const openssl = (args: string[], cwd?: string) => run('openssl', args, { cwd });

/** A test certificate authority and a TSA certificate it issued (critical timeStamping EKU). */
export interface TestPki {
  dir: string;
  /** The root, PEM: what TIMESTAMP_AUTHORITY_CA_FILE names. */
  caFile: string;
  tsaCert: string;
  tsaKey: string;
  /** The `openssl ts -reply` configuration. */
  config: string;
  remove(): void;
}

/**
 * Makes a CA and a TSA certificate with `openssl`: in a temp dir, or in `keep` (made once and
 * reused on later calls, so a root handed to a service stays the same across restarts).
 */
export async function makeTestPki(name = 'Test TSA', keep?: string): Promise<TestPki> {
  const dir = keep ? path.resolve(keep) : mkdtempSync(path.join(tmpdir(), 'test-tsa-'));
  const p = (f: string) => path.join(dir, f);
  const pki: TestPki = {
    dir,
    caFile: p('ca.pem'),
    tsaCert: p('tsa.pem'),
    tsaKey: p('tsa.key'),
    config: p('tsa.cnf'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  if (keep && existsSync(pki.config)) {
    // Kept while its certificates are good for another day; made again when they are not.
    const valid = await openssl(['x509', '-checkend', '86400', '-noout', '-in', pki.tsaCert]).then(
      () => true,
      () => false,
    );
    if (valid) return pki;
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(
    p('ext.cnf'),
    [
      '[tsa]',
      'basicConstraints = CA:FALSE',
      'keyUsage = critical, digitalSignature',
      'extendedKeyUsage = critical, timeStamping',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
      '',
    ].join('\n'),
  );
  await openssl([
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', pki.caFile,
    '-subj', `/CN=${name} Root CA`, '-days', '365',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]); // prettier-ignore
  await openssl([
    'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('tsa.key'), '-out', p('tsa.csr'),
    '-subj', `/CN=${name}`,
  ]); // prettier-ignore
  await openssl([
    'x509', '-req', '-in', p('tsa.csr'), '-CA', pki.caFile, '-CAkey', p('ca.key'),
    '-CAcreateserial', '-out', pki.tsaCert, '-days', '365', '-extfile', p('ext.cnf'),
    '-extensions', 'tsa',
  ]); // prettier-ignore
  writeFileSync(p('tsaserial'), '01\n');
  // Written last: its presence says the directory holds a whole PKI.
  writeFileSync(
    pki.config,
    [
      '[ tsa ]',
      'default_tsa = tsa_config1',
      '[ tsa_config1 ]',
      `serial = ${p('tsaserial')}`,
      'crypto_device = builtin',
      `signer_cert = ${pki.tsaCert}`,
      `certs = ${pki.caFile}`,
      `signer_key = ${p('tsa.key')}`,
      'signer_digest = sha256',
      'default_policy = 1.2.3.4.1',
      'other_policies = 1.2.3.4.5',
      'digests = sha256, sha384, sha512',
      'accuracy = secs:1',
      'ordering = no',
      'tsa_name = yes',
      'ess_cert_id_chain = no',
      'ess_cert_id_alg = sha256',
      '',
    ].join('\n'),
  );
  return pki;
}

/**
 * How the test TSA answers: `ok` honestly; `down` drops the connection; `slow` never answers;
 * `other-bytes` stamps a different message imprint; `wrong-nonce` stamps another nonce; `huge`
 * answers 2 MiB in chunks without a Content-Length.
 */
export type TsaMode = 'ok' | 'down' | 'slow' | 'other-bytes' | 'wrong-nonce' | 'huge';

export interface TestTsa {
  url: string;
  pki: TestPki;
  mode: TsaMode;
  /** Requests received, by mode they were answered in. */
  requests: TsaMode[];
  close(): Promise<void>;
}

/** Rewrites a TimeStampReq as a misbehaving TSA would before answering it. */
function tamper(query: Buffer, mode: TsaMode): Buffer {
  if (mode !== 'other-bytes' && mode !== 'wrong-nonce') return query;
  const req = pkijs.TimeStampReq.fromBER(query);
  if (mode === 'other-bytes') {
    const other = createHash('sha256').update('some other bytes').digest();
    req.messageImprint.hashedMessage = new asn1js.OctetString({ valueHex: other });
  } else {
    req.nonce = new asn1js.Integer({ value: 424242 });
  }
  return Buffer.from(req.toSchema().toBER());
}

/**
 * A local RFC 3161 timestamp authority: answers `application/timestamp-query` POSTs with
 * `openssl ts -reply`, so tokens are real RFC 3161 tokens. Misbehaves on demand (`mode`).
 */
export async function startTestTsa(pki: TestPki, port = 0): Promise<TestTsa> {
  const sockets = new Set<import('node:net').Socket>();
  // One `openssl ts -reply` at a time: each reads, increments and rewrites the serial file.
  let replying: Promise<unknown> = Promise.resolve();
  const oneAtATime = <T>(work: () => Promise<T>): Promise<T> => {
    const done = replying.then(work);
    replying = done.catch(() => undefined);
    return done;
  };
  const tsa: TestTsa = {
    url: '',
    pki,
    mode: 'ok',
    requests: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((req, res) => {
    const mode = tsa.mode;
    tsa.requests.push(mode);
    if (mode === 'down') {
      req.socket.destroy();
      return;
    }
    if (mode === 'slow') return; // never answers; the client's timeout ends it
    if (mode === 'huge') {
      res.writeHead(200, { 'content-type': 'application/timestamp-reply' }); // chunked
      const chunk = Buffer.alloc(64 * 1024, 0x30);
      let sent = 0;
      const more = () => {
        while (sent < 32 && !res.destroyed) {
          sent += 1;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        if (
          req.method !== 'POST' ||
          req.headers['content-type'] !== 'application/timestamp-query'
        ) {
          res.writeHead(415).end();
          return;
        }
        const id = randomUUID();
        const query = path.join(pki.dir, `${id}.tsq`);
        const reply = path.join(pki.dir, `${id}.tsr`);
        try {
          writeFileSync(query, tamper(Buffer.concat(chunks), mode));
          await oneAtATime(() => openssl([
            'ts', '-reply', '-config', pki.config, '-queryfile', query,
            '-signer', pki.tsaCert, '-inkey', pki.tsaKey, '-chain', pki.caFile, '-out', reply,
          ])); // prettier-ignore
          res
            .writeHead(200, { 'content-type': 'application/timestamp-reply' })
            .end(readFileSync(reply));
        } catch (err) {
          res.writeHead(500).end(String(err));
        } finally {
          rmSync(query, { force: true });
          rmSync(reply, { force: true });
        }
      })();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  tsa.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tsa`;
  return tsa;
}

/** `openssl ts -verify` of a TimeStampResp over `data` against `caFile`: its exit code and output. */
export async function opensslVerify(
  response: Buffer,
  data: Buffer,
  caFile: string,
): Promise<{ ok: boolean; output: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tsa-verify-'));
  try {
    writeFileSync(path.join(dir, 'token.tsr'), response);
    writeFileSync(path.join(dir, 'data'), data);
    const r = await run('openssl', [
      'ts', '-verify', '-data', path.join(dir, 'data'), '-in', path.join(dir, 'token.tsr'),
      '-CAfile', caFile,
    ]).then(
      (o) => ({ ok: true, output: o.stdout + o.stderr }),
      (e: { stdout?: string; stderr?: string }) => ({
        ok: false,
        output: `${e.stdout ?? ''}${e.stderr ?? ''}`,
      }),
    ); // prettier-ignore
    return r;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
