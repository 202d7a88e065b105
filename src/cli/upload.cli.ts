#!/usr/bin/env node
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { UploadRefused, uploadFile, type UploaderOptions } from './station-uploader';
import { WatchFolder } from './watch-folder';

const USAGE = `Usage: npm run upload -- <file|dir>... [options]
       npm run upload -- --watch <dir> [options]

  --url URL            the archive (default: $EVIDENCE_URL or http://127.0.0.1:8080)
  --key-file FILE      a file holding the ingest key (default: $EVIDENCE_KEY)
  --kind KIND          packing_video (default), call_recording or photo
  --order ID           an order the file belongs to (repeat for several)
  --station ID, --operator ID, --tracking NUMBER
  --watch              keep uploading every finished file of <dir>; files go to <dir>/done
                       once the archive's SHA-256 matches, refused ones to <dir>/rejected
  --settle-seconds N   a file unchanged this long is finished (default 5)
  --once               with --watch: one pass, then exit (for cron)
`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      'key-file': { type: 'string' },
      kind: { type: 'string', default: 'packing_video' },
      order: { type: 'string', multiple: true, default: [] },
      station: { type: 'string' },
      operator: { type: 'string' },
      tracking: { type: 'string' },
      watch: { type: 'boolean', default: false },
      once: { type: 'boolean', default: false },
      'settle-seconds': { type: 'string', default: '5' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help || positionals.length === 0) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  const key = values['key-file']
    ? (await fs.readFile(values['key-file'], 'utf8')).trim()
    : process.env.EVIDENCE_KEY;
  if (!key) {
    console.error(
      'No key: set EVIDENCE_KEY or pass --key-file (never the key itself on the command line).',
    );
    return 2;
  }
  if (!['packing_video', 'call_recording', 'photo'].includes(values.kind!)) {
    console.error('--kind must be packing_video, call_recording or photo');
    return 2;
  }
  const tty = process.stderr.isTTY;
  const opts: UploaderOptions = {
    url: values.url ?? process.env.EVIDENCE_URL ?? 'http://127.0.0.1:8080',
    key,
    kind: values.kind as UploaderOptions['kind'],
    orderIds: values.order ?? [],
    stationId: values.station,
    operatorId: values.operator,
    trackingNumber: values.tracking,
    maxAttempts: 8,
    backoffMs: 1000,
    log: (line) => console.error(`${tty ? '\r\x1b[K' : ''}${line}`),
    progress: tty
      ? (file, f) => {
          const width = 30;
          const done = Math.round(f * width);
          process.stderr.write(
            `\r[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${String(Math.round(f * 100)).padStart(3)}% ${path.basename(file)}`,
          );
        }
      : undefined,
  };

  if (values.watch) {
    const dir = path.resolve(positionals[0]!);
    const watcher = new WatchFolder(
      {
        dir,
        doneDir: path.join(dir, 'done'),
        rejectedDir: path.join(dir, 'rejected'),
        queueFile: path.join(dir, '.evidence-queue.json'),
        settleMs: Number(values['settle-seconds']) * 1000,
      },
      opts,
    );
    await watcher.load();
    let stopping = false;
    process.on('SIGINT', () => (stopping = true));
    process.on('SIGTERM', () => (stopping = true));
    for (;;) {
      await watcher.pass();
      if (values.once || stopping) break;
      await new Promise((r) => setTimeout(r, 2000));
    }
    return 0;
  }

  let failed = 0;
  for (const target of positionals) {
    const st = await fs.stat(target);
    const files = st.isDirectory()
      ? (await fs.readdir(target, { withFileTypes: true }))
          .filter((e) => e.isFile() && !e.name.startsWith('.'))
          .map((e) => path.join(target, e.name))
      : [target];
    for (const file of files) {
      try {
        const r = await uploadFile(opts, file);
        opts.log(
          `${path.basename(file)}: ${r.status === 201 ? 'archived' : 'already archived'} as ${r.id} (SHA-256 ${r.sha256} matches)`,
        );
      } catch (err) {
        failed++;
        opts.log(
          `${path.basename(file)}: ${err instanceof UploadRefused ? 'refused' : 'failed'}: ${(err as Error).message}`,
        );
      }
    }
  }
  return failed > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`Error: ${err.message}`);
    process.exit(1);
  },
);
