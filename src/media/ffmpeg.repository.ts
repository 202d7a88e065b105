import ffmpeg, { type FfmpegCommand, type FfprobeData, type FfprobeStream } from 'fluent-ffmpeg';
import path from 'node:path';
import { MediaToolError, scrubPaths, TRANSIENT_MESSAGE } from './media-errors';
import type { MediaProbe } from './media-plan';
import type { ToolPaths } from './media-tools';

export interface FfmpegInput {
  path: string;
  /** The demuxer, from the sniffed type: never guessed by ffmpeg. */
  format: string;
  /** Input seek, in seconds (fast: seeks in the container, then decodes from a keyframe). */
  seekSeconds?: number;
}

export interface FfmpegOutput {
  path: string;
  options: string[];
}

export interface FfmpegLimits {
  timeoutSeconds: number;
  /** Decoders refuse frames larger than this (a 50,000×50,000 "video" is refused, not decoded). */
  maxPixels: number;
  /** Output files stop growing here. */
  maxOutputBytes: number;
  threads: number;
}

/**
 * Input options on every file ffmpeg or ffprobe opens: local files and pipes only, so no URL in a
 * file (a playlist, a reference movie, a concat list) can make it fetch anything; the format named.
 */
const inputGuards = (format: string) => ['-protocol_whitelist', 'file,pipe', '-f', format];

const TAG_KEYS = [
  'creation_time',
  'com.apple.quicktime.creationdate',
  'date',
  'encoder',
  'com.apple.quicktime.make',
  'com.apple.quicktime.model',
  'com.android.manufacturer',
  'com.android.model',
  'handler_name',
  'title',
  'comment',
];

export interface FfmpegRepositoryDeps {
  tools: ToolPaths;
  opts: { scratchRoot: string; probeTimeoutSeconds: number };
}

/**
 * The one place ffmpeg and ffprobe run, through fluent-ffmpeg. Every input is forced to its sniffed
 * format and restricted to local files; every run has a timeout and a size ceiling on its output.
 */
export class FfmpegRepository {
  private readonly running = new Set<FfmpegCommand>();
  private stopping = false;

  private readonly tools: ToolPaths;
  private readonly opts: { scratchRoot: string; probeTimeoutSeconds: number };

  constructor(deps: FfmpegRepositoryDeps) {
    this.tools = deps.tools;
    this.opts = deps.opts;
  }

  get version(): string {
    return this.tools.version;
  }

  async probe(input: FfmpegInput): Promise<MediaProbe> {
    const probing = new Promise<FfprobeData>((resolve, reject) => {
      ffmpeg(input.path)
        .setFfprobePath(this.tools.ffprobe)
        .ffprobe(
          [
            '-hide_banner',
            ...inputGuards(input.format),
            // Bounded header reading: a file cannot make ffprobe read and decode for ever.
            ...['-probesize', String(32 << 20), '-analyzeduration', String(30_000_000)],
          ],
          (err, result) => (err ? reject(err) : resolve(result)),
        );
    });
    // The launcher kills a stuck ffprobe where coreutils' timeout exists; elsewhere we stop waiting.
    const deadline = this.tools.probeTimeoutEnforced
      ? probing
      : Promise.race([
          probing,
          new Promise<never>((_, reject) =>
            setTimeout(
              () => reject(new Error(`ffprobe ran longer than ${this.opts.probeTimeoutSeconds} s`)),
              this.opts.probeTimeoutSeconds * 1000,
            ).unref(),
          ),
        ]);
    const data = await deadline.catch((err: NodeJS.ErrnoException) => {
      throw new MediaToolError(
        `ffprobe could not read the file: ${this.reason(err.message)}`,
        !this.isTransient(err, err.message),
      );
    });
    return normalizeProbe(data);
  }

