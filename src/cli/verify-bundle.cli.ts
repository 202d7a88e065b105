import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { verifyBundle } from '../bundles/bundle-verifier';

const USAGE = `Usage:
  npm run verify-bundle -- <bundle.zip> [--public-key <file.pem>] [--tsa-ca <root.pem>] [--json]

Checks a dispute bundle offline: the Ed25519 signatures of manifest.json and SHA256SUMS, the
SHA-256 of every file, that the manifest lists exactly the evidence files present, the audit
excerpt and its signed checkpoint. Give the archive's public key (GET /v1/custody/public-key)
with --public-key; without it the key inside the bundle is used, and you must compare its
fingerprint with the one the shop publishes. With --tsa-ca (the timestamp authority's root,
obtained from the authority, not from the bundle) the RFC 3161 tokens are checked too: over the
exact bytes, by that authority, dated no later than the bundle's creation time (plus 10 minutes).
Exit code 0: intact; 1: not; 2: bad usage.`;

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      'public-key': { type: 'string' },
      'tsa-ca': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
} catch (err) {
  console.error(`${(err as Error).message}\n\n${USAGE}`);
  process.exit(2);
}
const { values, positionals } = parsed;
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (positionals.length !== 1) {
  console.error(USAGE);
  process.exit(2);
}

async function main(file: string): Promise<number> {
  let publicKeyPem: string | undefined;
  if (values['public-key']) {
    try {
      publicKeyPem = readFileSync(values['public-key'], 'utf8');
    } catch (err) {
      console.error(`cannot read ${values['public-key']}: ${(err as Error).message}`);
      return 2;
    }
  }
  let tsaCaPem: string | undefined;
  if (values['tsa-ca']) {
    try {
      tsaCaPem = readFileSync(values['tsa-ca'], 'utf8');
    } catch (err) {
      console.error(`cannot read ${values['tsa-ca']}: ${(err as Error).message}`);
      return 2;
    }
  }
  const report = await verifyBundle(file, { publicKeyPem, tsaCaPem });
  if (values.json) {
    console.log(JSON.stringify(report, null, 2));
    return report.ok ? 0 : 1;
  }
  console.log(
    `Bundle ${report.bundleId ?? '?'} of complaint ${report.complaintId ?? '?'} (${file})`,
  );
  if (report.key) {
    console.log(
      `Public key: ${report.key.source === 'given' ? values['public-key'] : 'the one inside the bundle'}, fingerprint ${report.key.fingerprint}`,
    );
  }
  for (const f of report.files) {
    console.log(`  ${f.ok ? 'OK  ' : 'BAD '} ${f.path}  ${f.size} bytes  sha256 ${f.sha256}`);
  }
  for (const p of report.passed) console.log(`  passed: ${p}`);
  for (const w of report.warnings) console.log(`WARNING: ${w}`);
  if (report.ok) {
    console.log(
      `OK: both signatures are valid and all ${report.files.length} evidence files, the manifest and the audit excerpt (${report.auditEvents} events, checkpoint at event ${report.checkpointSeq}) are intact.`,
    );
    if (report.timestamp) {
      console.log(
        `Third-party time: manifest.json existed at ${report.timestamp.genTime} (RFC 3161 token by ${report.timestamp.signer}).`,
      );
    }
  } else {
    console.log(`FAILED: ${report.problems.length} problem(s):`);
    for (const p of report.problems) console.log(`  - ${p}`);
  }
  return report.ok ? 0 : 1;
}

main(positionals[0]!).then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    console.error(`verify-bundle failed: ${(err as Error).message}`);
    process.exitCode = 1;
  },
);
