import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import yauzl from 'yauzl';
import { ZipFile } from 'yazl';

/** Every entry of a ZIP held in memory, in ZIP order (tests only: bundles here are small). */
export async function unzipToMemory(zip: Buffer): Promise<Map<string, Buffer>> {
  const z = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.fromBuffer(zip, { lazyEntries: true, validateEntrySizes: true }, (err, f) =>
      err ? reject(err) : resolve(f),
    ),
  );
  const out = new Map<string, Buffer>();
  await new Promise<void>((resolve, reject) => {
    z.on('error', reject);
    z.on('end', () => resolve());
    z.on('entry', (entry: yauzl.Entry) => {
      z.openReadStream(entry, (err, stream) => {
        if (err) return reject(err);
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('error', reject);
        stream.on('end', () => {
          out.set(entry.fileName, Buffer.concat(chunks));
          z.readEntry();
        });
      });
    });
    z.readEntry();
  });
  return out;
}

/** Writes entries under dir, as `unzip -d dir` would. */
export function extractTo(dir: string, entries: Map<string, Buffer>): void {
  for (const [name, data] of entries) {
    const file = path.join(dir, name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, data);
  }
}

/** A new ZIP of these entries (what someone tampering with a bundle would make). */
export function zipEntries(entries: Map<string, Buffer>): Promise<Buffer> {
  const zip = new ZipFile();
  for (const [name, data] of entries) zip.addBuffer(data, name, { compress: false });
  zip.end();
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    zip.outputStream.on('data', (c: Buffer) => chunks.push(c));
    zip.outputStream.on('error', reject);
    zip.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
  });
}
