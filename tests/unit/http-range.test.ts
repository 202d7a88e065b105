import { resolveRange } from '../../src/http/http-range';

describe('resolveRange', () => {
  const size = 1000;
  it.each([
    [undefined, { kind: 'full' }],
    ['bytes=0-0', { kind: 'partial', range: { start: 0, end: 0 } }],
    ['bytes=0-', { kind: 'partial', range: { start: 0, end: 999 } }],
    ['bytes=10-19', { kind: 'partial', range: { start: 10, end: 19 } }],
    ['bytes=990-5000', { kind: 'partial', range: { start: 990, end: 999 } }],
    ['bytes=-1', { kind: 'partial', range: { start: 999, end: 999 } }],
    ['bytes=-1000', { kind: 'partial', range: { start: 0, end: 999 } }],
    ['bytes=-99999', { kind: 'partial', range: { start: 0, end: 999 } }],
    [' bytes=5-6 ', { kind: 'partial', range: { start: 5, end: 6 } }],
    ['bytes=1000-', { kind: 'unsatisfiable' }],
    ['bytes=1000-1001', { kind: 'unsatisfiable' }],
    ['bytes=-0', { kind: 'unsatisfiable' }],
    ['bytes=5-4', { kind: 'full' }],
    ['bytes=-', { kind: 'full' }],
    ['bytes=0-1,5-6', { kind: 'full' }],
    ['pages=1-2', { kind: 'full' }],
    // Overflowing numbers: a first byte past any size selects nothing; a last one is clamped.
    ['bytes=99999999999999999999-', { kind: 'unsatisfiable' }],
    ['bytes=99999999999999999999999999999999-1', { kind: 'full' }],
    ['bytes=10-99999999999999999999999999', { kind: 'partial', range: { start: 10, end: 999 } }],
    ['bytes=-99999999999999999999999999', { kind: 'partial', range: { start: 0, end: 999 } }],
    ['bytes=1e3-', { kind: 'full' }],
    ['bytes=0x10-', { kind: 'full' }],
    ['bytes=+1-2', { kind: 'full' }],
    ['bytes=-1-2', { kind: 'full' }],
    ['BYTES=1-2', { kind: 'partial', range: { start: 1, end: 2 } }],
    ['bytes=0-1, 2-3', { kind: 'full' }],
    ['bytes=0-1,', { kind: 'full' }],
    ['bytes=999-999', { kind: 'partial', range: { start: 999, end: 999 } }],
    ['', { kind: 'full' }],
  ])('%j', (header, expected) => {
    expect(resolveRange(header, size)).toEqual(expected);
  });
});
