import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

// The worker's whole program: SHA-256 over the batches it is sent, one stream at a time.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let hash = null;
parentPort.on('message', (m) => {
  if (m.type === 'start') hash = createHash('sha256');
  else if (m.type === 'data') { hash.update(new Uint8Array(m.buffer)); parentPort.postMessage({ type: 'ack' }); }
  else if (m.type === 'end') { parentPort.postMessage({ type: 'digest', hex: hash.digest('hex') }); hash = null; }
});`;

const BATCH_BYTES = 1024 * 1024;

/** Whether transferring the chunk's ArrayBuffer detaches nothing but this chunk. */
const ownsItsMemory = (chunk: Uint8Array) =>
  chunk.byteLength >= 256 * 1024 &&
  chunk.byteOffset === 0 &&
  chunk.byteLength === chunk.buffer.byteLength &&
  chunk.buffer instanceof ArrayBuffer;
const MAX_IN_FLIGHT = 16;

interface Slot {
  worker: Worker;
  busy: boolean;
}

/**
 * SHA-256 of re-read blobs on worker threads, so hashing runs beside the reading instead of after
 * it on the event loop: a scrub then hashes at the speed the store can be read, and the API keeps
 * answering while gigabytes are verified. Bytes go over in 1 MiB transferred batches.
 */
export class HashPool {
  private readonly slots: Slot[];
  private readonly waiting: ((slot: Slot) => void)[] = [];

  constructor(size = Math.min(2, availableParallelism())) {
    this.slots = Array.from({ length: size }, () => {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      worker.unref();
      return { worker, busy: false };
    });
  }

  /**
   * Hashes a stream of bytes to its end; resolves with the hex digest and the byte count. Given a
   * function, opens the stream only once a worker is free: callers beyond the pool's size queue
   * without holding a file or an S3 connection open.
   */
  async hash(
    source:
      AsyncIterable<Buffer | Uint8Array> | (() => Promise<AsyncIterable<Buffer | Uint8Array>>),
  ): Promise<{ sha256: string; size: number }> {
    const slot = await this.acquire();
    try {
      return await this.run(slot.worker, typeof source === 'function' ? await source() : source);
    } finally {
      this.release(slot);
    }
  }

  private async run(worker: Worker, source: AsyncIterable<Buffer | Uint8Array>) {
    let inFlight = 0;
    let wake: (() => void) | undefined;
    let failure: unknown;
    let digest: ((hex: string) => void) | undefined;
    let digestFailed: ((err: unknown) => void) | undefined;
    const onMessage = (m: { type: string; hex?: string }) => {
      if (m.type === 'ack') {
        inFlight--;
        wake?.();
      } else if (m.type === 'digest') digest?.(m.hex!);
    };
    const onError = (err: unknown) => {
      failure = err;
      wake?.();
      digestFailed?.(err);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    try {
      worker.postMessage({ type: 'start' });
      let size = 0;
      let batch: Uint8Array = new Uint8Array(BATCH_BYTES);
      let filled = 0;
      const send = async () => {
        while (inFlight >= MAX_IN_FLIGHT && !failure) await new Promise<void>((r) => (wake = r));
        if (failure) throw failure;
        const whole =
          filled === batch.byteLength &&
          batch.byteOffset === 0 &&
          batch.byteLength === batch.buffer.byteLength;
        // ownsItsMemory() admits only plain ArrayBuffers; batches are always ours.
        const buffer = (
          whole ? batch.buffer : batch.buffer.slice(batch.byteOffset, batch.byteOffset + filled)
        ) as ArrayBuffer;
        inFlight++;
        worker.postMessage({ type: 'data', buffer }, [buffer]);
        batch = new Uint8Array(BATCH_BYTES);
        filled = 0;
      };
      for await (const chunk of source) {
        size += chunk.length;
        if (filled === 0 && ownsItsMemory(chunk)) {
          // A large chunk that is its own allocation (disk reads) moves over without a copy.
          batch = chunk;
          filled = chunk.length;
          await send();
          continue;
        }
        for (let at = 0; at < chunk.length;) {
          const n = Math.min(chunk.length - at, BATCH_BYTES - filled);
          batch.set(chunk.subarray(at, at + n), filled);
          filled += n;
          at += n;
          if (filled === BATCH_BYTES) await send();
        }
      }
      if (filled > 0) await send();
      const hex = await new Promise<string>((resolve, reject) => {
        digest = resolve;
        digestFailed = reject;
        worker.postMessage({ type: 'end' });
      });
      return { sha256: hex, size };
    } finally {
      worker.off('message', onMessage);
      worker.off('error', onError);
    }
  }

  private acquire(): Promise<Slot> {
    const free = this.slots.find((s) => !s.busy);
    if (free) {
      free.busy = true;
      return Promise.resolve(free);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(slot: Slot): void {
    const next = this.waiting.shift();
    if (next) next(slot);
    else slot.busy = false;
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
