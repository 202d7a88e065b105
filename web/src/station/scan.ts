/**
 * What a packing station makes of the codes it is given: pure functions and a small state
 * machine, with no DOM, so that tests/unit/station-scan.test.ts runs them in Node.
 */

export interface ScanSettings {
  /** A code equal to this (any case) ends the clip. */
  stopCode: string;
  /** A code starting with this (any case) names the operator. */
  operatorPrefix: string;
  /** Tracking numbers, as a regular expression's source, matched against the whole code. */
  trackingPattern: string;
  /** Order ids, likewise; anything else is refused as unknown. */
  orderPattern: string;
}

export const DEFAULT_SCAN_SETTINGS: ScanSettings = {
  stopCode: 'STOP',
  operatorPrefix: 'OP:',
  // UPS 1Z..., USPS/FedEx/DHL numeric (12 to 22 digits) and UPU S10 (EE123456789GB).
  trackingPattern: '1Z[0-9A-Z]{16}|[0-9]{12,22}|[A-Z]{2}[0-9]{9}[A-Z]{2}',
  // What the archive accepts as an order id: letters, digits and # - _ . / : + @.
  orderPattern: '[\\p{L}\\p{N}][\\p{L}\\p{N}#\\-_./:+@]{0,127}',
};

export type Code =
  | { type: 'stop' }
  | { type: 'operator'; operatorId: string }
  | { type: 'tracking'; trackingNumber: string }
  | { type: 'order'; orderId: string }
  | { type: 'unknown'; code: string; reason: string };

/** A pattern setting as a whole-code matcher; an invalid one matches nothing. */
export function wholeCode(source: string): RegExp | null {
  try {
    return new RegExp(`^(?:${source})$`, 'u');
  } catch {
    return null;
  }
}

/** Sorts one scanned (or typed) code. */
/** Longer codes are refused before any pattern runs (a hostile barcode, a stuck key). */
export const MAX_CODE_LENGTH = 256;

export function classify(raw: string, settings: ScanSettings): Code {
  const code = raw.trim();
  if (!code) return { type: 'unknown', code, reason: 'empty' };
  if (code.length > MAX_CODE_LENGTH) {
    return { type: 'unknown', code: code.slice(0, 32), reason: 'too long' };
  }
  if (code.toUpperCase() === settings.stopCode.trim().toUpperCase()) return { type: 'stop' };
  const prefix = settings.operatorPrefix;
  if (prefix && code.toUpperCase().startsWith(prefix.toUpperCase())) {
    const operatorId = code.slice(prefix.length).trim();
    return operatorId && wholeCode(settings.orderPattern)?.test(operatorId)
      ? { type: 'operator', operatorId }
      : { type: 'unknown', code, reason: 'not an operator id' };
  }
  if (wholeCode(settings.trackingPattern)?.test(code)) {
    return { type: 'tracking', trackingNumber: code };
  }
  if (wholeCode(settings.orderPattern)?.test(code)) return { type: 'order', orderId: code };
  return { type: 'unknown', code, reason: 'not an order id or tracking number' };
}

/**
 * Keystrokes to codes. A keyboard-wedge scanner types a code in a burst (a few milliseconds per
 * character) and presses Enter. Outside a text field every keystroke counts, however slow, so a
 * person can type an order and press Enter too; in a text field (the settings) only a burst is a
 * scan, and what the burst typed into the field is taken out again.
 */
export class ScanBuffer {
  private chars = '';
  private times: number[] = [];

  constructor(
    /** Longest gap between two keystrokes of a burst. */
    private readonly burstGapMs = 50,
    /** A code typed by hand is forgotten after this long without a keystroke. */
    private readonly idleResetMs = 10_000,
  ) {}

  /**
   * One keydown. Returns the code when Enter ends one, with `burst` saying whether it came as a
   * scanner sends it, and `fromField` how many characters to take back from a focused field.
   */
  key(
    key: string,
    atMs: number,
    inField: boolean,
  ): { code: string; burst: boolean; fromField: number } | null {
    const last = this.times[this.times.length - 1];
    if (last !== undefined && atMs - last > (inField ? this.burstGapMs : this.idleResetMs)) {
      this.reset();
    }
    if (key === 'Enter') {
      const code = this.chars;
      const burst = this.isBurst(atMs);
      this.reset();
      if (!code.trim()) return null;
      if (inField && !burst) return null;
      return { code, burst, fromField: inField ? code.length : 0 };
    }
    // Shift, arrows, F-keys: not part of a code (a character outside the BMP is 2 UTF-16 units).
    if ([...key].length !== 1) return null;
    if (this.chars.length > MAX_CODE_LENGTH) return null; // refused at Enter anyway
    this.chars += key;
    this.times.push(atMs);
    return null;
  }

  reset(): void {
    this.chars = '';
    this.times = [];
  }

  private isBurst(enterAt: number): boolean {
    if (this.times.length < 3) return false;
    const all = [...this.times, enterAt];
    for (let i = 1; i < all.length; i++) if (all[i]! - all[i - 1]! > this.burstGapMs) return false;
    return true;
  }
}

/** A clip being recorded, as the station knows it. */
export interface OpenClip {
  orderId: string;
  trackingNumbers: string[];
  /** Seconds from the clip's start at which each tracking number was scanned. */
  trackingAt: number[];
  startedAt: number;
}

