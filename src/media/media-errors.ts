/**
 * A media tool (ffmpeg, ffprobe, sharp) refused the input or could not run. `permanent` failures
 * are facts about the file: recorded at once, never retried. The others (the tool could not start,
 * the disk is full, a timeout, a shutdown) are retried by the job queue.
 */
export class MediaToolError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
  ) {
    super(message);
    this.name = 'MediaToolError';
  }
}

/** Failures of the machine rather than of the file. */
export const TRANSIENT_MESSAGE =
  /No space left on device|Resource temporarily unavailable|Too many open files|unable to open for write/i;

/** Replaces every path under our own directories with its file name: they are ours, not the item's. */
export function scrubPaths(text: string, roots: string[]): string {
  let out = text;
  for (const root of roots) {
    const escaped = root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    out = out.replace(new RegExp(`${escaped}(?:/[^\\s'":/]+)*/([^\\s'":/]+)`, 'g'), '$1');
    out = out.split(root).join('');
  }
  return out;
}
