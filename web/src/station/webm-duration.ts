/**
 * MediaRecorder writes WebM as a live stream: the header says nothing of the clip's length, so
 * players cannot seek and the archive's media pipeline, which plans poster and preview from the
 * length, refuses the clip as of unknown duration. Before a clip is hashed and sent, its Segment
 * Info gets the Duration element the recorder could not write, the length its video blocks span
 * (webmSeconds); while it records, WebmProgress follows how far the encoder has got. Pure byte
 * work, no DOM: tests/unit/station-webm-duration.test.ts runs it in Node.
 */

const SEGMENT = 0x18538067;
const SEEK_HEAD = 0x114d9b74;
const INFO = 0x1549a966;
const TIMECODE_SCALE = 0x2ad7b1;
const DURATION = 0x4489;
const VOID = 0xec;
const EBML = 0x1a45dfa3;
const TRACKS = 0x1654ae6b;
const TRACK_ENTRY = 0xae;
const TRACK_NUMBER = 0xd7;
const TRACK_TYPE = 0x83;
const CLUSTER = 0x1f43b675;
const CLUSTER_TIMECODE = 0xe7;
const SIMPLE_BLOCK = 0xa3;
const BLOCK_GROUP = 0xa0;
const BLOCK = 0xa1;
/** The elements a Segment holds: where a Cluster of unknown size ends. */
const SEGMENT_CHILDREN = new Set([
  CLUSTER,
  SEEK_HEAD,
  INFO,
  TRACKS,
  0x1c53bb6b, // Cues
  0x1941a469, // Attachments
  0x1043a770, // Chapters
  0x1254c367, // Tags
]);

interface Element {
  id: number;
  /** Where the element starts, its data starts, and its data ends (Infinity: unknown size). */
  start: number;
  dataStart: number;
  end: number;
  sizeLength: number;
}

/** One EBML element header at `pos`, or null when the bytes stop first. */
function readElement(b: Uint8Array, pos: number): Element | null {
  if (pos >= b.length) return null;
  const first = b[pos]!;
  const idLength =
    first >= 0x80 ? 1 : first >= 0x40 ? 2 : first >= 0x20 ? 3 : first >= 0x10 ? 4 : 0;
  if (!idLength || pos + idLength > b.length) return null;
  let id = 0;
  for (let i = 0; i < idLength; i++) id = id * 256 + b[pos + i]!;
  const sizePos = pos + idLength;
  if (sizePos >= b.length) return null;
  const s0 = b[sizePos]!;
  let sizeLength = 1;
  while (sizeLength <= 8 && !(s0 & (0x100 >> sizeLength))) sizeLength++;
  if (sizeLength > 8 || sizePos + sizeLength > b.length) return null;
  let size = s0 & (0xff >> sizeLength);
  let allOnes = size === 0xff >> sizeLength;
  for (let i = 1; i < sizeLength; i++) {
    const byte = b[sizePos + i]!;
    size = size * 256 + byte;
    allOnes &&= byte === 0xff;
  }
  const dataStart = sizePos + sizeLength;
  return { id, start: pos, dataStart, end: allOnes ? Infinity : dataStart + size, sizeLength };
}

function sizeVint(size: number, length: number): Uint8Array | null {
  if (size >= 2 ** (7 * length) - 1) return null;
  const out = new Uint8Array(length);
  let v = size;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = v % 256;
    v = Math.floor(v / 256);
  }
  out[0]! |= 0x80 >> (length - 1);
  return out;
}

const concat = (...parts: Uint8Array[]): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

function readUint(b: Uint8Array, e: Element): number {
  let v = 0;
  for (let i = e.dataStart; i < e.end; i++) v = v * 256 + b[i]!;
  return v;
}

/** The block's timestamp: the cluster's plus the block's signed 16-bit offset. */
function blockTime(b: Uint8Array, el: Element, clusterTime: number): number | null {
  if (el.dataStart >= el.end) return null;
  // The track number first, coded with its length in its first bits (1 to 3 bytes in practice).
  const lead = b[el.dataStart]!;
  const at = el.dataStart + (lead >= 0x80 ? 1 : lead >= 0x40 ? 2 : 3);
  if (at + 2 > el.end) return null;
  const rel = (b[at]! << 8) | b[at + 1]!;
  return clusterTime + (rel >= 0x8000 ? rel - 0x10000 : rel);
}

/**
 * How long a WebM's video lasts by its blocks' timestamps (what it holds, not what the recorder
 * was told), in seconds; every track's when it has no video; null when it is not a WebM or holds
 * no block. The video decides: on a busy PC the sound runs on past the last encoded frame, and a
 * length taken from the sound would send the archive looking for frames that are not there.
 * Clusters of unknown size, as a live recorder writes them, end where the next element of the
 * Segment starts.
 */
