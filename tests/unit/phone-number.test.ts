import { toE164 } from '../../src/evidence/phone-number';

describe('toE164', () => {
  it.each([
    ['+44 20 7946 0958', undefined, '+442079460958'],
    ['+1 (415) 555-2671', undefined, '+14155552671'],
    ['030 901820', 'DE', '+4930901820'],
    ['(415) 555-2671', 'US', '+14155552671'],
    ['(415) 555-2671', undefined, undefined],
    ['anonymous', undefined, undefined],
    ['201', 'US', undefined],
  ])('%j with region %j', (raw, region, expected) => {
    expect(toE164(raw, region)).toBe(expected);
  });
});
