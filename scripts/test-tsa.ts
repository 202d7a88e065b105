// A local RFC 3161 timestamp authority, to try the archive's third-party time without a commercial
// one (the README's "Third-party time" section) and for the tests: `openssl ts -reply` behind a
// small HTTP server, its throwaway root CA and TSA certificate made by openssl on first run.
//   npm run test-tsa -- [--dir data/test-tsa] [--port 3318]
// Its tokens are real RFC 3161 tokens, but anyone holding the directory can date anything: a trial
// and test tool, never a TSA for real evidence.
import { parseArgs } from 'node:util';
import { makeTestPki, startTestTsa } from '../tests/support/test-tsa';

async function main() {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string', default: 'data/test-tsa' },
      port: { type: 'string', default: '3318' },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error(`--port must be a TCP port, not ${values.port}`);
    process.exit(2);
  }
  const pki = await makeTestPki('Local Test TSA', values.dir);
  const tsa = await startTestTsa(pki, port);
  console.log(`test TSA (trials only, never for real evidence) on ${tsa.url}`);
  console.log(`  TIMESTAMP_AUTHORITY_URLS=${tsa.url}`);
  console.log(`  TIMESTAMP_AUTHORITY_CA_FILE=${pki.caFile}`);
  const stop = () => void tsa.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: Error) => {
  console.error(`test TSA: ${err.message}`);
  process.exit(1);
});
