/**
 * Sends the station's closed clips to the archive, oldest first, one at a time, with tus: a
 * dropped connection continues from the offset the archive confirmed. The SHA-256 is computed
 * here and declared, so the archive refuses bytes that differ; a clip is removed from the
 * station only once the archive's item carries that same hash. With the network down the queue
 * waits and goes out by itself when it returns.
 */
import * as tus from 'tus-js-client';
import type { ClipRecord, ClipStore } from './clip-store';
import { clipFilename, uploadFields } from './scan';
import { webmSeconds, withDuration } from './webm-duration';

export type UploadStatus =
  | { state: 'idle' }
  | { state: 'uploading'; clipId: string; orderId: string; sent: number; total: number }
  | { state: 'waiting'; reason: 'offline' | 'error' | 'key'; message: string; retryAt: number };

const RETRY_MS = 10_000;

export async function sha256Hex(blob: Blob): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

const b64ToHex = (b64: string) =>
  [...atob(b64)].map((c) => c.charCodeAt(0).toString(16).padStart(2, '0')).join('');

/**
 * The bytes to send: the stored pieces, a WebM's header given the length its blocks span. The
 * same pieces always give the same bytes, so the hash and a half-sent upload stay valid.
 */
export async function clipBytes(pieces: Blob[], clip: ClipRecord): Promise<Blob> {
  const type = clip.mimeType.split(';')[0] ?? '';
  const whole = new Blob(pieces, { type });
  if (type !== 'video/webm' || !pieces[0]) return whole;
  const bytes = new Uint8Array(await whole.arrayBuffer());
  const seconds = webmSeconds(bytes);
  // The header (a few hundred bytes) is at the start; a first piece may hold less than all of it.
  const headLength = Math.min(bytes.length, 1 << 20);
  const head = seconds ? withDuration(bytes.subarray(0, headLength), seconds) : null;
  return head ? new Blob([head, bytes.subarray(headLength)], { type }) : whole;
}

class Refused extends Error {}
class KeyRefused extends Error {}

export class Uploader {
  status: UploadStatus = { state: 'idle' };
  private running = false;
  private wake: () => void = () => undefined;

  constructor(
    private readonly store: ClipStore,
    private readonly key: () => string | null,
    private readonly changed: () => void,
  ) {
    window.addEventListener('online', () => this.kick());
  }

  /** Looks at the queue now (a clip closed, the network came back). */
  kick(): void {
    this.wake();
    if (!this.running) void this.run();
  }

