import { execFile } from 'node:child_process';
import { constants as fsConstants, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ToolPaths {
  ffmpeg: string;
  ffprobe: string;
  /** `ffmpeg -version`'s first line, recorded with every derivative made. */
  version: string;
  /** True when both run under an address-space ceiling (prlimit). */
  sandboxed: boolean;
  /** True when the launcher kills a stuck ffprobe (coreutils' timeout); else the repository does. */
  probeTimeoutEnforced: boolean;
}

export type ToolsStatus =
  { available: true; tools: ToolPaths } | { available: false; reason: string };

export interface ToolsOptions {
  ffmpegPath?: string;
  ffprobePath?: string;
  /** Address-space ceiling for each ffmpeg/ffprobe process. */
  memoryLimitMb: number;
  /** ffprobe reads headers only: anything longer than this is a hostile file. */
  probeTimeoutSeconds: number;
  /** Where the launcher scripts are written (a private `tools-<pid>-*` directory inside). */
  tmpDir?: string;
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile()) return false;
    await fs.access(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first executable named `name` on PATH, like `command -v`. */
export async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Finds ffmpeg and ffprobe (FFMPEG_PATH/FFPROBE_PATH, else the system's on PATH) and checks they
 * run. Each tool is started through a small launcher script in a private directory that caps its
 * address space (util-linux's prlimit), drops its priority below the API's (nice) and, for ffprobe,
 * kills it after a timeout (coreutils' timeout), with whichever of those exist: fluent-ffmpeg
 * spawns a path, so the limits live in that path.
 */
export async function locateMediaTools(
  opts: ToolsOptions,
): Promise<ToolsStatus & { dispose(): Promise<void> }> {
  const noop = async () => undefined;
  const found: Record<'ffmpeg' | 'ffprobe', string | undefined> = {
    ffmpeg: opts.ffmpegPath ?? (await findOnPath('ffmpeg')),
    ffprobe: opts.ffprobePath ?? (await findOnPath('ffprobe')),
  };
  for (const [name, file] of Object.entries(found)) {
    const variable = name === 'ffmpeg' ? 'FFMPEG_PATH' : 'FFPROBE_PATH';
    if (!file) {
      return {
        available: false,
        reason: `${name} was not found on PATH; install ffmpeg (Debian: apt-get install ffmpeg) or set ${variable}. Evidence is archived, but no previews, thumbnails or waveforms are made.`,
        dispose: noop,
      };
    }
    if (!(await isExecutable(file))) {
      return {
        available: false,
        reason: `${variable} (${file}) is not an executable file; nothing can be derived until it is.`,
        dispose: noop,
      };
    }
  }
  const ffmpeg = found.ffmpeg!;
  const ffprobe = found.ffprobe!;
  let version: string;
  try {
    const [a, b] = await Promise.all([
      run(ffmpeg, ['-hide_banner', '-version'], { timeout: 10_000 }),
      run(ffprobe, ['-hide_banner', '-version'], { timeout: 10_000 }),
    ]);
    version = a.stdout.split('\n')[0]!.trim();
    if (!/^ffprobe version/.test(b.stdout)) throw new Error(`${ffprobe} is not ffprobe`);
  } catch (err) {
    return {
      available: false,
      reason: `ffmpeg/ffprobe did not run (${(err as Error).message.split('\n')[0]}); nothing can be derived until they do.`,
      dispose: noop,
    };
  }

  const [prlimit, nice, timeout] = await Promise.all([
    findOnPath('prlimit'),
    findOnPath('nice'),
    findOnPath('timeout'),
  ]);
  if (!prlimit && !nice && !timeout) {
    return {
      available: true,
      tools: { ffmpeg, ffprobe, version, sandboxed: false, probeTimeoutEnforced: false },
      dispose: noop,
    };
  }
  // Under the scratch root, not /tmp: tmp cleaners delete what a long-running service still uses.
  const root = opts.tmpDir ?? os.tmpdir();
  await fs.mkdir(root, { recursive: true, mode: 0o700 });
  const dir = await fs.mkdtemp(path.join(root, `tools-${process.pid}-`));
  const limits = prlimit
    ? `${shellQuote(prlimit)} --as=${opts.memoryLimitMb * 1024 * 1024} --core=0 -- `
    : '';
  const lowPriority = nice ? `${shellQuote(nice)} -n 10 ` : '';
  // glibc reserves 64 MiB of address space per malloc arena and thread: two arenas keep the
  // ceiling about memory actually used.
  const launcher = (tool: string, deadline: string) =>
    [
      '#!/bin/sh',
      '# Written by the evidence archive at start: runs one media tool inside its limits.',
      'export MALLOC_ARENA_MAX=2',
      `exec ${deadline}${lowPriority}${limits}${shellQuote(tool)} "$@"`,
      '',
    ].join('\n');
  const wrappedFfmpeg = path.join(dir, 'ffmpeg');
  const wrappedFfprobe = path.join(dir, 'ffprobe');
  // ffmpeg's own deadline is set per run by the repository (it depends on the clip's length).
  await fs.writeFile(wrappedFfmpeg, launcher(ffmpeg, ''), { mode: 0o700 });
  await fs.writeFile(
    wrappedFfprobe,
    launcher(ffprobe, timeout ? `${shellQuote(timeout)} -s KILL ${opts.probeTimeoutSeconds} ` : ''),
    { mode: 0o700 },
  );
  return {
    available: true,
    tools: {
      ffmpeg: wrappedFfmpeg,
      ffprobe: wrappedFfprobe,
      version,
      sandboxed: prlimit !== undefined,
      probeTimeoutEnforced: timeout !== undefined,
    },
    dispose: () => fs.rm(dir, { recursive: true, force: true }),
  };
}
