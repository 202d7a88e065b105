import * as tus from 'tus-js-client';
import type { MintedKey } from '../../src/access/api-key.service';

export interface TusResult {
  url: string;
  itemId: string | null;
  status: string | null;
  digest: string | null;
}

export interface TusOptions {
  chunkSize?: number;
  uploadUrl?: string;
  uploadDataDuringCreation?: boolean;
  /** Called with the running upload once, when this many bytes were acknowledged. */
  abortAfter?: number;
  retryDelays?: number[] | null;
  /** tus-js-client's option: every PATCH sent as a POST with X-HTTP-Method-Override: PATCH. */
  overridePatchMethod?: boolean;
}

/** Uploads with the real tus-js-client; resolves with the item named by the last response. */
export function tusUpload(
  baseUrl: string,
  key: MintedKey,
  bytes: Buffer,
  metadata: Record<string, string>,
  opts: TusOptions = {},
): Promise<TusResult> {
  return new Promise((resolve, reject) => {
    let aborted = false;
    const upload: tus.Upload = new tus.Upload(bytes, {
      endpoint: `${baseUrl}/v1/uploads`,
      uploadUrl: opts.uploadUrl,
      headers: { Authorization: `Bearer ${key.key}` },
      metadata,
      chunkSize: opts.chunkSize ?? 1024 * 1024,
      uploadDataDuringCreation: opts.uploadDataDuringCreation ?? false,
      retryDelays: opts.retryDelays === undefined ? [0, 200, 500] : opts.retryDelays,
      storeFingerprintForResuming: false,
      overridePatchMethod: opts.overridePatchMethod ?? false,
      onChunkComplete: (_size, accepted) => {
        if (opts.abortAfter !== undefined && accepted >= opts.abortAfter && !aborted) {
          aborted = true;
          void upload.abort(false).then(() => reject(new AbortedUpload(upload.url!)));
        }
      },
      onSuccess: ({ lastResponse }) =>
        resolve({
          url: upload.url!,
          itemId: lastResponse.getHeader('Evidence-Item-Id') ?? null,
          status: lastResponse.getHeader('Evidence-Item-Status') ?? null,
          digest: lastResponse.getHeader('Repr-Digest') ?? null,
        }),
      onError: (err) => reject(err),
    });
    upload.start();
  });
}

export class AbortedUpload extends Error {
  constructor(readonly url: string) {
    super(`upload ${url} aborted by the test`);
  }
}

/** The status and body of the response that failed a tus upload; an upload that succeeded fails the test. */
export async function refusal(
  upload: Promise<TusResult>,
): Promise<{ status?: number; body?: string }> {
  try {
    const result = await upload;
    throw new Error(`expected a refusal, the upload was archived as ${result.itemId}`);
  } catch (err) {
    const res = (err as tus.DetailedError).originalResponse;
    if (!res) throw err;
    return { status: res.getStatus(), body: res.getBody() };
  }
}
