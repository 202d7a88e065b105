import { AppError } from '../base/errors';

const MAX_FILENAME_BYTES = 255;

/**
 * Refuses filenames only a broken or hostile client sends: control characters (NUL, CR, LF),
 * directory parts or traversal, and names longer than any filesystem allows.
 */
export function assertAcceptableFilename(raw: string | undefined): void {
  if (!raw) return;
  const problem =
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\u007f]/.test(raw)
      ? 'contains control characters'
      : /[/\\]/.test(raw) || raw === '.' || raw === '..'
        ? 'contains a path'
        : Buffer.byteLength(raw) > MAX_FILENAME_BYTES
          ? `is longer than ${MAX_FILENAME_BYTES} bytes`
          : undefined;
  if (problem) {
    throw new AppError('invalid_filename', `The file's name ${problem}; send the bare file name.`);
  }
}

/**
 * A client's filename made safe to store and show: the last path segment only, no control or
 * bidi-override characters, NFC, at most 255 UTF-8 bytes (keeping the extension). It is kept for
 * people to read and is never used to build a path.
 */
export function sanitizeFilename(raw: string | undefined): string | null {
  if (!raw) return null;
  let name = raw.normalize('NFC');
  name = name.split(/[/\\]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  name = name.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, '');
  name = name.trim().replace(/^\.+$/, '');
  if (!name) return null;
  if (Buffer.byteLength(name) <= MAX_FILENAME_BYTES) return name;
  const dot = name.lastIndexOf('.');
  const ext = dot > 0 && name.length - dot <= 16 ? name.slice(dot) : '';
  let stem = name.slice(0, name.length - ext.length);
  while (Buffer.byteLength(stem + ext) > MAX_FILENAME_BYTES)
    stem = Array.from(stem).slice(0, -1).join('');
  return stem + ext;
}

/** A Content-Disposition header value that no filename can break out of. */
export function contentDisposition(type: 'attachment' | 'inline', filename: string): string {
  const fallback = filename.replace(/[^\x20-\x7e]|["\\%;]/g, '_');
  const encoded = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `${type}; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}
