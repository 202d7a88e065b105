import { createHash, verify, type KeyObject } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yauzl from 'yauzl';
import { canonicalJson, chainHash, type ChainedEvent } from '../base/audit-chain';
import { fingerprintOf, loadPublicKey, verifySignature } from '../custody/signing-key';
import { certificatesFromPem, verifyTimestampResponse } from '../custody/timestamp-authority';
import {
  AUDIT,
  BUNDLE_FORMAT,
  CHECKPOINT_JSON,
  CHECKPOINT_TSR,
  MANIFEST_TSR,
  MAX_STAMP_DELAY_MS,
  FILES_DIR,
  FIXED_FILES,
  MANIFEST,
  MANIFEST_SCHEMAS,
  OPTIONAL_FILES,
  MANIFEST_SIG,
  parseSums,
  PUBLIC_KEY,
  SUMS,
  SUMS_SIG,
  type BundleManifest,
} from './bundle-format';

/** The small files are read whole; anything bigger than this is not one of ours. */
const MAX_SMALL_FILE = 256 << 20;

export interface BundleReport {
  ok: boolean;
  bundleId: string | null;
  complaintId: string | null;
  /** The key the signatures were checked with, and where it came from. */
  key: { source: 'given' | 'embedded'; fingerprint: string } | null;
  /** The fingerprint the manifest names. */
  manifestFingerprint: string | null;
  files: { path: string; size: number; sha256: string; ok: boolean }[];
  auditEvents: number;
  checkpointSeq: number | null;
  /** The TSA's time over manifest.json, when the bundle has a token and it was checked. */
  timestamp: { genTime: string; signer: string } | null;
  /** What passed, in words. */
  passed: string[];
  /** What failed, in words; empty when ok. */
  problems: string[];
  warnings: string[];
}

interface Read {
  size: number;
  sha256: string;
  data?: Buffer;
}

/**
 * Checks a dispute bundle offline, with nothing but the ZIP and, ideally, the archive's public key
 * obtained separately: both signatures, every file's SHA-256 against SHA256SUMS and the manifest,
 * that the manifest lists exactly the evidence files present, the audit excerpt's hash and each
 * of its events' chain hashes, and the signed checkpoint.
 */
export async function verifyBundle(
  zipPath: string,
  opts: { publicKeyPem?: string; tsaCaPem?: string } = {},
): Promise<BundleReport> {
  const report: BundleReport = {
    ok: false,
    bundleId: null,
    complaintId: null,
    key: null,
    manifestFingerprint: null,
    files: [],
    auditEvents: 0,
    checkpointSeq: null,
    timestamp: null,
    passed: [],
    problems: [],
    warnings: [],
  };
  const problem = (m: string) => report.problems.push(m);

  let entries: Map<string, Read>;
  try {
    entries = await readZip(zipPath, problem);
  } catch (err) {
    problem(`the ZIP cannot be read: ${(err as Error).message}`);
    return report;
  }
  const missing = FIXED_FILES.filter((f) => !entries.get(f)?.data);
  if (missing.length > 0) problem(`missing from the bundle: ${missing.join(', ')}`);
  const text = (name: string) => entries.get(name)?.data?.toString('utf8');

  // The key: the one given (fetched from the archive beforehand), else the one inside.
  let key: KeyObject | undefined;
  try {
    if (opts.publicKeyPem) {
      key = loadPublicKey(opts.publicKeyPem);
      report.key = { source: 'given', fingerprint: fingerprintOf(key) };
      const embedded = text(PUBLIC_KEY);
      if (embedded !== undefined && safeFingerprint(embedded) !== report.key.fingerprint) {
        problem(
          `${PUBLIC_KEY} in the bundle is not the public key given (${safeFingerprint(embedded) ?? 'unreadable'})`,
        );
      }
    } else if (text(PUBLIC_KEY) !== undefined) {
      key = loadPublicKey(text(PUBLIC_KEY)!);
      report.key = { source: 'embedded', fingerprint: fingerprintOf(key) };
      report.warnings.push(
        `checked with the public key inside the bundle: anyone can sign with a key of their own, so compare its fingerprint ${report.key.fingerprint} with the one the shop publishes (GET /v1/custody/public-key), or pass --public-key`,
      );
    }
  } catch (err) {
    problem(`the public key cannot be read: ${(err as Error).message}`);
  }

  const checkSignature = (file: string, sigFile: string) => {
    const data = entries.get(file)?.data;
    const sig = entries.get(sigFile)?.data;
    if (!key || !data || !sig) return;
    let valid = false;
    try {
      valid = verify(null, data, key, sig);
    } catch {
      valid = false;
    }
    if (valid) {
      report.passed.push(`${sigFile}: a valid Ed25519 signature of ${file}`);
    } else {
      problem(`${sigFile} is not a valid signature of ${file} by this key`);
    }
  };
  checkSignature(MANIFEST, MANIFEST_SIG);
  checkSignature(SUMS, SUMS_SIG);

  // SHA256SUMS: every file but itself and its signature, each with its hash.
  const sumsText = text(SUMS);
  if (sumsText !== undefined) {
    const sums = parseSums(sumsText);
    if (typeof sums === 'string') problem(sums);
    else {
      const expected = [...entries.keys()].filter((n) => n !== SUMS && n !== SUMS_SIG);
      const unlisted = expected.filter((n) => !sums.has(n));
      const absent = [...sums.keys()].filter((n) => !entries.has(n));
      if (unlisted.length) problem(`in the ZIP but not in ${SUMS}: ${unlisted.join(', ')}`);
      if (absent.length) problem(`in ${SUMS} but not in the ZIP: ${absent.join(', ')}`);
      let bad = 0;
      for (const [name, hash] of sums) {
        const got = entries.get(name);
        if (got && got.sha256 !== hash) {
          bad++;
          problem(`${name}: SHA-256 ${got.sha256}, ${SUMS} says ${hash}`);
        }
      }
      if (!bad && !unlisted.length && !absent.length) {
        report.passed.push(`${SUMS}: all ${sums.size} files match`);
      }
    }
  }

  // The manifest: what each evidence file is, in the format its version declares.
  let manifest: BundleManifest | undefined;
  try {
    const m = text(MANIFEST);
    if (m !== undefined) manifest = JSON.parse(m) as BundleManifest;
  } catch {
    problem(`${MANIFEST} is not valid JSON`);
  }
  if (manifest) {
    const failure = manifestFormatProblem(manifest);
    if (failure) problem(failure);
    // Checked on regardless, as far as it goes: the report says what else disagrees.
    if (typeof manifest !== 'object' || Array.isArray(manifest)) manifest = undefined;
  }
  if (manifest) {
    checkManifest(manifest, entries, key, report);
    checkAudit(manifest, entries.get(AUDIT)?.data, report);
    await checkTimestamps(manifest, entries, opts.tsaCaPem, report);
  }

  report.ok = report.problems.length === 0;
  return report;
}

