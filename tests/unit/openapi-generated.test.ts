import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildOpenApiDocument } from '../../src/contract/document';

describe('src/http/openapi.json', () => {
  it('is what the contract files generate (run `npm run openapi` after changing one)', () => {
    const checkedIn = JSON.parse(
      readFileSync(join(__dirname, '..', '..', 'src', 'http', 'openapi.json'), 'utf8'),
    );
    expect(checkedIn).toEqual(buildOpenApiDocument());
  });

  it('fails when the checked-in file differs from the contract in one description', () => {
    const stale = buildOpenApiDocument();
    stale.paths['/v1/holds'].get.summary = 'List legal holds (old)';
    expect(stale).not.toEqual(buildOpenApiDocument());
  });
});
