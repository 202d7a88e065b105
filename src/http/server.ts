import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { AppConfig } from '../config';

export interface RunningServer {
  server: http.Server;
  url: string;
  /** Stops accepting, lets in-flight requests finish within graceMs, then cuts the rest. */
  close(graceMs: number): Promise<void>;
}

/**
 * The HTTP server with timeouts for evidence uploads: no total request deadline (a 2 GB clip at
 * 5 Mbit/s takes almost an hour, and Node's default requestTimeout of 300 s would cut it), but
 * headers must arrive within headersTimeoutMs and a connection idle for socketIdleTimeoutMs is
 * closed, so slow-header and stalled clients cannot hold sockets.
 */
export async function startServer(
  app: Express,
  cfg: Pick<AppConfig, 'host' | 'port' | 'http'>,
): Promise<RunningServer> {
  const server = http.createServer(
    {
      requestTimeout: cfg.http.requestTimeoutMs,
      headersTimeout: cfg.http.headersTimeoutMs,
      keepAliveTimeout: cfg.http.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(30_000, Math.ceil(cfg.http.headersTimeoutMs / 4)),
    },
    app,
  );
  server.setTimeout(cfg.http.socketIdleTimeoutMs);

  let inFlight = 0;
  let drained: (() => void) | undefined;
  server.on('request', (_req, res) => {
    inFlight++;
    res.once('close', () => {
      inFlight--;
      if (inFlight === 0) drained?.();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;

  return {
    server,
    url: `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}`,
    async close(graceMs: number) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const idle = new Promise<void>((resolve) => {
        drained = resolve;
        if (inFlight === 0) resolve();
      });
      const timer = setTimeout(() => server.closeAllConnections(), graceMs);
      await idle;
      clearTimeout(timer);
      server.closeAllConnections();
      await closed;
    },
  };
}
