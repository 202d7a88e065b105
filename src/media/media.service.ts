import type { DerivativeKind, Db, Executor, MediaStatus } from '../db/database';
import type { AuditLog } from '../base/audit.service';
import type { Logger } from '../base/logger';
import { BlobUnavailableError, type BlobStore } from '../storage/blob-store';
import type { SegmentRepository } from '../evidence/segment.repository';
import type { DerivativeRepository, MediaSource } from './derivative.repository';
import type { FfmpegLimits, FfmpegRepository } from './ffmpeg.repository';
import type { ImageRepository } from './image.repository';
import { MediaToolError } from './media-errors';
import {
  contactSheetTimes,
  DERIVATIVE_CONTENT_TYPES,
  DERIVATIVE_KINDS,
  demuxerFor,
  formatTimestamp,
  implausibility,
  isBrowserPlayable,
  posterTime,
  previewContentType,
  previewSampleRate,
  type MediaProbe,
} from './media-plan';
import type { Scratch, ScratchRepository } from './scratch.repository';
import { systemActor } from '../base/actor';

export interface MediaConfig {
  /** The longest any one ffmpeg run may take, whatever the clip's length. */
  timeoutSeconds: number;
  maxInputPixels: number;
  /** ffmpeg threads per run: cores divided among the concurrent jobs. */
  threads: number;
}

/** Where a job stands in the queue's retries: the last attempt records a final failure. */
export interface Attempt {
  retryCount: number;
  retryLimit: number;
}

const LAST_ATTEMPT: Attempt = { retryCount: 0, retryLimit: 0 };
const GENERATOR = 'evidence-archive media pipeline v1';
const SHEET_COLUMNS = 3;
const SHEET_FRAMES = 9;
/** Thumbnails and tiles fit these boxes; posters and video previews are at most 720p. */
const THUMBNAIL_BOX = 480;
const TILE_BOX = 320;
const MAX_IMAGE_OUTPUT = 32 << 20;

/** Segment cuts keep the original's container where stream copy allows; else Matroska. */
const CUT_FORMATS: Record<string, { format: string; contentType: string }> = {
  'video/mp4': { format: 'mp4', contentType: 'video/mp4' },
  'video/quicktime': { format: 'mov', contentType: 'video/quicktime' },
  'audio/mp4': { format: 'mp4', contentType: 'audio/mp4' },
  'audio/wav': { format: 'wav', contentType: 'audio/wav' },
  'audio/mpeg': { format: 'mp3', contentType: 'audio/mpeg' },
};

/** A failure that is a fact about the file: recorded at once, never retried. */
class Unprocessable extends Error {}

const isPermanent = (err: unknown) =>
  err instanceof Unprocessable || (err instanceof MediaToolError && err.permanent);

interface Made {
  file: string;
  contentType: string;
  width?: number;
  height?: number;
  params: Record<string, unknown>;
}
type Outcome = Made | { notApplicable: string };

interface Job {
  source: MediaSource;
  scratch: Scratch;
  input: string;
  format: string;
  probe: MediaProbe;
}

export interface MediaServiceDeps {
  db: Db;
  repo: DerivativeRepository;
  segments: SegmentRepository;
  store: BlobStore;
  ffmpeg: FfmpegRepository | undefined;
  /** Why ffmpeg is missing, when it is: shown on /readyz and on every item it stops. */
  toolsProblem: string | undefined;
  images: ImageRepository;
  scratch: ScratchRepository;
  audit: AuditLog;
  logger: Logger;
  cfg: MediaConfig;
  now?: () => Date;
}

/**
 * The media pipeline: probes an archived item and makes its derivatives (poster, contact sheet,
 * waveform, browser-playable preview, thumbnail) from a private copy of the original, checked
 * against the item's SHA-256 first. Originals are only ever read. Each derivative is stored
 * content-addressed under derived/ and recorded with the hash of the original it was made from.
 */
export class MediaService {
  private readonly db: Db;
  private readonly repo: DerivativeRepository;
  private readonly segments: SegmentRepository;
  private readonly store: BlobStore;
  private readonly ffmpeg: FfmpegRepository | undefined;
  readonly toolsProblem: string | undefined;
  private readonly images: ImageRepository;
  private readonly scratch: ScratchRepository;
  private readonly audit: AuditLog;
  private readonly logger: Logger;
  private readonly cfg: MediaConfig;
  private readonly now: () => Date;

