// Writes src/http/openapi.json from the contract files (src/contract/*.contract.ts):
//   npm run openapi
// The file is checked in; tests/unit/openapi-generated.test.ts fails when it is stale.
// OPENAPI_OUT=<file> writes the same text there instead (the test runs the command that way).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { format, resolveConfig } from 'prettier';
import { buildOpenApiDocument } from '../src/contract/document';

export const OPENAPI_FILE = join(__dirname, '..', 'src', 'http', 'openapi.json');

async function main() {
  const options = { ...(await resolveConfig(OPENAPI_FILE)), filepath: OPENAPI_FILE };
  const text = await format(JSON.stringify(buildOpenApiDocument()), options);
  const out = process.env.OPENAPI_OUT || OPENAPI_FILE;
  writeFileSync(out, text);
  process.stdout.write(`wrote ${out}\n`);
}

void main();
