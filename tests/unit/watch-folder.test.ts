import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WatchFolder } from '../../src/cli/watch-folder';
import type { UploaderOptions } from '../../src/cli/station-uploader';

describe('the watch folder’s queue file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'watch-queue-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('survives saves that overlap (an upload URL saved while a pass saves)', async () => {
    const queueFile = path.join(dir, '.evidence-queue.json');
    const folder = new WatchFolder(
      { dir, doneDir: dir, rejectedDir: dir, queueFile, settleMs: 0 },
      {} as UploaderOptions,
    );
    await folder.load();
    // The queue's writer is private; overlapping calls are what uploads and passes produce.
    const save = (folder as unknown as { save(): Promise<void> }).save.bind(folder);
    await expect(Promise.all(Array.from({ length: 25 }, () => save()))).resolves.toHaveLength(25);
    expect(JSON.parse(readFileSync(queueFile, 'utf8'))).toEqual({});
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