  private setStatus(s: UploadStatus): void {
    this.status = s;
    this.changed();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      for (;;) {
        const queued = (await this.store.list()).filter((c) => c.state === 'closed' && !c.refused);
        // A clip that keeps failing waits its turn again (backing off), so it never holds back
        // the clips behind it.
        const clip = queued.find((c) => (c.nextTryAt ?? 0) <= Date.now()) ?? queued[0];
        if (!clip || !this.key()) {
          this.setStatus({ state: 'idle' });
          return;
        }
        try {
          if (!navigator.onLine) throw new Error('The network is down.');
          await this.send(clip);
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          if (err instanceof Refused) {
            await this.store.update(clip.id, { refused: message });
            this.changed();
            continue;
          }
          const offline = !navigator.onLine;
          if (!offline && !(err instanceof KeyRefused)) {
            const attempts = (clip.attempts ?? 0) + 1;
            await this.store
              .update(clip.id, {
                attempts,
                nextTryAt: Date.now() + Math.min(RETRY_MS * 2 ** attempts, 600_000),
              })
              .catch(() => undefined);
            // Another clip is due now: try it before waiting.
            const others = (await this.store.list()).some(
              (c) =>
                c.id !== clip.id &&
                c.state === 'closed' &&
                !c.refused &&
                (c.nextTryAt ?? 0) <= Date.now(),
            );
            if (others) continue;
          }
          this.setStatus({
            state: 'waiting',
            reason: err instanceof KeyRefused ? 'key' : offline ? 'offline' : 'error',
            message,
            retryAt: Date.now() + RETRY_MS,
          });
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, RETRY_MS);
            this.wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          this.wake = () => undefined;
        }
      }
    } finally {
      this.running = false;
    }
  }

  private async send(initial: ClipRecord): Promise<void> {
    let clip = initial;
    const blob = await clipBytes(await this.store.pieces(clip), clip);
    if (!clip.sha256) {
      clip = (await this.store.update(clip.id, { sha256: await sha256Hex(blob) })) ?? clip;
    }
    const key = this.key()!;
    this.setStatus({
      state: 'uploading',
      clipId: clip.id,
      orderId: clip.orderId,
      sent: 0,
      total: blob.size,
    });
    const fields = uploadFields({
      ...clip,
      sha256: clip.sha256!,
      filename: clipFilename(clip),
    });
    const itemId = await new Promise<string>((resolve, reject) => {
      const upload = new tus.Upload(blob, {
        endpoint: `${location.origin}/v1/uploads`,
        uploadUrl: clip.uploadUrl ?? null,
        headers: { Authorization: `Bearer ${key}` },
        metadata: fields,
        uploadSize: blob.size,
        chunkSize: 8 * 1024 * 1024,
        retryDelays: [0, 1000, 3000, 5000],
        storeFingerprintForResuming: false,
        onUploadUrlAvailable: () => {
          if (upload.url) void this.store.update(clip.id, { uploadUrl: upload.url });
        },
        onProgress: (sent, total) => {
          this.setStatus({
            state: 'uploading',
            clipId: clip.id,
            orderId: clip.orderId,
            sent,
            total,
          });
        },
        onSuccess: ({ lastResponse }) => {
          const id = lastResponse.getHeader('Evidence-Item-Id');
          const digest = /^sha-256=:([A-Za-z0-9+/=]+):$/.exec(
            lastResponse.getHeader('Repr-Digest') ?? '',
          )?.[1];
          if (!id) return reject(new Error('The archive named no item for the upload.'));
          if (digest && b64ToHex(digest) !== clip.sha256) {
            return reject(new Refused("The archive's SHA-256 differs from the station's."));
          }
          resolve(id);
        },
        onError: (err) => {
          const status = (err as tus.DetailedError).originalResponse?.getStatus() ?? 0;
          const body = (err as tus.DetailedError).originalResponse?.getBody() ?? '';
          if (status === 401 || status === 403) {
            return reject(new KeyRefused('The archive refused the station key: sign in again.'));
          }
          // A refusal for good (wrong type, empty, hash mismatch, bad field): sending the same
          // bytes again cannot help. Everything else (offline, 5xx, 409) is tried again.
          if ([400, 413, 415, 422].includes(status)) {
            let code = '';
            try {
              code = String((JSON.parse(body) as { code?: string }).code ?? '');
            } catch {
              // not JSON
            }
            return reject(new Refused(`Refused by the archive (${status} ${code}).`));
          }
          reject(new Error(navigator.onLine ? err.message : 'The network is down.'));
        },
      });
      upload.start();
    });
    await this.store.update(clip.id, { itemId });
    // What the archive holds under that id, as this key may see it (its own upload).
    const res = await fetch(`/v1/evidence/${encodeURIComponent(itemId)}`, {
      headers: { Authorization: `Bearer ${key}`, Accept: 'application/json' },
      cache: 'no-store',
    });
    if (!res.ok) throw new Error(`The archive did not show item ${itemId} (${res.status}).`);
    const item = (await res.json()) as { sha256?: string };
    if (item.sha256 !== clip.sha256) {
      throw new Refused(`The archive holds item ${itemId} with another SHA-256.`);
    }
    await this.store.remove(clip.id);
    this.setStatus({ state: 'idle' });
  }
}
