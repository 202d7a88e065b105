import { canonicalJson } from '../../src/base/audit-chain';

/** The implementation every event in existing trails was hashed with: the bytes must not change. */
function reference(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new Error('non-finite number');
    return JSON.stringify(value ?? null);
  }
  if (Array.isArray(value)) return `[${value.map(reference).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${reference(v)}`).join(',')}}`;
}

describe('canonicalJson', () => {
  const values: unknown[] = [
    null,
    undefined,
    0,
    -1.5e-7,
    'a "quoted" \\ line\n\u2028',
    true,
    [],
    {},
    [undefined, null, 1, [2, [3]], { b: 1, a: 2 }],
    // eslint-disable-next-line no-sparse-arrays
    [1, , 3],
    { z: 1, a: undefined, é: 2, É: 3, '😀': 4, '\uffff': 5, B: 6, b: 7, '': 8, '10': 9, '9': 10 },
    {
      seq: 42,
      occurredAt: '2026-12-04T22:15:48.123Z',
      action: 'evidence.view',
      outcome: 'success',
      actor: { keyId: 'k_1', role: 'support', name: 'Ann' },
      itemIds: ['00000000-0000-4000-8000-000000012345'],
      complaintId: null,
      requestId: 'r1',
      clientIp: '10.0.0.1',
      details: { nested: { y: [1, { x: 'x', w: null }], a: 'a' }, size: 1000 },
    },
  ];

  it.each(values.map((v) => [JSON.stringify(v) ?? 'undefined', v]))(
    'gives the same bytes as before for %s',
    (_label, value) => {
      expect(canonicalJson(value)).toBe(reference(value));
    },
  );

  it('refuses non-finite numbers as before', () => {
    expect(() => canonicalJson({ a: [Infinity] })).toThrow('non-finite number');
  });
});
