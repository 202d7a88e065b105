import { etagMatches, resolveRange } from '../../src/http/http-range';

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
    ['bytes=99999999999999999999-', { kind: 'full' }],
  ])('%j', (header, expected) => {
    expect(resolveRange(header, size)).toEqual(expected);
  });
});

describe('etagMatches', () => {
  const etag = '"abc"';
  it.each([
    ['"abc"', true],
    ['W/"abc"', true],
    ['"x", "abc"', true],
    ['*', true],
    ['"abcd"', false],
    [undefined, false],
  ])('%j', (header, expected) => {
    expect(etagMatches(header, etag)).toBe(expected);
  });
});
