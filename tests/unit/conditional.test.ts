import {
  evaluatePreconditions,
  ifMatch,
  ifNoneMatchMatches,
  parseHttpDate,
  type Validators,
} from '../../src/http/conditional';

const etag = '"abc"';

describe('If-Match: strong comparison (RFC 9110 §13.1.1)', () => {
  it.each([
    ['"abc"', true],
    ['*', true],
    [' * ', true],
    ['"x", "abc"', true],
    ['"x","abc" , "y"', true],
    [', "abc",', true],
    ['W/"abc"', false], // weak tags never match for If-Match
    ['W/"x", W/"abc"', false],
    ['"abcd"', false],
    ['abc', false], // unquoted: not an entity tag
    ['"abc', false],
    ['"abc" garbage', false],
    ['*, "abc"', false],
    ['', false],
    ['"a,b", "abc"', true], // a comma inside a tag does not split it
  ])('%j → %s', (header, expected) => {
    expect(ifMatch(header, etag)).toBe(expected);
  });
});

describe('If-None-Match: weak comparison (RFC 9110 §13.1.2)', () => {
  it.each([
    ['"abc"', true],
    ['W/"abc"', true],
    ['"x", W/"abc"', true],
    ['W/"x",W/"y", "abc"', true],
    ['*', true],
    ['"abcd"', false],
    ['W/"abcd", "x"', false],
    ['w/"abc"', false], // the W/ prefix is case-sensitive
    ['abc', false],
    ['"a,b"', false],
  ])('%j → %s', (header, expected) => {
    expect(ifNoneMatchMatches(header, etag)).toBe(expected);
  });
});

describe('parseHttpDate', () => {
  const t = Date.UTC(1994, 10, 6, 8, 49, 37);
  it.each([
    ['Sun, 06 Nov 1994 08:49:37 GMT', t],
    ['Sunday, 06-Nov-94 08:49:37 GMT', t],
    ['Sun Nov  6 08:49:37 1994', t],
    ['2026-12-03T10:00:00Z', undefined],
    ['Sun, 06 Nov 1994 08:49:37 UTC', undefined],
    ['Sun, 31 Feb 1994 08:49:37 GMT', undefined],
    ['Sun, 06 Nov 1994 25:49:37 GMT', undefined],
    ['yesterday', undefined],
    ['', undefined],
  ])('%j', (value, expected) => {
    expect(parseHttpDate(value)?.getTime()).toBe(expected);
  });
});

describe('evaluatePreconditions: the order of RFC 9110 §13.2.2', () => {
  const lastModified = new Date('2026-12-01T10:00:00.400Z');
  const now = new Date('2026-12-03T10:00:00Z');
  const lm = 'Tue, 01 Dec 2026 10:00:00 GMT';
  const before = 'Mon, 30 Nov 2026 10:00:00 GMT';
  const v = { etag, lastModified };
  const run = (headers: Record<string, string>, validators: Validators = v) =>
    evaluatePreconditions((n) => headers[n], validators, now);

  it.each<[Record<string, string>, unknown]>([
    [{}, { kind: 'proceed', honourRange: false }],
    [{ 'if-match': '"other"' }, { kind: 'failed', header: 'If-Match' }],
    [{ 'if-match': 'W/"abc"' }, { kind: 'failed', header: 'If-Match' }],
    [{ 'if-match': '"abc"' }, { kind: 'proceed', honourRange: false }],
    // If-Match present: If-Unmodified-Since is not looked at.
    [
      { 'if-match': '"abc"', 'if-unmodified-since': before },
      { kind: 'proceed', honourRange: false },
    ],
    [{ 'if-unmodified-since': before }, { kind: 'failed', header: 'If-Unmodified-Since' }],
    [{ 'if-unmodified-since': lm }, { kind: 'proceed', honourRange: false }],
    [{ 'if-unmodified-since': 'garbage' }, { kind: 'proceed', honourRange: false }],
    // If-Match fails before If-None-Match is considered.
    [
      { 'if-match': '"x"', 'if-none-match': '"abc"' },
      { kind: 'failed', header: 'If-Match' },
    ],
    [{ 'if-none-match': '"abc"' }, { kind: 'not_modified' }],
    [{ 'if-none-match': 'W/"abc"' }, { kind: 'not_modified' }],
    [
      { 'if-none-match': '"x"', range: 'bytes=0-1' },
      { kind: 'proceed', honourRange: true },
    ],
    // If-None-Match present: If-Modified-Since is not looked at.
    [
      { 'if-none-match': '"x"', 'if-modified-since': lm },
      { kind: 'proceed', honourRange: false },
    ],
    [{ 'if-modified-since': lm }, { kind: 'not_modified' }],
    [{ 'if-modified-since': before }, { kind: 'proceed', honourRange: false }],
    [
      { 'if-modified-since': 'Sun, 01 Jan 2040 00:00:00 GMT' },
      { kind: 'proceed', honourRange: false },
    ],
    [{ range: 'bytes=0-1' }, { kind: 'proceed', honourRange: true }],
    [
      { range: 'bytes=0-1', 'if-range': etag },
      { kind: 'proceed', honourRange: true },
    ],
    [
      { range: 'bytes=0-1', 'if-range': ` ${etag} ` },
      { kind: 'proceed', honourRange: true },
    ],
    [
      { range: 'bytes=0-1', 'if-range': 'W/"abc"' },
      { kind: 'proceed', honourRange: false },
    ],
    [
      { range: 'bytes=0-1', 'if-range': '"other"' },
      { kind: 'proceed', honourRange: false },
    ],
    [
      { range: 'bytes=0-1', 'if-range': lm },
      { kind: 'proceed', honourRange: true },
    ],
    [
      { range: 'bytes=0-1', 'if-range': before },
      { kind: 'proceed', honourRange: false },
    ],
    [
      { range: 'bytes=0-1', 'if-range': 'garbage' },
      { kind: 'proceed', honourRange: false },
    ],
    [
      { range: 'bytes=0-1', 'if-range': '' },
      { kind: 'proceed', honourRange: false },
    ],
    [
      { range: 'bytes=0-1', 'if-range': '"abc", "x"' },
      { kind: 'proceed', honourRange: false },
    ],
  ])('%j', (headers, expected) => {
    expect(run(headers)).toEqual(expected);
  });

  it('ignores the date preconditions of a representation without a date', () => {
    const noDate = { etag };
    expect(run({ 'if-unmodified-since': before }, noDate)).toEqual({
      kind: 'proceed',
      honourRange: false,
    });
    expect(run({ 'if-modified-since': lm }, noDate)).toEqual({
      kind: 'proceed',
      honourRange: false,
    });
    expect(run({ range: 'bytes=0-1', 'if-range': lm }, noDate)).toEqual({
      kind: 'proceed',
      honourRange: false,
    });
  });

  it('does not take a Last-Modified of this very second as a strong If-Range validator', () => {
    const fresh = { etag, lastModified: new Date(now.getTime() - 300) };
    expect(run({ range: 'bytes=0-1', 'if-range': now.toUTCString() }, fresh)).toEqual({
      kind: 'proceed',
      honourRange: false,
    });
  });
});