  constructor(deps: MediaServiceDeps) {
    this.db = deps.db;
    this.repo = deps.repo;
    this.segments = deps.segments;
    this.store = deps.store;
    this.ffmpeg = deps.ffmpeg;
    this.toolsProblem = deps.toolsProblem;
    this.images = deps.images;
    this.scratch = deps.scratch;
    this.audit = deps.audit;
    this.logger = deps.logger;
    this.cfg = deps.cfg;
    this.now = deps.now ?? (() => new Date());
  }

  get toolVersion(): string | undefined {
    return this.ffmpeg?.version;
  }

  /** Shutdown: running ffmpeg is killed, and its job is retried later (by any instance). */
  stop(): void {
    this.ffmpeg?.stopAll();
  }

  /** Whether this instance can derive anything from audio and video. */
  get ffmpegAvailable(): boolean {
    return this.ffmpeg !== undefined;
  }

  /**
   * Probes and derives one item. Failures that are facts about the file are recorded and end the
   * job; anything else (storage, database) is rethrown for the queue to retry, and recorded as
   * final on the last attempt.
   */
  async process(itemId: string, attempt: Attempt = LAST_ATTEMPT): Promise<MediaStatus | 'skipped'> {
    const source = await this.repo.findSource(this.db, itemId);
    if (!source) return 'skipped';
    if (source.deleted_at) {
      await this.repo.finish(this.db, itemId, {
        status: 'failed',
        detail: 'the item was deleted before its media was processed',
        at: this.now(),
      });
      return 'skipped';
    }
    if (source.kind !== 'photo' && !this.ffmpeg) {
      // Said once: an instance without ffmpeg that meets the item again adds nothing to the trail.
      const current = await this.repo.findMedia(this.db, itemId);
      if (current?.status === 'unavailable') return 'unavailable';
      await this.repo.start(this.db, itemId, source.sha256, this.now());
      await this.finish(source, 'unavailable', this.toolsProblem ?? 'ffmpeg is not available');
      return 'unavailable';
    }
    await this.repo.start(this.db, itemId, source.sha256, this.now());
    const scratch = await this.scratch.create();
    try {
      const { status, detail } = await this.derive(source, scratch);
      await this.finish(source, status, detail);
      return status;
    } catch (err) {
      const permanent = isPermanent(err);
      const last = permanent || attempt.retryCount >= attempt.retryLimit;
      // Messages of storage or database errors are for the log, not for support staff.
      // Our own messages are safe to show; those of storage or database errors are for the log.
      const reason =
        permanent || err instanceof MediaToolError
          ? (err as Error).message
          : 'an internal error (storage or database; see the service log)';
      if (!last) {
        this.logger.warn({ err, itemId, attempt: attempt.retryCount + 1 }, 'media attempt failed');
        await this.repo.finish(this.db, itemId, {
          status: 'processing',
          detail: `attempt ${attempt.retryCount + 1} failed with ${reason}; retrying`,
          at: this.now(),
        });
        throw err;
      }
      if (!permanent) this.logger.warn({ err, itemId }, 'media processing gave up');
      await this.finish(source, 'failed', reason);
      return 'failed';
    } finally {
      await scratch.dispose().catch(() => undefined);
    }
  }

  private async finish(source: MediaSource, status: MediaStatus, detail: string | null) {
    await this.repo.finish(this.db, source.id, { status, detail, at: this.now() });
    const derivatives = await this.repo.listDerivatives(this.db, source.id);
    await this.audit.record({
      action: 'media.derive',
      actor: systemActor('media'),
      itemIds: [source.id],
      details: {
        status,
        detail,
        sourceSha256: source.sha256,
        tool: this.ffmpeg?.version ?? null,
        derivatives: derivatives.map((d) => ({ kind: d.kind, status: d.status, sha256: d.sha256 })),
      },
    });
  }

