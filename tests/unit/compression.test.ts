import { negotiateEncoding } from '../../src/http/compression';

describe('Accept-Encoding negotiation (RFC 9110 §12.5.3)', () => {
  it.each([
    [undefined, undefined, false], // never asked: never compressed
    ['', undefined, false],
    ['identity', undefined, false],
    ['gzip', 'gzip', false],
    ['x-gzip', 'gzip', false],
    ['GZIP', 'gzip', false],
    ['br', 'br', false],
    ['gzip, deflate, br', 'br', false], // a tie: br, the smaller
    ['gzip, deflate, br, zstd', 'br', false], // Chromium
    ['gzip;q=1.0, br;q=0.5', 'gzip', false],
    ['br;q=0.8, gzip;q=0.2', 'br', false],
    ['gzip;q=0, br;q=0', undefined, false],
    ['deflate', undefined, false],
    ['*', 'br', false],
    ['*;q=0.5, br;q=0', 'gzip', false],
    ['gzip;q=0.5, identity', undefined, false], // identity preferred
    ['gzip;q=0.5, identity;q=0.5', 'gzip', false],
    ['identity;q=0, gzip', 'gzip', true],
    ['*;q=0, gzip', 'gzip', true],
    ['*;q=0, identity, gzip;q=0.1', undefined, false],
    ['*;q=0', undefined, true],
    ['gzip;q=2, br;q=abc', undefined, false], // malformed q-values: those entries are ignored
    ['gzip;q=0.001', 'gzip', false],
    [' gzip ; q=0.7 ,br;q=0.6', 'gzip', false],
  ])('%j → %s (identity refused: %s)', (header, coding, identityRefused) => {
    expect(negotiateEncoding(header)).toEqual({ coding, identityRefused });
  });
});
