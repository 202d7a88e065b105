import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { S3Bucket } from './s3-client';

/**
 * Streams a body into one object: a body smaller than a part as one PutObject, a larger one as a
 * multipart upload with `uploadConcurrency` parts in flight. Incoming chunks are copied into
 * part buffers that are reused from part to part (at most uploadConcurrency + 1 of them, allocated
 * once): lib-storage's Upload concatenates a fresh buffer for every part instead, and on a
 * multi-GB body those dead 5 MiB buffers pile up to V8's external-memory GC threshold (tens of
 * MB of peak RSS) and cost their page faults on every part. Any failure, of the body or of S3,
 * aborts the multipart upload: nothing is left under `key` but a complete object.
 */
export async function uploadStream(
  bucket: S3Bucket,
  key: string,
  body: AsyncIterable<Buffer>,
): Promise<void> {
  const { partSizeBytes: partSize, uploadConcurrency } = bucket.cfg;
  const Bucket = bucket.name;
  const Key = bucket.objectKey(key);
  const spare: Buffer[] = [];
  let current: Buffer = Buffer.allocUnsafeSlow(partSize);
  let filled = 0;
  let uploadId: string | undefined;
  const etags: string[] = [];
  let parts = 0;
  const inFlight = new Set<Promise<void>>();
  // A failed part is kept here (never an unhandled rejection) and thrown at the next check.
  let failed: { err: unknown } | undefined;
  const check = () => {
    if (failed) throw failed.err;
  };

  const sendPart = (part: Buffer, length: number) => {
    const PartNumber = ++parts;
    const sending = bucket.client
      .send(
        new UploadPartCommand({
          Bucket,
          Key,
          UploadId: uploadId,
          PartNumber,
          Body: part.subarray(0, length),
        }),
      )
      .then(({ ETag }) => {
        if (!ETag) throw new Error(`the S3 server answered part ${PartNumber} without an ETag`);
        etags[PartNumber - 1] = ETag;
        spare.push(part);
      })
      .catch((err: unknown) => void (failed ??= { err }))
      .finally(() => inFlight.delete(sending));
    inFlight.add(sending);
  };

  try {
    for await (const chunk of body) {
      check();
      for (let offset = 0; offset < chunk.length;) {
        const copied = chunk.copy(current, filled, offset);
        filled += copied;
        offset += copied;
        if (filled < partSize) continue;
        // A full part, and more may follow: the body is larger than one part.
        uploadId ??= (await bucket.client.send(new CreateMultipartUploadCommand({ Bucket, Key })))
          .UploadId!;
        sendPart(current, filled);
        while (inFlight.size >= uploadConcurrency) await Promise.race(inFlight);
        check();
        current = spare.pop() ?? Buffer.allocUnsafeSlow(partSize);
        filled = 0;
      }
    }
    if (uploadId === undefined) {
      await bucket.client.send(
        new PutObjectCommand({ Bucket, Key, Body: current.subarray(0, filled) }),
      );
      return;
    }
    if (filled > 0) sendPart(current, filled);
    while (inFlight.size > 0) await Promise.race(inFlight);
    check();
    await bucket.client.send(
      new CompleteMultipartUploadCommand({
        Bucket,
        Key,
        UploadId: uploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );
  } catch (err) {
    // Parts still being sent would land after the abort otherwise.
    await Promise.allSettled(inFlight);
    if (uploadId !== undefined) {
      await bucket.client
        .send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId: uploadId }))
        .catch(() => undefined);
    }
    throw err;
  }
}