  private async derive(
    source: MediaSource,
    scratch: Scratch,
  ): Promise<{ status: MediaStatus; detail: string | null }> {
    let body;
    try {
      body = await this.store.read(source.blob_key, source.size_bytes);
    } catch (err) {
      if (!(err instanceof BlobUnavailableError)) throw err;
      throw new Unprocessable('the archived bytes are missing or damaged; nothing was derived');
    }
    const copied = await scratch.writeFrom('source', body);
    if (copied.sha256 !== source.sha256) {
      throw new Unprocessable(
        `the stored bytes do not match the archived SHA-256 (${copied.sha256}); nothing was derived from them`,
      );
    }
    const input = scratch.path('source');
    let job: Job;
    if (source.kind === 'photo') {
      const image = await this.images.describe(input);
      const probe: MediaProbe = {
        container: image.format,
        durationSeconds: null,
        bitRate: null,
        video: null,
        audio: null,
        image: { width: image.width, height: image.height, orientation: image.orientation },
        creationTime: null,
        tags: {},
      };
      await this.repo.setProbe(this.db, source.id, probe, this.now());
      job = { source, scratch, input, format: image.format ?? 'image', probe };
    } else {
      const format = demuxerFor(source.content_type);
      if (!format) {
        throw new Unprocessable(`no media reader is configured for ${source.content_type}`);
      }
      const probe = await this.ffmpeg!.probe({ path: input, format });
      await this.repo.setProbe(this.db, source.id, probe, this.now());
      const implausible = implausibility(source.kind, probe, source.size_bytes);
      if (implausible) throw new Unprocessable(implausible);
      job = { source, scratch, input, format, probe };
    }

    const failures: string[] = [];
    let made = 0;
    const earlier = await this.repo.listDerivatives(this.db, source.id);
    for (const kind of DERIVATIVE_KINDS[source.kind]) {
      const existing = earlier.find((d) => d.kind === kind);
      if (existing?.status === 'ready' || existing?.status === 'not_applicable') {
        made++;
        continue; // done by an earlier attempt
      }
      try {
        await this.save(job, kind, await this.make(kind, job));
        made++;
      } catch (err) {
        if (!isPermanent(err)) throw err;
        const reason = (err as Error).message;
        failures.push(`${kind}: ${reason}`);
        await this.repo.saveDerivative(this.db, {
          item_id: source.id,
          kind,
          status: 'failed',
          source_sha256: source.sha256,
          detail: reason,
          params: JSON.stringify({ generator: GENERATOR, tool: this.ffmpeg?.version ?? null }),
          updated_at: this.now(),
        });
      }
    }
    if (source.kind !== 'photo') failures.push(...(await this.cutSegments(job)));
    if (failures.length === 0) return { status: 'done', detail: null };
    return { status: made > 0 ? 'partial' : 'failed', detail: failures.join('; ') };
  }

  private limits(job: Job, maxOutputBytes: number): FfmpegLimits {
    // Generous for the clip's real length (plausibility was checked), bounded for any clip.
    const duration = job.probe.durationSeconds ?? 0;
    return {
      timeoutSeconds: Math.min(this.cfg.timeoutSeconds, Math.ceil(60 + duration * 4)),
      maxPixels: this.cfg.maxInputPixels,
      maxOutputBytes,
      threads: this.cfg.threads,
    };
  }

  private async make(kind: DerivativeKind, job: Job): Promise<Outcome> {
    switch (kind) {
      case 'thumbnail':
        return this.thumbnail(job);
      case 'poster':
        return this.poster(job);
      case 'contact_sheet':
        return this.contactSheet(job);
      case 'waveform':
        return this.waveform(job);
      case 'preview':
        return this.preview(job);
    }
  }

  private async thumbnail(job: Job): Promise<Made> {
    const file = job.scratch.path('thumbnail.jpg');
    const size = await this.images.thumbnail(job.input, file, THUMBNAIL_BOX);
    return {
      file: 'thumbnail.jpg',
      contentType: DERIVATIVE_CONTENT_TYPES.thumbnail,
      ...size,
      params: { box: THUMBNAIL_BOX, metadata: 'stripped' },
    };
  }

  private async poster(job: Job): Promise<Made> {
    const at = posterTime(job.probe.durationSeconds!);
    await this.ffmpeg!.run(
      [{ path: job.input, format: job.format, seekSeconds: at }],
      [
        {
          path: job.scratch.path('poster.jpg'),
          options: [
            ...['-map', '0:v:0', '-frames:v', '1', '-an', '-sn', '-dn'],
            ...['-vf', fitFilter(1280, 720), '-q:v', '3', '-f', 'image2', '-update', '1'],
          ],
        },
      ],
      this.limits(job, MAX_IMAGE_OUTPUT),
    );
    await this.requireOutput(
      job.scratch,
      'poster.jpg',
      `no frame could be decoded at ${formatTimestamp(at)}`,
    );
    const meta = await this.images.describe(job.scratch.path('poster.jpg'));
    return {
      file: 'poster.jpg',
      contentType: DERIVATIVE_CONTENT_TYPES.poster,
      width: meta.width,
      height: meta.height,
      params: { atSeconds: round3(at) },
    };
  }

