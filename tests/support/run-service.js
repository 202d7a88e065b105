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
// TEST_OPENAPI_REPORT=<file>, every answer of every server the service creates is appended to the
// file as one JSON line as it ends (a SIGKILL loses none already written); the test's process
// checks them (childProcessReport). Nothing is compiled here: a restart stays as fast as the
// service's own.
if (process.env.TEST_OPENAPI_REPORT) {
  const http = require('node:http');
  const { OpenApiValidator } = require('./openapi-validator.ts');
  const report = process.env.TEST_OPENAPI_REPORT;
  // The validator's response tee (attach) without the validator: record() only writes.
  const recorder = Object.create(OpenApiValidator.prototype);
  recorder.record = (exchange) => {
    const line = {
      ...exchange,
      body: exchange.body ? exchange.body.toString('base64') : undefined,
    };
    fs.appendFileSync(report, `${JSON.stringify(line)}\n`);
  };
  recorder.detach = () => undefined;
  recorder.violations = []; // a failure of the tee itself lands here (not reported)
  const createServer = http.createServer;
  http.createServer = (...args) => {
    const server = createServer(...args);
    recorder.attach(server);
    return server;
  };
}
require('../../src/main.ts');
