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

// Test-only fault point, for the crash between promotion and commit: with
// TEST_HOLD_AFTER_PROMOTE=1 an evidence blob's promotion completes for real, the process says so
// on stdout ("promoted <key>"), and the request then waits for the SIGKILL the test sends; its
// item row never commits. Nothing of this is in the service's own code.
if (process.env.TEST_HOLD_AFTER_PROMOTE === '1') {
  const { FsBlobStore } = require('../../src/storage/blob-store.fs.ts');
  const { S3BlobStore } = require('../../src/storage/blob-store.s3.ts');
  for (const Store of [FsBlobStore, S3BlobStore]) {
    const promote = Store.prototype.promote;
    Store.prototype.promote = async function (...args) {
      const result = await promote.apply(this, args);
      if (args[3] === 'derived') return result;
      process.stdout.write(`promoted ${result.key}\n`);
      return new Promise(() => undefined);
    };
  }
}
// Responses checked against the OpenAPI document (tests/support/openapi-validator.ts): with
// TEST_OPENAPI_REPORT=<file>, every server the service creates is checked, and what did not
// match is written to the file as it happens (the test's process reads it; a SIGKILL loses none).
if (process.env.TEST_OPENAPI_REPORT) {
  const http = require('node:http');
  const { OpenApiValidator } = require('./openapi-validator.ts');
  const report = process.env.TEST_OPENAPI_REPORT;
  const validator = new OpenApiValidator();
  const record = validator.record.bind(validator);
  validator.record = (exchange) => {
    const seen = () => validator.violations.reduce((n, v) => n + v.count, 0);
    const before = seen();
    record(exchange);
    if (seen() !== before) {
      fs.writeFileSync(report, JSON.stringify(validator.violations));
    }
  };
  const createServer = http.createServer;
  http.createServer = (...args) => {
    const server = createServer(...args);
    validator.attach(server);
    return server;
  };
}
require('../../src/main.ts');
