// An s3rver in a process of its own, so a test can freeze it (SIGSTOP) or kill it like a real
// S3 server. Usage: node s3rver-process.js <directory> <bucket> [port]; prints {"port":N} when up.
const S3rver = require('s3rver');

const [directory, bucket, port] = process.argv.slice(2);
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(port ?? 0),
  silent: true,
  directory,
  configureBuckets: [{ name: bucket, configs: [] }],
});
server.run().then(
  ({ port: bound }) => process.stdout.write(`${JSON.stringify({ port: bound })}\n`),
  (err) => {
    process.stderr.write(`${(err && err.stack) || err}\n`);
    process.exit(1);
  },
);
process.on('SIGTERM', () => server.close().then(() => process.exit(0)));
