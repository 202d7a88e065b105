// Writes src/http/openapi.json from the contract files (src/contract/*.contract.ts):
//   npm run openapi
// The file is checked in; tests/unit/openapi-generated.test.ts fails when it is stale.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { format, resolveConfig } from 'prettier';
import { buildOpenApiDocument } from '../src/contract/document';

export const OPENAPI_FILE = join(__dirname, '..', 'src', 'http', 'openapi.json');

async function main() {
  const options = { ...(await resolveConfig(OPENAPI_FILE)), filepath: OPENAPI_FILE };
  const text = await format(JSON.stringify(buildOpenApiDocument()), options);
  writeFileSync(OPENAPI_FILE, text);
  process.stdout.write(`wrote ${OPENAPI_FILE}\n`);
}

void main();