  /** One ffmpeg run: several inputs (each with its seek) into one or more outputs. */
  async run(inputs: FfmpegInput[], outputs: FfmpegOutput[], limits: FfmpegLimits): Promise<void> {
    if (this.stopping) throw new MediaToolError('the service is stopping', false);
    const threads = String(limits.threads);
    const cmd = ffmpeg().setFfmpegPath(this.tools.ffmpeg);
    inputs.forEach((input, i) => {
      cmd.input(input.path).inputOptions([
        // Global options are recognised anywhere on ffmpeg's command line.
        ...(i === 0 ? ['-nostdin', '-hide_banner', '-nostats', '-filter_threads', threads] : []),
        ...inputGuards(input.format),
        ...['-max_pixels', String(limits.maxPixels), '-threads', threads],
        ...(input.seekSeconds !== undefined ? ['-ss', input.seekSeconds.toFixed(3)] : []),
      ]);
    });
    for (const output of outputs) {
      cmd
        .output(output.path)
        .outputOptions([
          ...output.options,
          ...['-fs', String(limits.maxOutputBytes), '-threads', threads],
        ]);
    }
    this.running.add(cmd);
    try {
      await new Promise<void>((resolve, reject) => {
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          cmd.kill('SIGKILL');
        }, limits.timeoutSeconds * 1000);
        cmd
          .on('end', () => {
            clearTimeout(timer);
            resolve();
          })
          .on(
            'error',
            (err: NodeJS.ErrnoException, _stdout: string | null, stderr: string | null) => {
              clearTimeout(timer);
              const text = stderr || err.message;
              reject(
                timedOut
                  ? new MediaToolError(`ffmpeg ran longer than ${limits.timeoutSeconds} s`, false)
                  : new MediaToolError(
                      `ffmpeg failed: ${this.reason(text)}`,
                      !this.isTransient(err, text),
                    ),
              );
            },
          )
          .run();
      });
    } finally {
      this.running.delete(cmd);
    }
  }

  /** Kills every running ffmpeg (shutdown): their jobs fail as retryable and run again later. */
  stopAll(): void {
    this.stopping = true;
    for (const cmd of this.running) cmd.kill('SIGKILL');
  }

  /** Could not start, the disk is full, or we killed it ourselves: not the file's fault. */
  private isTransient(err: NodeJS.ErrnoException, text: string): boolean {
    return this.stopping || typeof err.code === 'string' || TRANSIENT_MESSAGE.test(text);
  }

  /** The last lines ffmpeg wrote that say what went wrong, without our own paths. */
  private reason(stderr: string): string {
    const roots = [this.opts.scratchRoot, path.dirname(this.tools.ffmpeg)];
    const lines = scrubPaths(stderr, roots)
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l && !/^(Input|Output|Stream|Duration|Metadata|\s)/.test(l));
    const tail = lines.slice(-2).join(' / ') || 'no detail';
    return tail.replace(/[^\x20-\x7e]/g, '?').slice(0, 300);
  }
}

const num = (v: unknown): number | null => {
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : null;
};

/** Text from a file header: printable, bounded, never NUL (PostgreSQL's jsonb refuses it). */
const text = (v: unknown, max = 200): string | null =>
  v === undefined || v === null || v === 'N/A' || v === ''
    ? null
    : String(v)
        .replace(/\p{Cc}/gu, ' ')
        .slice(0, max);

function frameRate(s: FfprobeStream): number | null {
  for (const r of [s.avg_frame_rate, s.r_frame_rate]) {
    const [n, d] = String(r ?? '')
      .split('/')
      .map(Number);
    if (n && d) return Math.round((n / d) * 1000) / 1000;
  }
  return null;
}

export function normalizeProbe(data: FfprobeData): MediaProbe {
  const v = data.streams.find((s) => s.codec_type === 'video' && !isCoverArt(s));
  const a = data.streams.find((s) => s.codec_type === 'audio');
  const tags: Record<string, string> = {};
  const sources = [data.format.tags, v?.tags, a?.tags] as (Record<string, unknown> | undefined)[];
  for (const key of TAG_KEYS) {
    for (const t of sources) {
      const value = text(t?.[key] ?? t?.[key.toUpperCase()]);
      if (value !== null && !(key in tags)) tags[key] = value;
    }
  }
  const creationTime = tags['com.apple.quicktime.creationdate'] ?? tags['creation_time'] ?? null;
  let video: MediaProbe['video'] = null;
  if (v) {
    const width = num(v.width) ?? 0;
    const height = num(v.height) ?? 0;
    const rotation = num((v as Record<string, unknown>).rotation ?? v.tags?.rotate) ?? 0;
    const quarter = Math.abs(Math.round(rotation / 90)) % 2 === 1;
    video = {
      codec: text(v.codec_name, 40),
      profile: text(v.profile, 60),
      width,
      height,
      displayWidth: quarter ? height : width,
      displayHeight: quarter ? width : height,
      rotation,
      frameRate: frameRate(v),
      pixelFormat: text(v.pix_fmt, 40),
      bitRate: num(v.bit_rate),
    };
  }
  const duration = num(data.format.duration) ?? num(v?.duration) ?? num(a?.duration) ?? null;
  return {
    container: text(data.format.format_name, 80),
    durationSeconds: duration,
    bitRate: num(data.format.bit_rate),
    video,
    audio: a
      ? {
          codec: text(a.codec_name, 40),
          sampleRate: num(a.sample_rate),
          channels: num(a.channels),
          channelLayout: text(a.channel_layout, 40),
          bitRate: num(a.bit_rate),
        }
      : null,
    creationTime,
    tags,
  };
}

/** MP3s and M4As carry album art as a one-frame "video" stream: not a video. */
function isCoverArt(s: FfprobeStream): boolean {
  const disposition = (s.disposition ?? {}) as Record<string, unknown>;
  return (
    disposition.attached_pic === 1 ||
    (['mjpeg', 'png'].includes(String(s.codec_name)) && num(s.nb_frames) === 1)
  );
}