/** Why the manifest does not follow the schema of the version it names; undefined when it does. */
export function manifestFormatProblem(raw: unknown): string | undefined {
  const version = (raw as { version?: unknown } | null)?.version;
  const schema = MANIFEST_SCHEMAS[version as keyof typeof MANIFEST_SCHEMAS];
  if (!schema) {
    return `${MANIFEST} has format version ${JSON.stringify(version ?? null)}; this verifier reads version ${Object.keys(MANIFEST_SCHEMAS).join(', ')}`;
  }
  const result = schema.safeParse(raw);
  if (result.success) return undefined;
  const issues = result.error.issues.slice(0, 5).map((i) => {
    const where = i.path.length ? i.path.join('.') : '(the manifest)';
    return `${where}: ${i.message}`;
  });
  const more = result.error.issues.length > 5 ? `; and ${result.error.issues.length - 5} more` : '';
  return `${MANIFEST} does not follow the version ${String(version)} manifest format: ${issues.join('; ')}${more}`;
}

function checkManifest(
  m: BundleManifest,
  entries: Map<string, Read>,
  key: KeyObject | undefined,
  report: BundleReport,
): void {
  const problem = (s: string): void => {
    report.problems.push(s);
  };
  if (m.format !== BUNDLE_FORMAT) problem(`${MANIFEST} is not a dispute bundle manifest`);
  report.bundleId = typeof m.bundleId === 'string' ? m.bundleId : null;
  report.complaintId = typeof m.complaintId === 'string' ? m.complaintId : null;
  report.manifestFingerprint = m.signing?.publicKeyFingerprint ?? null;
  if (report.key && report.manifestFingerprint !== report.key.fingerprint) {
    problem(
      `${MANIFEST} names the key ${report.manifestFingerprint}, but the signatures were checked with ${report.key.fingerprint}`,
    );
  }
  const files = Array.isArray(m.files) ? m.files : [];
  const listed = new Set(files.map((f) => f.path));
  const present = [...entries.keys()].filter((n) => n.startsWith(FILES_DIR));
  const extra = present.filter((p) => !listed.has(p));
  const absent = [...listed].filter((p) => !entries.has(p));
  if (extra.length) problem(`in the ZIP but not in ${MANIFEST}: ${extra.join(', ')}`);
  if (absent.length) problem(`in ${MANIFEST} but not in the ZIP: ${absent.join(', ')}`);
  const stray = [...entries.keys()].filter(
    (n) => !n.startsWith(FILES_DIR) && !FIXED_FILES.includes(n) && !OPTIONAL_FILES.includes(n),
  );
  if (stray.length) problem(`files that are not part of a bundle: ${stray.join(', ')}`);
  if (files.length !== m.fileCount)
    problem(`${MANIFEST} lists ${files.length} files, says ${m.fileCount}`);
  let good = 0;
  for (const f of files) {
    const got = entries.get(f.path);
    if (!got) continue;
    const ok = got.sha256 === f.sha256 && got.size === f.size;
    report.files.push({ path: f.path, size: got.size, sha256: got.sha256, ok });
    if (ok) good++;
    else if (got.sha256 !== f.sha256) {
      problem(`${f.path}: SHA-256 ${got.sha256}, ${MANIFEST} says ${f.sha256}`);
    } else problem(`${f.path}: ${got.size} bytes, ${MANIFEST} says ${f.size}`);
  }
  if (files.length && good === files.length && !extra.length) {
    report.passed.push(
      `${MANIFEST}: lists exactly the ${files.length} evidence files, all hashes and sizes match`,
    );
  }

  // The checkpoint: signed by the same key, over its canonical JSON.
  const cp = m.checkpoint;
  if (!cp?.checkpoint || typeof cp.signature !== 'string') {
    problem(`${MANIFEST} has no signed audit checkpoint`);
    return;
  }
  report.checkpointSeq = cp.checkpoint.seq;
  if (key) {
    if (verifySignature(key, canonicalJson(cp.checkpoint), cp.signature)) {
      report.passed.push(`audit checkpoint at event ${cp.checkpoint.seq}: validly signed`);
    } else problem(`the audit checkpoint in ${MANIFEST} is not validly signed by this key`);
  }
}