  private async contactSheet(job: Job): Promise<Made> {
    const times = contactSheetTimes(job.probe.durationSeconds!, SHEET_FRAMES);
    const tiles = times.map((_, i) => `tile-${i}.jpg`);
    // One ffmpeg for all frames: each input seeks on its own, so nine short decodes, not one long.
    await this.ffmpeg!.run(
      times.map((t) => ({ path: job.input, format: job.format, seekSeconds: t })),
      tiles.map((name, i) => ({
        path: job.scratch.path(name),
        options: [
          ...['-map', `${i}:v:0`, '-frames:v', '1', '-an', '-sn', '-dn'],
          ...['-vf', fitFilter(TILE_BOX, TILE_BOX), '-q:v', '4', '-f', 'image2', '-update', '1'],
        ],
      })),
      this.limits(job, MAX_IMAGE_OUTPUT),
    );
    for (const [i, name] of tiles.entries()) {
      await this.requireOutput(
        job.scratch,
        name,
        `no frame could be decoded at ${formatTimestamp(times[i]!)} of a clip said to last ${formatTimestamp(job.probe.durationSeconds!)}`,
      );
    }
    const size = await this.images.contactSheet(
      tiles.map((name, i) => ({ path: job.scratch.path(name), label: formatTimestamp(times[i]!) })),
      SHEET_COLUMNS,
      job.scratch.path('contact-sheet.jpg'),
    );
    return {
      file: 'contact-sheet.jpg',
      contentType: DERIVATIVE_CONTENT_TYPES.contact_sheet,
      ...size,
      params: { columns: SHEET_COLUMNS, atSeconds: times.map(round3) },
    };
  }

  private async waveform(job: Job): Promise<Made> {
    const channels = Math.min(Math.max(job.probe.audio?.channels ?? 1, 1), 8);
    const width = 1600;
    const height = 160 * channels;
    // One lane per channel: on stereo call recordings agent and customer are told apart.
    await this.ffmpeg!.run(
      [{ path: job.input, format: job.format }],
      [
        {
          path: job.scratch.path('waveform.png'),
          options: [
            // sqrt scale: quiet speech stays visible next to loud; drawn on an opaque background.
            '-filter_complex',
            `[0:a:0]showwavespic=s=${width}x${height}:split_channels=1:colors=0x2b6cb0|0xc05621:scale=sqrt[w];` +
              `color=c=0xf4f4f4:s=${width}x${height}[bg];[bg][w]overlay=shortest=1:format=auto,format=rgb24[out]`,
            ...['-map', '[out]', '-frames:v', '1', '-f', 'image2', '-update', '1'],
          ],
        },
      ],
      this.limits(job, MAX_IMAGE_OUTPUT),
    );
    await this.requireOutput(job.scratch, 'waveform.png', 'no audio samples could be decoded');
    return {
      file: 'waveform.png',
      contentType: DERIVATIVE_CONTENT_TYPES.waveform,
      width,
      height,
      params: { channels, lanes: channels > 1 ? 'one per channel, in stream order' : 'mono' },
    };
  }