export function webmSeconds(b: Uint8Array): number | null {
  const ebml = readElement(b, 0);
  if (!ebml || ebml.id !== EBML || ebml.end === Infinity) return null;
  const segment = readElement(b, ebml.end);
  if (!segment || segment.id !== SEGMENT) return null;
  const end = Math.min(segment.end, b.length);
  let scale = 1_000_000;
  let videoTrack: number | null = null;
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  let pos = segment.dataStart;
  while (pos < end) {
    const el = readElement(b, pos);
    if (!el) break;
    if (el.id === INFO && el.end <= end) {
      for (let c = el.dataStart; c < el.end;) {
        const child = readElement(b, c);
        if (!child || child.end > el.end) break;
        if (child.id === TIMECODE_SCALE) scale = readUint(b, child) || scale;
        c = child.end;
      }
    }
    if (el.id === TRACKS && el.end <= end) videoTrack = videoTrackOf(b, el);
    if (el.id !== CLUSTER) {
      if (el.end === Infinity) break;
      pos = el.end;
      continue;
    }
    const clusterEnd = Math.min(el.end, end);
    let clusterTime = 0;
    let c = el.dataStart;
    while (c < clusterEnd) {
      const child = readElement(b, c);
      if (!child || SEGMENT_CHILDREN.has(child.id) || child.end === Infinity) break;
      if (child.end > clusterEnd) {
        c = clusterEnd; // a piece cut short: what came before it counts
        break;
      }
      if (child.id === CLUSTER_TIMECODE) clusterTime = readUint(b, child);
      const blocks: Element[] = [];
      if (child.id === SIMPLE_BLOCK) blocks.push(child);
      if (child.id === BLOCK_GROUP) {
        for (let g = child.dataStart; g < child.end;) {
          const inner = readElement(b, g);
          if (!inner || inner.end > child.end) break;
          if (inner.id === BLOCK) blocks.push(inner);
          g = inner.end;
        }
      }
      for (const block of blocks) {
        const t = blockTime(b, block, clusterTime);
        const lead = b[block.dataStart]!;
        if (t === null || lead < 0x80) continue;
        const track = lead & 0x7f;
        first.set(track, Math.min(first.get(track) ?? t, t));
        last.set(track, Math.max(last.get(track) ?? t, t));
      }
      c = child.end;
    }
    pos = c;
  }
  const tracks = videoTrack !== null && last.has(videoTrack) ? [videoTrack] : [...last.keys()];
  if (!tracks.length) return null;
  const start = Math.min(0, ...tracks.map((t) => first.get(t)!));
  return ((Math.max(...tracks.map((t) => last.get(t)!)) - start) * scale) / 1e9;
}

/**
 * The file's head with `durationSeconds` written into its Segment Info, or null when it cannot
 * be done without moving what an index points at (a SeekHead with no Void after Info to give
 * the room), when the head is not a WebM header, or when a Duration is already there.
 */
export function withDuration(
  head: Uint8Array,
  durationSeconds: number,
): Uint8Array<ArrayBuffer> | null {
  if (!(durationSeconds > 0) || !Number.isFinite(durationSeconds)) return null;
  const ebml = readElement(head, 0);
  if (!ebml || ebml.id !== EBML || ebml.end === Infinity) return null;
  const segment = readElement(head, ebml.end);
  if (!segment || segment.id !== SEGMENT) return null;
  let seekHead = false;
  let pos = segment.dataStart;
  for (;;) {
    const el = readElement(head, pos);
    if (!el || el.end === Infinity || el.end > head.length) return null;
    if (el.id === SEEK_HEAD) seekHead = true;
    if (el.id === INFO) {
      let scale = 1_000_000;
      for (let c = el.dataStart; c < el.end;) {
        const child = readElement(head, c);
        if (!child || child.end > el.end) return null;
        if (child.id === DURATION) return null;
        if (child.id === TIMECODE_SCALE) scale = readUint(head, child) || scale;
        c = child.end;
      }
      const value = new Uint8Array(8);
      new DataView(value.buffer).setFloat64(0, (durationSeconds * 1e9) / scale);
      const duration = concat(new Uint8Array([0x44, 0x89, 0x88]), value);
      const dataLength = el.end - el.dataStart + duration.length;
      const size = sizeVint(dataLength, el.sizeLength) ?? sizeVint(dataLength, 8)!;
      const grown = size.length - el.sizeLength + duration.length;
      const info = concat(
        head.subarray(el.start, el.dataStart - el.sizeLength),
        size,
        head.subarray(el.dataStart, el.end),
        duration,
      );
      let after = head.subarray(el.end);
      if (seekHead) {
        // Everything after Info must stay where the index says: a Void right after it gives room.
        const room = readElement(head, el.end);
        if (
          !room ||
          room.id !== VOID ||
          room.end === Infinity ||
          room.end - room.start < grown + 2
        ) {
          return null;
        }
        const total = room.end - room.start - grown;
        const voidSize = sizeVint(total - 2, 1) ?? sizeVint(total - 9, 8);
        if (!voidSize) return null;
        const filler = new Uint8Array(total - 1 - voidSize.length);
        after = concat(new Uint8Array([VOID]), voidSize, filler, head.subarray(room.end));
      }
      let segmentHeader = head.subarray(segment.start, segment.dataStart);
      if (segment.end !== Infinity) {
        const grownSegment = sizeVint(
          segment.end - segment.dataStart + (seekHead ? 0 : grown),
          segment.sizeLength,
        );
        if (!grownSegment) return null;
        segmentHeader = concat(
          head.subarray(segment.start, segment.dataStart - segment.sizeLength),
          grownSegment,
        );
      }
      return concat(
        head.subarray(0, segment.start),
        segmentHeader,
        head.subarray(segment.dataStart, el.start),
        info,
        after,
      );
    }
    pos = el.end;
  }
}

