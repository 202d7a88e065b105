// Runs the service from its TypeScript sources in a child process (for tests that kill it):
// each .ts file is compiled on require with @swc/core, as the tests themselves are.
const fs = require('node:fs');
const { transformSync } = require('@swc/core');

require.extensions['.ts'] = (module, filename) => {
  const { code } = transformSync(fs.readFileSync(filename, 'utf8'), {
    filename,
    jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
    module: { type: 'commonjs' },
  });
  module._compile(code, filename);
};
require('../../src/main.ts');
