// Runs a TypeScript entry point (a CLI) from its sources in a child process: each .ts file is
// compiled on require with @swc/core, as the tests themselves are.
//   node tests/support/run-ts.js src/cli/verify-bundle.cli.ts <args...>
const fs = require('node:fs');
const path = require('node:path');
const { transformSync } = require('@swc/core');

require.extensions['.ts'] = (module, filename) => {
  const { code } = transformSync(fs.readFileSync(filename, 'utf8'), {
    filename,
    jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
    module: { type: 'commonjs' },
  });
  module._compile(code, filename);
};
const entry = path.resolve(process.argv[2]);
process.argv.splice(1, 2, entry);
require(entry);
