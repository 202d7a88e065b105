/**
 * The disk baseline of the ingest bench (bench/ingest-bench.ts), in a process of its own so its
 * CPU and memory are measured alone: the thinnest Node handler that stores an upload. `node:http`,
 * the request body (the very multipart body the service gets) streamed to a new file in the given
 * directory, one fsync at the end, then 201. No parsing, no hashing, no database.
 * Prints `{"port":n}` as one line, then serves until killed.
 */
import { createWriteStream } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

const dir = process.argv[2]!;
let count = 0;

const server = http.createServer((req, res) => {
  const file = path.join(dir, `upload-${++count}`);
  // flush: the stream fsyncs the file once, before it closes it.
  pipeline(req, createWriteStream(file, { flush: true })).then(
    () => res.writeHead(201, { 'Content-Type': 'application/json' }).end('{"id":"thin"}'),
    (err: Error) => res.writeHead(500).end(err.message),
  );
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: (server.address() as AddressInfo).port }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
