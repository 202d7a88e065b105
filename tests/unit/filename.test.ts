import {
  assertAcceptableFilename,
  contentDisposition,
  sanitizeFilename,
} from '../../src/evidence/filename';

describe('filenames', () => {
  it.each([
    ['clip.mp4', 'clip.mp4'],
    ['  Übergabe Paket 7.mov ', 'Übergabe Paket 7.mov'],
    ['evil\u202egpj.exe', 'evilgpj.exe'],
    ['..', null],
    ['', null],
    [undefined, null],
  ])('sanitizes %j to %j', (raw, expected) => {
    expect(sanitizeFilename(raw)).toBe(expected);
  });

  it('cuts names over 255 bytes but keeps the extension', () => {
    const name = sanitizeFilename(`${'ä'.repeat(300)}.mp4`)!;
    expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255);
    expect(name.endsWith('.mp4')).toBe(true);
  });

  it.each(['../a.mp4', 'a\\b.mp4', 'a\u0000.mp4', 'a\r\nb.mp4', '..', 'x'.repeat(256)])(
    'refuses %j',
    (raw) => {
      expect(() => assertAcceptableFilename(raw)).toThrow(
        expect.objectContaining({ code: 'invalid_filename' }),
      );
    },
  );

  it.each(['clip.mp4', 'Commande n°42.mov', 'a'.repeat(255), undefined])('accepts %j', (raw) => {
    expect(() => assertAcceptableFilename(raw)).not.toThrow();
  });

  it('builds a Content-Disposition no name can break out of', () => {
    expect(contentDisposition('attachment', 'a"b\\c;d.mp4')).toBe(
      `attachment; filename="a_b_c_d.mp4"; filename*=UTF-8''a%22b%5Cc%3Bd.mp4`,
    );
    expect(contentDisposition('inline', 'Übergabe (1).mp4')).toBe(
      `inline; filename="_bergabe (1).mp4"; filename*=UTF-8''%C3%9Cbergabe%20%281%29.mp4`,
    );
  });
});