export type StationState = { mode: 'idle' } | { mode: 'recording'; clip: OpenClip };

export type Effect =
  | { do: 'start'; orderId: string }
  | { do: 'stop'; reason: 'next-order' | 'stop' | 'max-length' }
  | { do: 'operator'; operatorId: string }
  | { do: 'tracking'; trackingNumber: string }
  | { do: 'refuse'; message: string };

/**
 * What a code does to the station: the next state and what to do, in order. An order scanned
 * while recording closes the clip and opens the next; the same order again is ignored (a double
 * scan); a tracking number joins the clip being recorded; stop ends it.
 */
export function next(
  state: StationState,
  code: Code,
  nowMs: number,
): { state: StationState; effects: Effect[] } {
  switch (code.type) {
    case 'stop':
      return state.mode === 'recording'
        ? { state: { mode: 'idle' }, effects: [{ do: 'stop', reason: 'stop' }] }
        : { state, effects: [] };
    case 'operator':
      if (state.mode === 'recording') {
        return {
          state,
          effects: [{ do: 'refuse', message: 'Stop the clip before the operator changes.' }],
        };
      }
      return { state, effects: [{ do: 'operator', operatorId: code.operatorId }] };
    case 'tracking': {
      if (state.mode !== 'recording') {
        return {
          state,
          effects: [{ do: 'refuse', message: 'Scan the order first, then its tracking number.' }],
        };
      }
      const clip = state.clip;
      if (clip.trackingNumbers.includes(code.trackingNumber)) return { state, effects: [] };
      return {
        state: {
          mode: 'recording',
          clip: {
            ...clip,
            trackingNumbers: [...clip.trackingNumbers, code.trackingNumber],
            trackingAt: [...clip.trackingAt, Math.max(0, (nowMs - clip.startedAt) / 1000)],
          },
        },
        effects: [{ do: 'tracking', trackingNumber: code.trackingNumber }],
      };
    }
    case 'order': {
      const open: OpenClip = {
        orderId: code.orderId,
        trackingNumbers: [],
        trackingAt: [],
        startedAt: nowMs,
      };
      if (state.mode === 'recording') {
        if (state.clip.orderId === code.orderId) return { state, effects: [] };
        return {
          state: { mode: 'recording', clip: open },
          effects: [
            { do: 'stop', reason: 'next-order' },
            { do: 'start', orderId: code.orderId },
          ],
        };
      }
      return {
        state: { mode: 'recording', clip: open },
        effects: [{ do: 'start', orderId: code.orderId }],
      };
    }
    case 'unknown':
      return { state, effects: [{ do: 'refuse', message: `Not understood: ${code.code}` }] };
  }
}

/** The clip reached its longest allowed length: it ends as if stop had been scanned. */
export function tick(
  state: StationState,
  nowMs: number,
  maxClipSeconds: number,
): { state: StationState; effects: Effect[] } {
  if (state.mode === 'recording' && nowMs - state.clip.startedAt >= maxClipSeconds * 1000) {
    return { state: { mode: 'idle' }, effects: [{ do: 'stop', reason: 'max-length' }] };
  }
  return { state, effects: [] };
}

/**
 * The upload fields of a clip (tus Upload-Metadata, before base64): the order, the first tracking
 * number in `trackingNumber`, and, when there are several, every one as a segment of the clip
 * from its scan to the end, so that each finds the clip.
 */
export function uploadFields(clip: {
  orderId: string;
  trackingNumbers: string[];
  trackingAt: number[];
  durationSec: number;
  stationId: string;
  operatorId: string | null;
  capturedAt: string;
  sha256: string;
  filename: string;
}): Record<string, string> {
  const fields: Record<string, string> = {
    kind: 'packing_video',
    orderId: clip.orderId,
    stationId: clip.stationId,
    capturedAt: clip.capturedAt,
    sha256: clip.sha256,
    filename: clip.filename,
  };
  if (clip.operatorId) fields.operatorId = clip.operatorId;
  if (clip.trackingNumbers[0]) fields.trackingNumber = clip.trackingNumbers[0];
  if (clip.trackingNumbers.length > 1) {
    const end = Math.max(clip.durationSec, ...clip.trackingAt.map((t) => t + 1));
    fields.segments = JSON.stringify(
      clip.trackingNumbers.map((trackingNumber, i) => ({
        orderId: clip.orderId,
        trackingNumber,
        startSec: Math.min(clip.trackingAt[i] ?? 0, end - 1),
        endSec: end,
      })),
    );
  }
  return fields;
}

/** The clip's file name: order, station, start (UTC), and `.recovered` for a clip cut short. */
export function clipFilename(c: {
  orderId: string;
  stationId: string;
  capturedAt: string;
  recovered: boolean;
  mimeType: string;
}): string {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60);
  const when = c.capturedAt.replace(/[-:]/g, '').replace(/\.\d+/, '');
  const ext = c.mimeType.startsWith('video/mp4') ? 'mp4' : 'webm';
  return `${safe(c.orderId)}_${safe(c.stationId)}_${when}${c.recovered ? '.recovered' : ''}.${ext}`;
}

/** 65 → "1:05", 3725 → "1:02:05". */
export function elapsed(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}
