import type { ByteRange } from '../storage/blob-store';

export type RangeResult =
  { kind: 'full' } | { kind: 'partial'; range: ByteRange } | { kind: 'unsatisfiable' };

/**
 * Interprets a Range header (RFC 9110 §14) against a representation of `size` bytes. Only a
 * single bytes range is served partially; malformed or multi-range headers get the full body,
 * which the RFC allows.
 */
export function resolveRange(header: string | undefined, size: number): RangeResult {
  if (!header) return { kind: 'full' };
  // The range unit is case-insensitive (RFC 9110 §14.1); a list of ranges is not served partially.
  const m = /^bytes=\s*(\d*)-(\d*)\s*$/i.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'full' };
  const [, first, last] = m as unknown as [string, string, string];
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', range: { start: Math.max(0, size - suffix), end: size - 1 } };
  }
  const start = Number(first);
  const end = last === '' ? Infinity : Number(last);
  if (end < start) return { kind: 'full' };
  // A first byte past the end, however many digits it has, selects nothing (§14.1.1).
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', range: { start, end: Math.min(end, size - 1) } };
}
