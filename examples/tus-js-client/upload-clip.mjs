import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import * as tus from 'tus-js-client';

// node upload-clip.mjs clip.mov ORD-1001,ORD-1002, with EVIDENCE_URL and EVIDENCE_KEY (ingest).
const [path, orderIds] = process.argv.slice(2);
const upload = new tus.Upload(createReadStream(path), {
  endpoint: `${process.env.EVIDENCE_URL}/v1/uploads`,
  headers: { Authorization: `Bearer ${process.env.EVIDENCE_KEY}` },
  uploadSize: statSync(path).size,
  chunkSize: 8 * 1024 * 1024, // a stream is sent in pieces; each is acknowledged before the next
  retryDelays: [0, 1000, 3000, 10000, 30000],
  metadata: { filename: basename(path), kind: 'packing_video', orderId: orderIds },
  onSuccess: ({ lastResponse }) => {
    console.log(`${path}: archived as ${lastResponse.getHeader('Evidence-Item-Id')}`);
    console.log(`Repr-Digest: ${lastResponse.getHeader('Repr-Digest')}`);
  },
  onError: (err) => {
    console.error(`${path}: ${err.message}`);
    process.exitCode = 1;
  },
});
upload.start();
