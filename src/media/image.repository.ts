import sharp from 'sharp';
import { MediaToolError, scrubPaths, TRANSIENT_MESSAGE } from './media-errors';

export interface ImageLimits {
  /** Far below sharp's default of 268 million: a decompression bomb is refused from its header. */
  maxInputPixels: number;
  /** Stripped from sharp's messages before they are stored: our paths, not the item's. */
  scratchRoot: string;
}

export interface ImageResult {
  width: number;
  height: number;
}

// A 5×7 bitmap font for timestamps: drawn as rectangles, so labels look the same on every machine
// whatever fonts it has (sharp would otherwise render SVG text with the system's fonts, or none).
const GLYPHS: Record<string, string[]> = {
  '0': ['01110', '10001', '10011', '10101', '11001', '10001', '01110'],
  '1': ['00100', '01100', '00100', '00100', '00100', '00100', '01110'],
  '2': ['01110', '10001', '00001', '00010', '00100', '01000', '11111'],
  '3': ['11110', '00001', '00001', '01110', '00001', '00001', '11110'],
  '4': ['00010', '00110', '01010', '10010', '11111', '00010', '00010'],
  '5': ['11111', '10000', '11110', '00001', '00001', '10001', '01110'],
  '6': ['00110', '01000', '10000', '11110', '10001', '10001', '01110'],
  '7': ['11111', '00001', '00010', '00100', '01000', '01000', '01000'],
  '8': ['01110', '10001', '10001', '01110', '10001', '10001', '01110'],
  '9': ['01110', '10001', '10001', '01111', '00001', '00010', '01100'],
  ':': ['00000', '01100', '01100', '00000', '01100', '01100', '00000'],
};

/** An SVG label: white pixels on a dark box, `scale` device pixels per font pixel. */
export function labelSvg(label: string, scale = 2): { svg: Buffer; width: number; height: number } {
  const pad = 2 * scale;
  const advance = 6 * scale;
  const width = pad * 2 + label.length * advance - scale;
  const height = pad * 2 + 7 * scale;
  const rects: string[] = [];
  [...label].forEach((ch, i) => {
    (GLYPHS[ch] ?? []).forEach((row, y) => {
      [...row].forEach((bit, x) => {
        if (bit === '1') {
          rects.push(
            `<rect x="${pad + i * advance + x * scale}" y="${pad + y * scale}" width="${scale}" height="${scale}"/>`,
          );
        }
      });
    });
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="#000" fill-opacity="0.65"/><g fill="#fff">${rects.join('')}</g></svg>`;
  return { svg: Buffer.from(svg), width, height };
}

/** The one place sharp runs: every input capped in pixels, and refused on the first error. */
export class ImageRepository {
  constructor(private readonly limits: ImageLimits) {
    // libvips' cache keeps decoded images of files we never look at again.
    sharp.cache(false);
  }

  private open(path: string) {
    return sharp(path, {
      limitInputPixels: this.limits.maxInputPixels,
      failOn: 'error',
      sequentialRead: true,
    });
  }

  private async guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const message = (err as Error).message.split('\n')[0]!;
      const reason = scrubPaths(message, [this.limits.scratchRoot]).slice(0, 200);
      throw new MediaToolError(`${what}: ${reason}`, !TRANSIENT_MESSAGE.test(message));
    }
  }

  /** Format and size from the header alone, without decoding pixels. */
  async describe(path: string): Promise<{
    format: string | null;
    width: number;
    height: number;
    orientation: number | null;
    hasExif: boolean;
  }> {
    return this.guard('the image could not be read', async () => {
      const m = await this.open(path).metadata();
      const pixels = (m.width ?? 0) * (m.height ?? 0);
      if (pixels > this.limits.maxInputPixels) {
        throw new Error(
          `it declares ${m.width}×${m.height} pixels, above the limit of ${this.limits.maxInputPixels}`,
        );
      }
      return {
        format: m.format ?? null,
        width: m.width ?? 0,
        height: m.height ?? 0,
        orientation: m.orientation ?? null,
        hasExif: m.exif !== undefined,
      };
    });
  }

  /**
   * A JPEG fitting in a `box`-pixel square, turned upright. sharp writes no metadata unless asked,
   * so EXIF (GPS position, device serials) is left out of the derivative; the original keeps it.
   */
  async thumbnail(input: string, output: string, box: number): Promise<ImageResult> {
    return this.guard('the thumbnail could not be made', async () => {
      const info = await this.open(input)
        .rotate()
        .resize({ width: box, height: box, fit: 'inside', withoutEnlargement: true })
        .jpeg({ quality: 80 })
        .toFile(output);
      return { width: info.width, height: info.height };
    });
  }

  /** Frames in a grid, each with its timestamp drawn in its corner, as one JPEG. */
  async contactSheet(
    tiles: { path: string; label: string }[],
    columns: number,
    output: string,
  ): Promise<ImageResult> {
    return this.guard('the contact sheet could not be composed', async () => {
      const frames = await Promise.all(
        tiles.map(async (t) => ({ ...t, meta: await this.open(t.path).metadata() })),
      );
      const cellW = Math.max(...frames.map((f) => f.meta.width ?? 0));
      const cellH = Math.max(...frames.map((f) => f.meta.height ?? 0));
      const gap = 4;
      const rows = Math.ceil(frames.length / columns);
      const width = columns * cellW + (columns + 1) * gap;
      const height = rows * cellH + (rows + 1) * gap;
      const layers: sharp.OverlayOptions[] = [];
      frames.forEach((f, i) => {
        const left = gap + (i % columns) * (cellW + gap);
        const top = gap + Math.floor(i / columns) * (cellH + gap);
        const w = f.meta.width ?? 0;
        const h = f.meta.height ?? 0;
        layers.push({
          input: f.path,
          left: left + Math.floor((cellW - w) / 2),
          top: top + Math.floor((cellH - h) / 2),
        });
        const label = labelSvg(f.label);
        layers.push({
          input: label.svg,
          left: left + 4,
          top: top + Math.max(0, cellH - label.height - 4),
        });
      });
      const info = await sharp({
        create: { width, height, channels: 3, background: '#1b1b1b' },
        limitInputPixels: this.limits.maxInputPixels,
      })
        .composite(layers)
        .jpeg({ quality: 82 })
        .toFile(output);
      return { width: info.width, height: info.height };
    });
  }
}
