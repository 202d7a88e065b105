import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { locateMediaTools } from '../../src/media/media-tools';

describe('media tool launcher', () => {
  it('runs ffmpeg with an address-space ceiling, no core dumps and a lower priority than the API', async () => {
    const tools = await locateMediaTools({ memoryLimitMb: 512, probeTimeoutSeconds: 5 });
    if (!tools.available) throw new Error(tools.reason);
    try {
      expect(tools.tools.sandboxed).toBe(true);
      expect(tools.tools.version).toMatch(/^ffmpeg version/);
      // An ffmpeg waiting on its stdin: its limits are readable while it runs.
      const child = spawn(tools.tools.ffmpeg, ['-f', 's16le', '-i', 'pipe:0', '-f', 'null', '-'], {
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      await new Promise((r) => setTimeout(r, 500));
      const limits = readFileSync(`/proc/${child.pid}/limits`, 'utf8');
      const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8');
      child.kill('SIGKILL');
      expect(cmdline).toContain('ffmpeg');
      expect(limits).toMatch(new RegExp(`Max address space\\s+${512 * 1024 * 1024}\\s`));
      expect(limits).toMatch(/Max core file size\s+0\s/);
      expect(Number(stat[16])).toBe(10); // nice
    } finally {
      await tools.dispose();
    }
  });

  it('says why nothing can be derived when ffmpeg is not there', async () => {
    const tools = await locateMediaTools({
      ffmpegPath: '/nonexistent/ffmpeg',
      memoryLimitMb: 512,
      probeTimeoutSeconds: 5,
    });
    expect(tools.available).toBe(false);
    expect(!tools.available && tools.reason).toMatch(/FFMPEG_PATH/);
  });
});
