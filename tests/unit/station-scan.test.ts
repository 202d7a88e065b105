import {
  classify,
  clipFilename,
  DEFAULT_SCAN_SETTINGS as S,
  elapsed,
  next,
  MAX_CODE_LENGTH,
  ScanBuffer,
  tick,
  uploadFields,
  type StationState,
} from '../../web/src/station/scan';

/** The packing station's scan handling (web/src/station/scan.ts): pure, so tested here in Node. */
describe('station scans', () => {
  it('sorts codes: stop, operator, tracking number, order, and what is none of them', () => {
    expect(classify('STOP', S)).toEqual({ type: 'stop' });
    expect(classify(' stop ', S)).toEqual({ type: 'stop' });
    expect(classify('OP:op-7', S)).toEqual({ type: 'operator', operatorId: 'op-7' });
    expect(classify('op:Ana', S)).toEqual({ type: 'operator', operatorId: 'Ana' });
    expect(classify('OP:', S).type).toBe('unknown');
    expect(classify('1Z999AA10123456784', S)).toEqual({
      type: 'tracking',
      trackingNumber: '1Z999AA10123456784',
    });
    expect(classify('RR123456785GB', S).type).toBe('tracking');
    expect(classify('ORD-1001', S)).toEqual({ type: 'order', orderId: 'ORD-1001' });
    expect(classify('#1001', S).type).toBe('unknown'); // must start with a letter or digit
    expect(classify('ORD 1001', S).type).toBe('unknown');
    expect(classify('', S).type).toBe('unknown');
  });

  it('takes the patterns from the settings, and a broken pattern matches nothing', () => {
    const custom = {
      ...S,
      trackingPattern: 'TRK[0-9]+',
      stopCode: 'END',
      orderPattern: 'SO-[0-9]+',
    };
    expect(classify('TRK42', custom).type).toBe('tracking');
    expect(classify('1Z999AA10123456784', custom).type).toBe('unknown');
    expect(classify('END', custom).type).toBe('stop');
    expect(classify('STOP', custom).type).toBe('unknown');
    expect(classify('SO-7', custom).type).toBe('order');
    expect(classify('SO-7', { ...custom, orderPattern: '(' }).type).toBe('unknown');
  });

  it('reads a burst then Enter as a scan anywhere, and slow typing outside a field too', () => {
    const b = new ScanBuffer();
    const type = (s: string, t0: number, gap: number, inField = false) => {
      let t = t0;
      for (const ch of s) expect(b.key(ch, (t += gap), inField)).toBeNull();
      return b.key('Enter', t + gap, inField);
    };
    expect(type('ORD-1001', 0, 5)).toEqual({ code: 'ORD-1001', burst: true, fromField: 0 });
    // A person typing (300 ms a key) outside a field: still a code.
    expect(type('ORD-1002', 10_000, 300)).toEqual({ code: 'ORD-1002', burst: false, fromField: 0 });
    // In a text field only a burst counts, and the field gives its characters back.
    expect(type('ORD-1003', 20_000, 5, true)).toEqual({
      code: 'ORD-1003',
      burst: true,
      fromField: 8,
    });
    expect(type('PK-03', 30_000, 200, true)).toBeNull();
    // Shift and other named keys are no part of a code; Enter alone is nothing.
    expect(b.key('Shift', 40_000, false)).toBeNull();
    expect(b.key('Enter', 40_001, false)).toBeNull();
  });

  it('forgets half-typed characters after a long pause', () => {
    const b = new ScanBuffer(50, 10_000);
    b.key('X', 0, false);
    b.key('Y', 100, false);
    for (const [i, ch] of [...'ORD-9'].entries()) b.key(ch, 20_000 + i * 5, false);
    expect(b.key('Enter', 20_030, false)?.code).toBe('ORD-9');
  });

  it('opens a clip on an order, closes it and opens the next on the next order, stops on stop', () => {
    let s: StationState = { mode: 'idle' };
    let step = next(s, { type: 'order', orderId: 'A' }, 1000);
    expect(step.effects).toEqual([{ do: 'start', orderId: 'A' }]);
    s = step.state;
    expect(s).toMatchObject({ mode: 'recording', clip: { orderId: 'A', startedAt: 1000 } });
    // The same order scanned twice is one clip.
    expect(next(s, { type: 'order', orderId: 'A' }, 1500).effects).toEqual([]);
    step = next(s, { type: 'tracking', trackingNumber: 'T1' }, 3500);
    expect(step.effects).toEqual([{ do: 'tracking', trackingNumber: 'T1' }]);
    s = step.state;
    expect(s).toMatchObject({ clip: { trackingNumbers: ['T1'], trackingAt: [2.5] } });
    step = next(s, { type: 'order', orderId: 'B' }, 5000);
    expect(step.effects).toEqual([
      { do: 'stop', reason: 'next-order' },
      { do: 'start', orderId: 'B' },
    ]);
    s = step.state;
    expect(s).toMatchObject({ clip: { orderId: 'B', trackingNumbers: [] } });
    step = next(s, { type: 'stop' }, 6000);
    expect(step).toEqual({ state: { mode: 'idle' }, effects: [{ do: 'stop', reason: 'stop' }] });
    expect(next(step.state, { type: 'stop' }, 7000).effects).toEqual([]);
  });

  it('refuses a tracking number with no clip, and an operator change during one', () => {
    const idle: StationState = { mode: 'idle' };
    expect(next(idle, { type: 'tracking', trackingNumber: 'T' }, 0).effects[0]!.do).toBe('refuse');
    expect(next(idle, { type: 'operator', operatorId: 'x' }, 0).effects).toEqual([
      { do: 'operator', operatorId: 'x' },
    ]);
    const rec = next(idle, { type: 'order', orderId: 'A' }, 0).state;
    expect(next(rec, { type: 'operator', operatorId: 'x' }, 0).effects[0]!.do).toBe('refuse');
    expect(next(rec, { type: 'unknown', code: '??', reason: '' }, 0)).toMatchObject({
      state: rec,
      effects: [{ do: 'refuse' }],
    });
  });

  it('ends a clip at its longest length, not a moment before', () => {
    const rec = next({ mode: 'idle' }, { type: 'order', orderId: 'A' }, 10_000).state;
    expect(tick(rec, 10_000 + 599_999, 600).effects).toEqual([]);
    expect(tick(rec, 10_000 + 600_000, 600)).toEqual({
      state: { mode: 'idle' },
      effects: [{ do: 'stop', reason: 'max-length' }],
    });
    expect(tick({ mode: 'idle' }, 1e12, 600).effects).toEqual([]);
  });

  it('names the upload fields as the archive takes them', () => {
    const base = {
      orderId: 'ORD-1',
      trackingNumbers: [] as string[],
      trackingAt: [] as number[],
      durationSec: 12,
      stationId: 'PK-03',
      operatorId: null,
      capturedAt: '2026-12-04T10:00:00.000Z',
      sha256: 'a'.repeat(64),
      filename: 'x.webm',
    };
    expect(uploadFields(base)).toEqual({
      kind: 'packing_video',
      orderId: 'ORD-1',
      stationId: 'PK-03',
      capturedAt: '2026-12-04T10:00:00.000Z',
      sha256: 'a'.repeat(64),
      filename: 'x.webm',
    });
    const one = uploadFields({
      ...base,
      operatorId: 'op',
      trackingNumbers: ['T1'],
      trackingAt: [3],
    });
    expect(one).toMatchObject({ operatorId: 'op', trackingNumber: 'T1' });
    expect(one.segments).toBeUndefined();
    const two = uploadFields({ ...base, trackingNumbers: ['T1', 'T2'], trackingAt: [3, 8] });
    expect(two.trackingNumber).toBe('T1');
    expect(JSON.parse(two.segments!)).toEqual([
      { orderId: 'ORD-1', trackingNumber: 'T1', startSec: 3, endSec: 12 },
      { orderId: 'ORD-1', trackingNumber: 'T2', startSec: 8, endSec: 12 },
    ]);
  });

  it('names the file by order, station and start, and marks a recovered clip', () => {
    const c = {
      orderId: 'ORD/1 2',
      stationId: 'PK-03',
      capturedAt: '2026-12-04T10:00:01.234Z',
      recovered: false,
      mimeType: 'video/webm;codecs=vp8,opus',
    };
    expect(clipFilename(c)).toBe('ORD_1_2_PK-03_20261204T100001Z.webm');
    expect(clipFilename({ ...c, recovered: true, mimeType: 'video/mp4' })).toBe(
      'ORD_1_2_PK-03_20261204T100001Z.recovered.mp4',
    );
    expect(elapsed(65)).toBe('1:05');
    expect(elapsed(3725)).toBe('1:02:05');
  });
});

describe('hostile and unusual keystrokes', () => {
  it('keeps a character outside the basic plane, and refuses an overlong code before any pattern runs', () => {
    const b = new ScanBuffer();
    let t = 0;
    for (const k of ['O', 'R', 'D', '-', '𝟙', '2']) b.key(k, (t += 5), false);
    expect(b.key('Enter', (t += 5), false)?.code).toBe('ORD-𝟙2');
    const long = 'A'.repeat(MAX_CODE_LENGTH + 1);
    expect(classify(long, S)).toMatchObject({ type: 'unknown', reason: 'too long' });
  });
});
