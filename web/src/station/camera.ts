import { WebmProgress } from './webm-duration';

/**
 * The camera and what is recorded of it: every camera frame is drawn on a canvas with the clip's
 * context burned in (order, station, operator, date and time to the second), and the canvas is
 * what MediaRecorder records and what the packer sees, so the preview shows exactly the proof.
 */

export interface CameraSettings {
  deviceId: string;
  width: number;
  height: number;
  microphone: boolean;
}

/** The lines burned into the frame; none while idle but the station and the time. */
export type OverlayLines = () => string[];

const pad = (n: number) => String(n).padStart(2, '0');

/** Local date and time with seconds and the UTC offset: 2026-12-04 20:31:07 +01:00. */
export function stamp(d: Date): string {
  const off = -d.getTimezoneOffset();
  const sign = off < 0 ? '-' : '+';
  const abs = Math.abs(off);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ` +
    `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`
  );
}

export class Camera {
  readonly canvas: HTMLCanvasElement;
  private readonly video: HTMLVideoElement;
  private readonly ctx: CanvasRenderingContext2D;
  private stream: MediaStream | null = null;
  private recorded: MediaStream | null = null;
  private running = false;
  private drawn = 0;
  private total = 0;
  /** Frames composited in the last whole second (shown, and read by the browser test). */
  fps = 0;

  constructor(private readonly overlay: OverlayLines) {
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'preview';
    this.canvas.width = 1280;
    this.canvas.height = 720;
    const ctx = this.canvas.getContext('2d', { alpha: false });
    if (!ctx) throw new Error('This browser cannot draw on a canvas.');
    this.ctx = ctx;
    this.video = document.createElement('video');
    this.video.muted = true;
    this.video.playsInline = true;
    setInterval(() => {
      this.fps = this.drawn;
      this.drawn = 0;
      this.canvas.dataset.fps = String(this.fps);
    }, 1000);
  }

  /** Opens the camera (and the microphone when allowed); a refused microphone is no error. */
  async open(settings: CameraSettings, onEnded: () => void = () => undefined): Promise<void> {
    this.close();
    const video: MediaTrackConstraints = {
      width: { ideal: settings.width },
      height: { ideal: settings.height },
      frameRate: { ideal: 30 },
      ...(settings.deviceId ? { deviceId: { exact: settings.deviceId } } : {}),
    };
    let stream: MediaStream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video, audio: settings.microphone });
    } catch (err) {
      if (!settings.microphone) throw err;
      stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
    }
    this.stream = stream;
    this.video.srcObject = stream;
    await this.video.play();
    const track = stream.getVideoTracks()[0];
    track?.addEventListener('ended', () => {
      if (this.stream === stream) onEnded();
    });
    const { width, height } = track?.getSettings() ?? {};
    this.canvas.width = width ?? this.video.videoWidth ?? settings.width;
    this.canvas.height = height ?? this.video.videoHeight ?? settings.height;
    const captured = this.canvas.captureStream(30);
    for (const a of stream.getAudioTracks()) captured.addTrack(a);
    this.recorded = captured;
    this.running = true;
    this.loop();
  }

  get hasAudio(): boolean {
    return (this.stream?.getAudioTracks().length ?? 0) > 0;
  }

  get label(): string {
    return this.stream?.getVideoTracks()[0]?.label ?? '';
  }

  /** The stream MediaRecorder records: the composited canvas, and the microphone if any. */
  get output(): MediaStream {
    if (!this.recorded) throw new Error('The camera is not open.');
    return this.recorded;
  }

  close(): void {
    this.running = false;
    this.stream?.getTracks().forEach((t) => t.stop());
    this.recorded?.getVideoTracks().forEach((t) => t.stop());
    this.stream = null;
    this.recorded = null;
  }

  // Drawn at the camera's 30 frames a second on animation frames (which also stop while the page
  // is hidden, as the station's page never is); the canvas's capture stream takes what was drawn.
  private loop(): void {
    let last = 0;
    const step = (now: number) => {
      if (!this.running) return;
      if (now - last >= 1000 / 30 - 4) {
        last = now;
        this.draw();
      }
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }

  private draw(): void {
    const { ctx, canvas } = this;
    const w = canvas.width;
    const h = canvas.height;
    if (this.video.readyState >= 2) ctx.drawImage(this.video, 0, 0, w, h);
    const lines = this.overlay();
    if (lines.length) {
      const size = Math.max(14, Math.round(h / 26));
      const lineHeight = Math.round(size * 1.3);
      const boxHeight = lineHeight * lines.length + size * 0.6;
      ctx.fillStyle = 'rgba(0, 0, 0, 0.72)';
      ctx.fillRect(0, h - boxHeight, w, boxHeight);
      ctx.font = `600 ${size}px "DejaVu Sans Mono", "Liberation Mono", monospace`;
      ctx.fillStyle = '#ffffff';
      ctx.textBaseline = 'top';
      lines.forEach((line, i) => {
        ctx.fillText(line, size * 0.5, h - boxHeight + size * 0.3 + i * lineHeight, w - size);
      });
    }
    this.drawn++;
    // Frames composited so far, which the browser test reads the preview's frame rate from (a
    // property, not an attribute: changing the DOM 30 times a second would cost frames itself).
    (this.canvas as HTMLCanvasElement & { frames?: number }).frames = ++this.total;
  }
}

/** The first recording format the browser has, in the order the settings prefer. */
export function pickMimeType(format: 'auto' | 'webm' | 'mp4', audio: boolean): string {
  const webm = audio
    ? ['video/webm;codecs=vp8,opus', 'video/webm;codecs=vp9,opus', 'video/webm']
    : ['video/webm;codecs=vp8', 'video/webm;codecs=vp9', 'video/webm'];
  const mp4 = audio
    ? ['video/mp4;codecs=avc1.42E01F,mp4a.40.2', 'video/mp4;codecs=avc1,opus', 'video/mp4']
    : ['video/mp4;codecs=avc1.42E01F', 'video/mp4'];
  const order = format === 'mp4' ? [...mp4, ...webm] : [...webm, ...mp4];
  const found = order.find((t) => MediaRecorder.isTypeSupported(t));
  if (!found) throw new Error('This browser cannot record video (no MediaRecorder format).');
  return found;
}

/** How long a stop waits at most for the encoder to catch up with the moment of the scan. */
const CATCH_UP_MS = 5000;

/**
 * One clip being recorded: MediaRecorder hands a piece over every second, and each is given to
 * `onPiece` (which stores it) in order; `stop()` resolves once the last piece is stored.
 */
export class ClipRecorder {
  private readonly recorder: MediaRecorder;
  private writes: Promise<void> = Promise.resolve();
  private parsing: Promise<void> = Promise.resolve();
  private readonly progress: WebmProgress | null;
  private failed: unknown = null;
  readonly started: Promise<Date>;
  private startedAt = 0;

  constructor(
    stream: MediaStream,
    readonly mimeType: string,
    onPiece: (data: Blob) => Promise<void>,
    bitsPerSecond: number,
  ) {
    this.recorder = new MediaRecorder(stream, {
      mimeType,
      videoBitsPerSecond: bitsPerSecond,
      audioBitsPerSecond: 64_000,
    });
    this.progress = mimeType.startsWith('video/webm') ? new WebmProgress() : null;
    this.recorder.ondataavailable = (e) => {
      if (!e.data.size) return;
      const progress = this.progress;
      if (progress) {
        const data = e.data;
        this.parsing = this.parsing.then(async () =>
          progress.push(new Uint8Array(await data.arrayBuffer())),
        );
      }
      this.writes = this.writes.then(() =>
        onPiece(e.data).catch((err) => {
          this.failed = err;
        }),
      );
    };
    this.started = new Promise((resolve) => {
      this.recorder.onstart = () => {
        this.startedAt = performance.now();
        resolve(new Date());
      };
    });
    this.recorder.start(1000);
  }

  /** Seconds since the first frame. */
  get seconds(): number {
    return this.startedAt ? (performance.now() - this.startedAt) / 1000 : 0;
  }

  /**
   * Ends the clip with the frames of the moment it was called. A busy PC's encoder runs behind
   * the camera, and MediaRecorder drops what it has not encoded when it stops: so it records on
   * until the encoded video reaches that moment (at most a few seconds; without a WebM to follow,
   * half a second). Resolves with the clip's length once its last piece is stored.
   */
  async stop(): Promise<number> {
    const target = this.seconds;
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    if (this.recorder.state !== 'inactive') {
      const progress = this.progress;
      if (progress) {
        const until = performance.now() + CATCH_UP_MS;
        while (
          performance.now() < until &&
          !progress.broken &&
          (progress.videoSeconds ?? -1) < target - 0.1
        ) {
          this.recorder.requestData();
          await sleep(200);
          await this.parsing;
        }
      } else {
        await sleep(500);
      }
    }
    const duration = this.seconds;
    if (this.recorder.state !== 'inactive') {
      const stopped = new Promise<void>((resolve) => {
        this.recorder.onstop = () => resolve();
      });
      this.recorder.stop();
      await stopped;
    }
    await this.writes;
    if (this.failed) throw this.failed;
    return duration;
  }
}