  private async preview(job: Job): Promise<Outcome> {
    const { source, probe } = job;
    if (isBrowserPlayable(source.content_type, probe)) {
      return { notApplicable: 'the original plays in browsers as it is: use its content URL' };
    }
    const audioOnly = source.kind === 'call_recording';
    const name = audioOnly ? 'preview.m4a' : 'preview.mp4';
    const stereo = (probe.audio?.channels ?? 1) > 1;
    const audio = [
      ...['-c:a', 'aac', '-b:a', stereo ? '128k' : '64k'],
      ...['-ar', String(previewSampleRate(probe.audio?.sampleRate ?? null))],
      ...(stereo ? ['-ac', '2'] : []),
    ];
    const options = audioOnly
      ? ['-map', '0:a:0', '-vn', '-sn', '-dn', ...audio]
      : [
          ...['-map', '0:v:0', '-map', '0:a:0?', '-sn', '-dn'],
          ...['-vf', fitFilter(1280, 720), '-c:v', 'libx264', '-preset', 'veryfast'],
          ...['-crf', '23', '-pix_fmt', 'yuv420p', '-profile:v', 'high'],
          ...audio,
        ];
    await this.ffmpeg!.run(
      [{ path: job.input, format: job.format }],
      [
        {
          path: job.scratch.path(name),
          options: [...options, '-map_metadata', '-1', '-movflags', '+faststart', '-f', 'mp4'],
        },
      ],
      this.limits(job, source.size_bytes + (256 << 20)),
    );
    await this.requireOutput(job.scratch, name, 'nothing could be decoded');
    // A preview that stops early would show support staff less than the evidence holds.
    const out = await this.ffmpeg!.probe({ path: job.scratch.path(name), format: 'mov' });
    const want = probe.durationSeconds!;
    const got = out.durationSeconds ?? 0;
    if (want > 2 && got < want * 0.9) {
      throw new Unprocessable(
        `only ${formatTimestamp(got)} of ${formatTimestamp(want)} could be decoded; the file is damaged or truncated`,
      );
    }
    return {
      file: name,
      contentType: previewContentType(source.kind),
      width: out.video?.width,
      height: out.video?.height,
      params: {
        durationSeconds: round3(got),
        video: out.video ? `${out.video.codec} ${out.video.width}x${out.video.height}` : null,
        audio: out.audio ? `${out.audio.codec} ${out.audio.sampleRate} Hz` : null,
        faststart: true,
      },
    };
  }

  private async requireOutput(scratch: Scratch, name: string, reason: string): Promise<void> {
    if ((await scratch.sizeOf(name)) === undefined) throw new Unprocessable(reason);
  }

  /** Stores one derivative content-addressed and records it, with the original's hash. */
  private async save(job: Job, kind: DerivativeKind, outcome: Outcome): Promise<void> {
    const { source } = job;
    const base = {
      item_id: source.id,
      kind,
      source_sha256: source.sha256,
      updated_at: this.now(),
    };
    if ('notApplicable' in outcome) {
      await this.repo.saveDerivative(this.db, {
        ...base,
        status: 'not_applicable',
        detail: outcome.notApplicable,
        params: JSON.stringify({ generator: GENERATOR }),
      });
      return;
    }
    await this.storeFile(
      job,
      outcome.file,
      (blob) =>
        this.repo.saveDerivative(this.db, {
          ...base,
          status: 'ready',
          sha256: blob.sha256,
          size_bytes: blob.size,
          content_type: outcome.contentType,
          blob_key: blob.blobKey,
          width: outcome.width ?? null,
          height: outcome.height ?? null,
          detail: null,
          params: JSON.stringify({
            generator: GENERATOR,
            tool: kind === 'thumbnail' ? 'sharp' : (this.ffmpeg?.version ?? null),
            ...outcome.params,
          }),
        }),
      (sha256) => this.repo.blobInUse(this.db, sha256, source.id),
    );
  }

  /**
   * Stores a file from the job's scratch content-addressed under derived/ (hashed as it is read),
   * then records it with `record`. Not recorded (the item was deleted meanwhile, or the database
   * failed): the blob is removed again unless another record holds the same bytes.
   */
  private async storeFile(
    job: Job,
    file: string,
    record: (blob: { sha256: string; size: number; blobKey: string }) => Promise<void>,
    inUse: (sha256: string) => Promise<boolean>,
  ): Promise<void> {
    const { body, digest } = job.scratch.readHashed(file);
    // A store that failed leaves the body as it was: closing it closes the scratch file.
    const stagingKey = await this.store.writeStaging(body).catch((err: unknown) => {
      body.destroy();
      throw err;
    });
    const { sha256, size } = digest();
    let blobKey: string;
    try {
      ({ key: blobKey } = await this.store.promote(stagingKey, sha256, size, 'derived'));
    } catch (err) {
      await this.store.discardStaging(stagingKey).catch(() => undefined);
      throw err;
    }
    try {
      await record({ sha256, size, blobKey });
    } catch (err) {
      if (!(await inUse(sha256).catch(() => true))) {
        await this.store.delete(blobKey).catch(() => undefined);
      }
      throw err;
    }
  }

