import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import * as tus from 'tus-js-client';

/**
 * The packing station's uploader: sends clips to the archive, retrying with backoff over a bad
 * network, and in watch mode takes every finished file of a folder, keeps a queue on disk across
 * restarts, and moves a file to done/ only once the archive's SHA-256 of it equals its own.
 * Transport: resumable tus uploads in 8 MiB chunks with the station's hash in the metadata (the
 * server checks it); a retry, or a restart in watch mode, resumes at the server's offset.
 */

export interface UploaderOptions {
  url: string;
  key: string;
  kind: 'packing_video' | 'call_recording' | 'photo';
  orderIds: string[];
  stationId?: string;
  operatorId?: string;
  trackingNumber?: string;
  /** Retries of one file before it waits for the next pass (watch mode) or fails (single). */
  maxAttempts: number;
  /** First retry delay; doubled each time up to a minute. */
  backoffMs: number;
  log: (line: string) => void;
  /** Progress of the current file, 0..1; undefined for no progress display. */
  progress?: (file: string, fraction: number) => void;
}

export interface Archived {
  id: string;
  sha256: string;
  status: number;
}

export class UploadRefused extends Error {}

/** 8 MiB: a lost connection costs at most this much again, and each PATCH stays short. */
const CHUNK_BYTES = 8 * 1024 * 1024;

const inMemory = (): ResumePoint => ({
  save(url) {
    this.url = url;
  },
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function sha256File(file: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** Where a file's resumable upload lives on the server, kept across attempts and restarts. */
export interface ResumePoint {
  url?: string;
  save(url: string | undefined): Promise<void> | void;
}

/** One tus upload attempt of one file, resuming at the server's offset when `resume.url` is set. */
function tusOnce(
  opts: UploaderOptions,
  file: string,
  sha256: string,
  size: number,
  resume: ResumePoint,
): Promise<Archived> {
  const metadata: Record<string, string> = {
    filename: path.basename(file),
    kind: opts.kind,
    sha256,
    ...(opts.orderIds.length ? { orderId: opts.orderIds.join(',') } : {}),
    ...(opts.stationId ? { stationId: opts.stationId } : {}),
    ...(opts.operatorId ? { operatorId: opts.operatorId } : {}),
    ...(opts.trackingNumber ? { trackingNumber: opts.trackingNumber } : {}),
  };
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(createReadStream(file), {
      endpoint: new URL('/v1/uploads', opts.url).href,
      uploadUrl: resume.url,
      uploadSize: size,
      chunkSize: CHUNK_BYTES,
      metadata,
      headers: { Authorization: `Bearer ${opts.key}` },
      // Our own retries (with backoff, logged) resume the same upload; no hidden second layer.
      retryDelays: null,
      storeFingerprintForResuming: false,
      onUploadUrlAvailable: () => void resume.save(upload.url ?? undefined),
      onProgress: (sent, total) => opts.progress?.(file, total ? sent / total : 1),
      onSuccess: ({ lastResponse }) => {
        const digest = /sha-256=:([A-Za-z0-9+/=]+):/.exec(
          lastResponse.getHeader('Repr-Digest') ?? '',
        );
        const id = lastResponse.getHeader('Evidence-Item-Id');
        if (!digest || !id) return reject(new Error('the archive did not name the archived item'));
        resolve({
          id,
          sha256: Buffer.from(digest[1]!, 'base64').toString('hex'),
          status: lastResponse.getHeader('Evidence-Item-Status') === 'created' ? 201 : 200,
        });
      },
      onError: (err) => {
        const res = (err as tus.DetailedError).originalResponse;
        const status = res?.getStatus() ?? 0;
        let body: { code?: string; detail?: string } = {};
        try {
          body = JSON.parse(res?.getBody() ?? '') as typeof body;
        } catch {
          // tus's plain-text answers, or a proxy's error page
        }
        const why = status
          ? `${status} ${body.code ?? ''} ${body.detail ?? res?.getBody()?.slice(0, 200) ?? ''}`.trim()
          : err.message;
        // The upload expired or was removed: start a new one next time.
        if (status === 404 || status === 410) {
          void resume.save(undefined);
          return reject(new Error(why));
        }
        // 4xx other than these will not change by retrying: the file or the key is refused.
        if (status >= 400 && status < 500 && ![408, 409, 423, 429].includes(status)) {
          return reject(new UploadRefused(why));
        }
        reject(new Error(why));
      },
    });
    upload.start();
  });
}

/**
 * Uploads one file, retrying with backoff; resolves once the archive holds it and its SHA-256
 * equals ours. Rejects with UploadRefused when the archive refuses it for good.
 */
export async function uploadFile(
  opts: UploaderOptions,
  file: string,
  resume: ResumePoint = inMemory(),
): Promise<Archived> {
  const { sha256, size } = await sha256File(file);
  let delay = opts.backoffMs;
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await tusOnce(opts, file, sha256, size, resume);
      if (result.sha256 !== sha256) {
        throw new Error(`the archive's SHA-256 ${result.sha256} differs from ours ${sha256}`);
      }
      return result;
    } catch (err) {
      if (err instanceof UploadRefused) throw err;
      if (attempt >= opts.maxAttempts) throw err;
      opts.log(
        `${path.basename(file)}: attempt ${attempt} failed (${(err as Error).message}); retrying in ${Math.round(delay / 1000)} s`,
      );
      await sleep(delay);
      delay = Math.min(delay * 2, 60_000);
    }
  }
}
