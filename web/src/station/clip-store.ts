/**
 * The station's clips in IndexedDB: every piece MediaRecorder hands over is written as it comes
 * (about once a second), so a reload, a crash or a power cut loses at most the last second. A clip
 * leaves only when the archive acknowledged it with its SHA-256 (see uploader.ts).
 */

export interface ClipRecord {
  id: string;
  orderId: string;
  trackingNumbers: string[];
  trackingAt: number[];
  stationId: string;
  operatorId: string | null;
  /** When the first frame was recorded (ISO 8601, UTC). */
  capturedAt: string;
  mimeType: string;
  /** recording: pieces still arriving (or the page died while they did); closed: complete. */
  state: 'recording' | 'closed';
  /** Found unfinished at start: shorter than planned, closed by the station, not by a scan. */
  recovered: boolean;
  durationSec: number;
  size: number;
  pieces: number;
  /** When the last piece was stored (ms since 1970): a recovered clip's length is to there. */
  lastPieceAt?: number;
  sha256?: string;
  uploadUrl?: string;
  /** Failed attempts to send it that were not the network being down, and when to try again. */
  attempts?: number;
  nextTryAt?: number;
  /** The archive refused it for good (wrong type, hash mismatch): kept, shown, never resent. */
  refused?: string;
  itemId?: string;
}

interface Piece {
  clipId: string;
  seq: number;
  data: Blob;
}

const DB_NAME = 'evidence-station';
const CLIPS = 'clips';
const PIECES = 'pieces';

const done = <T>(req: IDBRequest<T>) =>
  new Promise<T>((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });

const committed = (tx: IDBTransaction) =>
  new Promise<void>((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });

export class ClipStore {
  private constructor(private readonly db: IDBDatabase) {}

  static async open(): Promise<ClipStore> {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      const db = req.result;
      db.createObjectStore(CLIPS, { keyPath: 'id' });
      db.createObjectStore(PIECES, { keyPath: ['clipId', 'seq'] });
    };
    return new ClipStore(await done(req));
  }

  async put(clip: ClipRecord): Promise<void> {
    const tx = this.db.transaction(CLIPS, 'readwrite', { durability: 'strict' });
    tx.objectStore(CLIPS).put(clip);
    await committed(tx);
  }

  async get(id: string): Promise<ClipRecord | undefined> {
    const tx = this.db.transaction(CLIPS, 'readonly');
    return done(tx.objectStore(CLIPS).get(id) as IDBRequest<ClipRecord | undefined>);
  }

  /** Every clip on the station, oldest first. */
  async list(): Promise<ClipRecord[]> {
    const tx = this.db.transaction(CLIPS, 'readonly');
    const all = await done(tx.objectStore(CLIPS).getAll() as IDBRequest<ClipRecord[]>);
    return all.sort((a, b) => a.capturedAt.localeCompare(b.capturedAt));
  }

  /** One piece of a clip and the clip's new size, in one transaction. */
  async append(id: string, data: Blob): Promise<void> {
    const tx = this.db.transaction([CLIPS, PIECES], 'readwrite', { durability: 'strict' });
    const clips = tx.objectStore(CLIPS);
    const clip = (await done(clips.get(id) as IDBRequest<ClipRecord | undefined>)) ?? undefined;
    if (!clip) {
      tx.abort();
      throw new Error(`clip ${id} is gone`);
    }
    tx.objectStore(PIECES).put({ clipId: id, seq: clip.pieces, data } satisfies Piece);
    clips.put({
      ...clip,
      pieces: clip.pieces + 1,
      size: clip.size + data.size,
      lastPieceAt: Date.now(),
    });
    await committed(tx);
  }

  async update(id: string, patch: Partial<ClipRecord>): Promise<ClipRecord | undefined> {
    const tx = this.db.transaction(CLIPS, 'readwrite', { durability: 'strict' });
    const store = tx.objectStore(CLIPS);
    const clip = await done(store.get(id) as IDBRequest<ClipRecord | undefined>);
    if (!clip) return undefined;
    const next = { ...clip, ...patch };
    store.put(next);
    await committed(tx);
    return next;
  }

  /** The clip's bytes: its pieces in order (no copy until they are read). */
  async pieces(clip: ClipRecord): Promise<Blob[]> {
    const tx = this.db.transaction(PIECES, 'readonly');
    const range = IDBKeyRange.bound([clip.id, 0], [clip.id, Number.MAX_SAFE_INTEGER]);
    const pieces = await done(tx.objectStore(PIECES).getAll(range) as IDBRequest<Piece[]>);
    return pieces.sort((a, b) => a.seq - b.seq).map((p) => p.data);
  }

  /** Removes a clip and its pieces (only once the archive holds it). */
  async remove(id: string): Promise<void> {
    const tx = this.db.transaction([CLIPS, PIECES], 'readwrite', { durability: 'strict' });
    tx.objectStore(CLIPS).delete(id);
    tx.objectStore(PIECES).delete(IDBKeyRange.bound([id, 0], [id, Number.MAX_SAFE_INTEGER]));
    await committed(tx);
  }
}