  /**
   * Cuts each of the item's segments not cut yet, by stream copy (no re-encoding: the cut is the
   * original's own packets from the keyframe at or before the segment's start).
   */
  private async cutSegments(job: Job): Promise<string[]> {
    const failures: string[] = [];
    const { source, probe } = job;
    const cut = new Set(await this.segments.listReadyCutIds(this.db, source.id));
    for (const seg of await this.segments.listForItem(this.db, source.id)) {
      if (cut.has(seg.id)) continue;
      const start = Number(seg.start_sec);
      const end = Math.min(Number(seg.end_sec), probe.durationSeconds ?? Infinity);
      const base = {
        segment_id: seg.id,
        item_id: source.id,
        source_sha256: source.sha256,
        updated_at: this.now(),
      };
      try {
        if (start >= end) {
          throw new Unprocessable(
            `it starts at ${formatTimestamp(start)}, after the recording ends (${formatTimestamp(probe.durationSeconds ?? 0)})`,
          );
        }
        const out = CUT_FORMATS[source.content_type] ?? {
          format: 'matroska',
          contentType: source.kind === 'call_recording' ? 'audio/x-matroska' : 'video/x-matroska',
        };
        const name = `segment-${seg.id}`;
        await this.ffmpeg!.run(
          [{ path: job.input, format: job.format, seekSeconds: start }],
          [
            {
              path: job.scratch.path(name),
              options: [
                ...['-t', (end - start).toFixed(3), '-map', '0:v?', '-map', '0:a?', '-c', 'copy'],
                ...['-avoid_negative_ts', 'make_zero', '-map_metadata', '-1'],
                ...(out.format === 'mp4' || out.format === 'mov'
                  ? ['-movflags', '+faststart']
                  : []),
                ...['-f', out.format],
              ],
            },
          ],
          this.limits(job, source.size_bytes + (16 << 20)),
        );
        await this.requireOutput(job.scratch, name, 'nothing could be copied from that part');
        await this.storeFile(
          job,
          name,
          (blob) =>
            this.segments.saveCut(this.db, {
              ...base,
              status: 'ready',
              sha256: blob.sha256,
              size_bytes: blob.size,
              content_type: out.contentType,
              blob_key: blob.blobKey,
              detail: null,
              params: JSON.stringify({
                generator: GENERATOR,
                tool: this.ffmpeg?.version ?? null,
                method: 'stream copy from the keyframe at or before the start',
                orderId: seg.order_id,
                startSec: start,
                endSec: end,
                requestedEndSec: Number(seg.end_sec),
              }),
            }),
          (sha256) => this.segments.cutBlobInUse(this.db, sha256, { segmentId: seg.id }),
        );
      } catch (err) {
        if (!isPermanent(err)) throw err;
        const reason = (err as Error).message;
        failures.push(`segment ${seg.order_id} ${formatTimestamp(start)}: ${reason}`);
        await this.segments.saveCut(this.db, {
          ...base,
          status: 'failed',
          detail: reason,
          params: JSON.stringify({ generator: GENERATOR, tool: this.ffmpeg?.version ?? null }),
        });
      }
    }
    return failures;
  }

  /**
   * Removes a deleted item's derivatives with it: a thumbnail shows what the evidence showed. Bytes
   * first, rows after, so a failed delete is retried by the next purge. Blobs another item's ready
   * derivative shares (same bytes) stay.
   */
  async purgeDerivatives(db: Executor, itemId: string): Promise<void> {
    const removeUnshared = async (
      blobs: { sha256: string; blobKey: string }[],
      inUse: (sha256: string) => Promise<boolean>,
    ) => {
      for (const b of blobs) if (!(await inUse(b.sha256))) await this.store.delete(b.blobKey);
    };
    await removeUnshared(await this.repo.listStored(db, itemId), (sha) =>
      this.repo.blobInUse(db, sha, itemId),
    );
    await removeUnshared(await this.segments.listStoredCuts(db, itemId), (sha) =>
      this.segments.cutBlobInUse(db, sha, { itemId }),
    );
    const at = this.now();
    await this.repo.markPurged(db, itemId, at);
    await this.segments.markCutsPurged(db, itemId, at);
    await this.repo.clearProbe(db, itemId, at);
  }
}

/** Scales to fit a box in either orientation, never enlarging, to even dimensions (H.264 needs them). */
function fitFilter(long: number, short: number): string {
  // Quoted, so the commas inside belong to the expressions, not the filter graph.
  const s = `min(1,if(gte(iw,ih),min(${long}/iw,${short}/ih),min(${short}/iw,${long}/ih)))`;
  return `scale=w='max(2,trunc(iw*${s}/2)*2)':h='max(2,trunc(ih*${s}/2)*2)'`;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;
