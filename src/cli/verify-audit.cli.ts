import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { parseArgs } from 'node:util';
import { AuditVerifier } from '../custody/audit-verifier';
import { loadPublicKey } from '../custody/signing-key';
import { withContext } from './cli-context';

const USAGE = `Usage:
  npm run verify-audit [-- --public-key <file.pem>] [--json]

Recomputes the whole audit chain from the database, checks every signed checkpoint in the blob
store against the public key (the configured signing key's, or --public-key for an auditor who
holds only the public half), and reports the first broken link. Exit code 0: intact; 1: broken.`;

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
    const report = await new AuditVerifier({
      db: ctx.db,
      repo: ctx.auditRepo,
      store: ctx.blobStore,
      publicKey,
    }).verify();
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
      if (report.ok) console.log('OK: the audit chain is intact and matches every checkpoint.');
      else {
        console.log(`BROKEN: ${report.problems.length} problem(s).`);
        console.log(`First broken link: ${report.firstBrokenLink!.message}`);
        for (const p of report.problems.slice(0, 50)) {
          console.log(`  - [${p.kind}]${p.seq ? ` event ${p.seq}` : ''}: ${p.message}`);
        }
        if (report.problems.length > 50)
          console.log(`  ... and ${report.problems.length - 50} more`);
      }
    }
    if (!report.ok) process.exitCode = 1;
  },
  { migrate: false },
);