function checkAudit(m: BundleManifest, buf: Buffer | undefined, report: BundleReport): void {
  const problem = (s: string): void => {
    report.problems.push(s);
  };
  if (buf === undefined) return;
  const text = buf.toString('utf8');
  const ex = m.auditExcerpt;
  if (!ex) return problem(`${MANIFEST} does not describe ${AUDIT}`);
  if (createHash('sha256').update(buf).digest('hex') !== ex.sha256 || buf.length !== ex.size) {
    problem(`${AUDIT} is not the excerpt ${MANIFEST} describes (SHA-256 or size differs)`);
  }
  const cp = m.checkpoint?.checkpoint;
  let prev: { seq: number; hash: string } | undefined;
  let count = 0;
  let bad = 0;
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    count++;
    let e: ChainedEvent & { prevHash: string; hash: string };
    try {
      e = JSON.parse(line) as typeof e;
    } catch {
      bad++;
      problem(`${AUDIT} line ${i + 1} is not JSON`);
      continue;
    }
    const { prevHash, hash, ...event } = e;
    if (chainHash(prevHash, event) !== hash) {
      bad++;
      problem(`${AUDIT} event ${e.seq}: its hash does not match its content`);
    }
    if (prev && e.seq <= prev.seq) {
      bad++;
      problem(`${AUDIT} event ${e.seq} is out of order`);
    }
    if (prev && e.seq === prev.seq + 1 && e.prevHash !== prev.hash) {
      bad++;
      problem(`${AUDIT} event ${e.seq} does not link to event ${prev.seq}`);
    }
    if (cp && e.seq > cp.seq) {
      bad++;
      problem(`${AUDIT} event ${e.seq} is after the checkpoint (${cp.seq})`);
    }
    if (cp && e.seq === cp.seq && e.hash !== cp.hash) {
      bad++;
      problem(`${AUDIT} event ${e.seq} is not the event the checkpoint signed`);
    }
    prev = { seq: e.seq, hash: e.hash };
  }
  report.auditEvents = count;
  if (count !== ex.events) problem(`${AUDIT} has ${count} events, ${MANIFEST} says ${ex.events}`);
  if (!bad) report.passed.push(`${AUDIT}: ${count} events, each hash matches its event`);
}

const TIME_FILES = [MANIFEST_TSR, CHECKPOINT_JSON, CHECKPOINT_TSR];

/**
 * The RFC 3161 tokens: each over the exact bytes it stamps, signed by a timeStamping certificate
 * chaining to the TSA root given (never one from the bundle), and dated no later than the bundle's
 * `createdAt` plus MAX_STAMP_DELAY_MS. Without a root the tokens are not checked (a warning).
 */
