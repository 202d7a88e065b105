// For tests/storage/outage-error.test.ts: installs the service's process guard, then leaves a
// rejection unhandled: a real refused connection ("outage") or a TypeError ("bug").
import net from 'node:net';
import { installOutageGuard } from '../../src/jobs/outage-guard';
import { createLogger } from '../../src/base/logger';

installOutageGuard(createLogger('silent'));

async function refused(): Promise<void> {
  const port = await new Promise<number>((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(p));
    });
  });
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', resolve);
    socket.on('error', reject);
  });
}

if (process.argv[2] === 'outage') void refused();
else void Promise.resolve().then(() => (undefined as unknown as { id: string }).id);
setTimeout(() => process.stdout.write('still alive\n'), 1000);
