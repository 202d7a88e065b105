import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { parseArgs } from 'node:util';
import { loadPublicKey } from '../custody/signing-key';
import { withContext } from './cli-context';

const USAGE = `Usage:
  npm run verify-audit [-- --public-key <file.pem>] [--json]

Recomputes the whole audit chain from the database, checks every signed checkpoint in the blob
store against the public key (the configured signing key's, or --public-key for an auditor who
holds only the public half), compares every live item's sha256, size and blob key with its
creation event, and reports the first broken link and the events no checkpoint covers yet.
Exit code 0: intact; 1: broken.`;

const { values } = parseArgs({
  options: {
    'public-key': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

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
    const report = await ctx.auditVerifier.verify(publicKey);
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