async function checkTimestamps(
  m: BundleManifest,
  entries: Map<string, Read>,
  caPem: string | undefined,
  report: BundleReport,
): Promise<void> {
  const problem = (s: string): void => {
    report.problems.push(s);
  };
  const manifestToken = entries.get(MANIFEST_TSR)?.data;
  if (!manifestToken) {
    if (caPem !== undefined) {
      problem(
        `a TSA root was given, but the bundle has no ${MANIFEST_TSR}: it carries no third-party time`,
      );
    } else report.warnings.push('the bundle carries no third-party time (no RFC 3161 token)');
    return;
  }
  if (caPem === undefined) {
    report.warnings.push(
      `${MANIFEST_TSR} was not checked: give the timestamp authority's root certificate, obtained from the authority itself, with --tsa-ca`,
    );
    return;
  }
  let roots;
  try {
    roots = certificatesFromPem(caPem);
  } catch (err) {
    return problem(`the TSA root cannot be read: ${(err as Error).message}`);
  }
  if (roots.length === 0) return problem('the TSA root file holds no certificate');
  const created = Date.parse(m.createdAt);
  const check = async (
    tokenFile: string,
    token: Buffer,
    data: Buffer | undefined,
    what: string,
  ) => {
    if (!data) return problem(`${tokenFile} stamps ${what}, which is not in the bundle`);
    try {
      // Neither long after the time the bundle claims, nor before it (less the clock skew
      // allowed): a token dated before the manifest was made cannot be over it.
      const t = await verifyTimestampResponse(roots, tokenFile, token, data, {
        notBefore: new Date(created),
      });
      if (!(t.genTime.getTime() <= created + MAX_STAMP_DELAY_MS)) {
        return problem(
          `${tokenFile} is dated ${t.genTime.toISOString()}, after the bundle's creation time ${m.createdAt} (allowed: ${MAX_STAMP_DELAY_MS / 60_000} minutes)`,
        );
      }
      report.passed.push(
        `${tokenFile}: an RFC 3161 token over ${what} by ${t.signer}, time ${t.genTime.toISOString()}`,
      );
      return t;
    } catch (err) {
      problem((err as Error).message);
    }
  };
  const t = await check(MANIFEST_TSR, manifestToken, entries.get(MANIFEST)?.data, MANIFEST);
  if (t) report.timestamp = { genTime: t.genTime.toISOString(), signer: t.signer };
  const cpToken = entries.get(CHECKPOINT_TSR)?.data;
  const cpData = entries.get(CHECKPOINT_JSON)?.data;
  if (cpData && m.checkpoint?.checkpoint) {
    if (cpData.toString('utf8') !== canonicalJson(m.checkpoint.checkpoint)) {
      problem(`${CHECKPOINT_JSON} is not the checkpoint ${MANIFEST} carries`);
    }
  }
  if (cpToken) await check(CHECKPOINT_TSR, cpToken, cpData, CHECKPOINT_JSON);
  else if (cpData) problem(`${CHECKPOINT_JSON} is in the bundle without ${CHECKPOINT_TSR}`);
}

function safeFingerprint(pem: string): string | undefined {
  try {
    return fingerprintOf(loadPublicKey(pem));
  } catch {
    return undefined;
  }
}

/** Every entry's size and SHA-256 (streamed); the small named files also kept whole. */
async function readZip(file: string, problem: (m: string) => void): Promise<Map<string, Read>> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.open(
      file,
      { lazyEntries: true, validateEntrySizes: true, strictFileNames: true },
      (err, z) => (err ? reject(err) : resolve(z)),
    ),
  );
  const out = new Map<string, Read>();
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on('error', reject);
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        void (async () => {
          const name = entry.fileName;
          if (name.endsWith('/')) return zip.readEntry();
          if (out.has(name)) problem(`${name} appears twice in the ZIP`);
          const keep = FIXED_FILES.includes(name) || TIME_FILES.includes(name);
          if (keep && entry.uncompressedSize > MAX_SMALL_FILE) {
            problem(`${name} is implausibly large (${entry.uncompressedSize} bytes)`);
            return zip.readEntry();
          }
          const stream = await new Promise<NodeJS.ReadableStream>((res, rej) =>
            zip.openReadStream(entry, (err, s) => (err ? rej(err) : res(s))),
          );
          const hash = createHash('sha256');
          const chunks: Buffer[] = [];
          let size = 0;
          await pipeline(
            stream,
            new Writable({
              write(chunk: Buffer, _enc, cb) {
                hash.update(chunk);
                size += chunk.length;
                if (keep) chunks.push(chunk);
                cb();
              },
            }),
          );
          out.set(name, {
            size,
            sha256: hash.digest('hex'),
            ...(keep ? { data: Buffer.concat(chunks) } : {}),
          });
          zip.readEntry();
        })().catch(reject);
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  return out;
}
