import type { DerivativeKind, EvidenceKind } from '../db/database';

/**
 * Pure decisions of the media pipeline: which demuxer reads a sniffed type, which derivatives an
 * item gets, whether a browser can play the original, and whether a probe is believable.
 */

/** What ffprobe said, reduced to what support staff and the pipeline need. */
export interface MediaProbe {
  container: string | null;
  durationSeconds: number | null;
  bitRate: number | null;
  video: {
    codec: string | null;
    profile: string | null;
    width: number;
    height: number;
    /** Width and height as shown, after the rotation the file asks for. */
    displayWidth: number;
    displayHeight: number;
    rotation: number;
    frameRate: number | null;
    pixelFormat: string | null;
    bitRate: number | null;
  } | null;
  audio: {
    codec: string | null;
    sampleRate: number | null;
    channels: number | null;
    channelLayout: string | null;
    bitRate: number | null;
  } | null;
  /** Photos: what sharp read from the header. */
  image?: { width: number; height: number; orientation: number | null };
  /** Earliest creation time a tag claims (container or stream), as given; never trusted as fact. */
  creationTime: string | null;
  tags: Record<string, string>;
}

/**
 * The demuxer for each sniffed type. ffmpeg is always told the format, never left to guess it: a
 * guess is how a playlist or a concat script hidden in an upload gets opened.
 */
const DEMUXERS: Record<string, string> = {
  'video/mp4': 'mov',
  'video/quicktime': 'mov',
  'video/3gpp': 'mov',
  'video/3gpp2': 'mov',
  'audio/mp4': 'mov',
  'video/webm': 'matroska',
  'video/x-matroska': 'matroska',
  'video/x-msvideo': 'avi',
  'video/x-flv': 'flv',
  'video/mpeg': 'mpeg',
  'video/mp2t': 'mpegts',
  'audio/wav': 'wav',
  'audio/aiff': 'aiff',
  'audio/x-caf': 'caf',
  'audio/ogg': 'ogg',
  'audio/flac': 'flac',
  'audio/amr': 'amr',
  'audio/amr-wb': 'amr',
  'audio/mpeg': 'mp3',
  'audio/aac': 'aac',
};

export function demuxerFor(contentType: string): string | undefined {
  return DEMUXERS[contentType];
}

export const DERIVATIVE_KINDS: Record<EvidenceKind, DerivativeKind[]> = {
  packing_video: ['poster', 'contact_sheet', 'preview'],
  call_recording: ['waveform', 'preview'],
  photo: ['thumbnail'],
};

export const DERIVATIVE_CONTENT_TYPES: Record<DerivativeKind, string> = {
  poster: 'image/jpeg',
  contact_sheet: 'image/jpeg',
  thumbnail: 'image/jpeg',
  waveform: 'image/png',
  preview: 'video/mp4', // audio previews are audio/mp4 (see previewContentType)
};

export function previewContentType(kind: EvidenceKind): string {
  return kind === 'call_recording' ? 'audio/mp4' : 'video/mp4';
}

const BROWSER_AUDIO_IN_MP4 = new Set(['aac', 'mp3']);

/**
 * Whether every common browser (Chrome, Firefox, Safari, Edge) plays the original as it is. When
 * not, a preview is made: H.264/AAC MP4 for video, AAC in MP4 for audio.
 */
export function isBrowserPlayable(contentType: string, probe: MediaProbe): boolean {
  const v = probe.video;
  const a = probe.audio;
  if (contentType === 'video/mp4') {
    return (
      v !== null &&
      v.codec === 'h264' &&
      (v.pixelFormat === 'yuv420p' || v.pixelFormat === 'yuvj420p') &&
      (a === null || BROWSER_AUDIO_IN_MP4.has(a.codec ?? ''))
    );
  }
  if (v !== null) return false;
  switch (contentType) {
    case 'audio/mpeg':
      return a?.codec === 'mp3';
    case 'audio/mp4':
      return BROWSER_AUDIO_IN_MP4.has(a?.codec ?? '');
    case 'audio/flac':
      return a?.codec === 'flac';
    case 'audio/wav':
      // Browsers play linear PCM WAV; mu-law, A-law, ADPCM and GSM WAVs from phone systems not.
      return a?.codec === 'pcm_s16le' || a?.codec === 'pcm_u8';
    default:
      return false;
  }
}

/** Below this many bytes per second of claimed duration, the duration is a lie. */
const MIN_BYTES_PER_SECOND = 100;

/**
 * Why this probe cannot be processed, or undefined when it can. Headers are written by whoever
 * made the file: a 10,000-second duration over a few kilobytes would make every timeout and seek
 * derived from it absurd.
 */
export function implausibility(
  kind: EvidenceKind,
  probe: MediaProbe,
  sizeBytes: number,
): string | undefined {
  if (kind === 'packing_video' && !probe.video) return 'the file has no video stream';
  if (kind === 'call_recording' && !probe.audio) return 'the file has no audio stream';
  const d = probe.durationSeconds;
  if (d === null || !Number.isFinite(d) || d <= 0) {
    return 'the media stream is empty: its duration is zero or unknown';
  }
  if (sizeBytes / d < MIN_BYTES_PER_SECOND) {
    return `the header claims ${round(d)} s of media, but the file holds only ${sizeBytes} bytes (${round(sizeBytes / d)} bytes/s); it is truncated or forged`;
  }
  if (probe.video && (probe.video.width <= 0 || probe.video.height <= 0)) {
    return 'the video stream has no frame size';
  }
  return undefined;
}

const round = (n: number) => Math.round(n * 10) / 10;

/** Moments for a contact sheet: the middle of each of `n` equal parts of the clip. */
export function contactSheetTimes(durationSeconds: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => (durationSeconds * (i + 0.5)) / n);
}

/** The poster: a frame a little into the clip, past a black first frame. */
export function posterTime(durationSeconds: number): number {
  return Math.min(durationSeconds * 0.1, 2);
}

/** 0:07, 12:45, 1:02:03. */
export function formatTimestamp(seconds: number): string {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** Audio preview sample rate: phone audio (8 kHz) is raised to 16 kHz; nothing above 48 kHz. */
export function previewSampleRate(source: number | null): number {
  return Math.max(16_000, Math.min(48_000, source ?? 16_000));
}