/**
 * Follows a WebM as MediaRecorder hands it over, piece by piece (pieces may split an element),
 * and knows the newest video frame's time: how far the encoder has got, which may lag behind
 * the camera on a busy PC.
 */
export class WebmProgress {
  private pending = new Uint8Array(0);
  private inSegment = false;
  private clusterTime = 0;
  private scale = 1_000_000;
  private videoTrack: number | null = null;
  private latest: number | null = null;
  /** Gave up (not a WebM as expected): callers fall back to waiting blindly. */
  broken = false;

  /** Seconds of video encoded so far (the newest frame's timestamp), null before the first. */
  get videoSeconds(): number | null {
    return this.latest === null ? null : (this.latest * this.scale) / 1e9;
  }

  push(piece: Uint8Array): void {
    if (this.broken) return;
    const b = this.pending.length ? concat(this.pending, piece) : piece;
    let pos = 0;
    for (;;) {
      const el = readElement(b, pos);
      if (!el) break;
      if (el.id === SEGMENT || (el.id === CLUSTER && el.end === Infinity)) {
        this.inSegment ||= el.id === SEGMENT;
        pos = el.dataStart; // a container of unknown size: its children follow
        continue;
      }
      if (el.end === Infinity) {
        this.broken = true;
        return;
      }
      if (el.end > b.length) break; // the rest of it comes with the next piece
      if (el.id === INFO) {
        for (let c = el.dataStart; c < el.end;) {
          const child = readElement(b, c);
          if (!child || child.end > el.end) break;
          if (child.id === TIMECODE_SCALE) this.scale = readUint(b, child) || this.scale;
          c = child.end;
        }
      } else if (el.id === TRACKS) {
        this.videoTrack = videoTrackOf(b, el);
      } else if (el.id === CLUSTER) {
        pos = el.dataStart; // a sized cluster: walk into it as well
        continue;
      } else if (el.id === CLUSTER_TIMECODE) {
        this.clusterTime = readUint(b, el);
      } else if (el.id === SIMPLE_BLOCK && this.videoTrack !== null) {
        const lead = b[el.dataStart]!;
        if (lead >= 0x80 && (lead & 0x7f) === this.videoTrack) {
          const t = blockTime(b, el, this.clusterTime);
          if (t !== null) this.latest = this.latest === null ? t : Math.max(this.latest, t);
        }
      }
      pos = el.end;
    }
    this.pending = b.slice(pos);
    // An element larger than any frame would be: not a recording this follows.
    if (this.pending.length > 64 << 20) this.broken = true;
  }
}

function videoTrackOf(b: Uint8Array, tracks: Element): number | null {
  for (let pos = tracks.dataStart; pos < tracks.end;) {
    const entry = readElement(b, pos);
    if (!entry || entry.end > tracks.end) return null;
    if (entry.id === TRACK_ENTRY) {
      let number: number | null = null;
      let type: number | null = null;
      for (let c = entry.dataStart; c < entry.end;) {
        const child = readElement(b, c);
        if (!child || child.end > entry.end) break;
        if (child.id === TRACK_NUMBER) number = readUint(b, child);
        if (child.id === TRACK_TYPE) type = readUint(b, child);
        c = child.end;
      }
      if (type === 1 && number !== null) return number;
    }
    pos = entry.end;
  }
  return null;
}
