import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { parseArgs } from 'node:util';
import { loadPublicKey } from '../custody/signing-key';
import { certificatesFromPem } from '../custody/timestamp-authority';
import { withContext } from './cli-context';

const USAGE = `Usage:
  npm run verify-audit [-- --public-key <file.pem>] [--tsa-ca <root.pem>] [--json]

Recomputes the whole audit chain from the database, checks every signed checkpoint in the blob
store against the public key (the configured signing key's, or --public-key for an auditor who
holds only the public half), compares every live item's sha256, size and blob key with its
creation event, and reports the first broken link and the events no checkpoint covers yet.
With --tsa-ca (a timestamp authority's root, from the authority itself; by default the configured
TIMESTAMP_AUTHORITY_CA_FILE), it checks every checkpoint's RFC 3161 token too: over the exact
signed bytes, chaining to that root, so each stamped checkpoint existed at its token's time.
Exit code 0: intact; 1: broken; 2: bad usage.`;

const { values } = parseArgs({
  options: {
    'public-key': { type: 'string' },
    'tsa-ca': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

/** --tsa-ca, read before anything else: a bad file is a usage error (2), not a finding. */
function readTsaCa(file: string | undefined): { file: string; pem: string } | undefined {
  if (!file) return undefined;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    console.error(`cannot read ${file}: ${(err as Error).message}`);
    process.exit(2);
  }
  let count = 0;
  try {
    count = certificatesFromPem(pem).length;
  } catch (err) {
    console.error(`${file}: a certificate cannot be read (${(err as Error).message})`);
    process.exit(2);
  }
  if (count === 0) {
    console.error(`${file} holds no PEM certificate`);
    process.exit(2);
  }
  return { file, pem };
}
const givenTsaCa = readTsaCa(values['tsa-ca']);

void withContext(
  async (ctx) => {
    if (!values['public-key'] && ctx.signingKeyMissing) {
      throw new Error(
        `no signing key at ${ctx.config.custody.signingKeyFile} and CUSTODY_SIGNING_KEY unset: pass --public-key <file.pem> (GET /v1/custody/public-key)`,
      );
    }
    const publicKey = values['public-key']
      ? loadPublicKey(readFileSync(values['public-key'], 'utf8'))
      : createPublicKey(ctx.signingKey.publicKeyPem);
    const tsaCaPem = givenTsaCa?.pem ?? ctx.config.timestampAuthority?.caPem;
    const tsaCaFile = givenTsaCa?.file ?? ctx.config.timestampAuthority?.caFile;
    const report = await ctx.auditVerifier.verify(publicKey, { tsaCaPem });
    if (values.json) {
      console.log(JSON.stringify(report, null, 2));
    } else {
      console.log(
        `${report.eventsChecked} audit events checked (head ${report.headSeq}), ` +
          `${report.checkpointsChecked} signed checkpoints` +
          (report.lastCheckpoint
            ? ` (newest: event ${report.lastCheckpoint.seq}, ${report.lastCheckpoint.signedAt})`
            : ''),
      );
      if (report.itemsChecked !== null) {
        console.log(
          `${report.itemsChecked} live items compared with their creation events` +
            (report.itemsBeforeTrail > 0
              ? ` (${report.itemsBeforeTrail} received before the trail began, none to compare)`
              : ''),
        );
      }
      const time = report.trustedTime;
      console.log(
        time.tokens === 0
          ? 'Trusted time: none, no checkpoint carries an RFC 3161 token.'
          : time.verified === null
            ? `Trusted time: ${time.tokens} checkpoint token(s) not checked: give the timestamp authority's root with --tsa-ca.`
            : `Trusted time: ${time.verified} of ${time.tokens} checkpoint token(s) verified against ${tsaCaFile}` +
              (time.newest
                ? `; the newest stamped checkpoint (event ${time.newest.seq}) existed no later than ${time.newest.genTime} (${time.newest.signer})`
                : '') +
              (time.unstamped > 0
                ? `; ${time.unstamped} checkpoint(s) after the first stamped one have no token (not stamped yet, or no authority answered)`
                : '') +
              '.',
      );
      const tail = report.notYetCovered;
      console.log(
        tail
          ? `Not yet covered: ${tail.count} event(s) after the newest checkpoint (oldest: event ${tail.oldestSeq}, ${tail.oldestAgeSeconds} s ago); deleting them would not be detected until a checkpoint covers them.`
          : 'Not yet covered: none, the newest checkpoint covers every event.',
      );
      if (report.ok) console.log('OK: the audit chain is intact and matches every checkpoint.');
      else {
        console.log(`BROKEN: ${report.problems.length} problem(s).`);
        console.log(`First broken link: ${report.firstBrokenLink!.message}`);
        for (const p of report.problems.slice(0, 50)) {
          console.log(
            `  - [${p.kind}]${p.itemId ? ` item ${p.itemId}` : p.seq ? ` event ${p.seq}` : ''}: ${p.message}`,
          );
        }
        if (report.problems.length > 50)
          console.log(`  ... and ${report.problems.length - 50} more`);
      }
    }
    if (!report.ok) process.exitCode = 1;
  },
  { migrate: false },
);
