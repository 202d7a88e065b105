import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { AppConfig } from '../base/config';
import { problemBody } from '../contract/problems';

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
  const open = new Map<http.ServerResponse, http.IncomingMessage>();
  server.on('request', (req, res) => {
    inFlight++;
    open.set(res, req);
    res.once('close', () => {
      inFlight--;
      open.delete(res);
      if (inFlight === 0) drained?.();
    });
  });
  /**
   * At the end of the grace period, requests still running (an upload whose client is slower than
   * the grace) are told 503 with Retry-After before their connections are cut: a clean refusal the
   * client can retry, not a reset it cannot tell from a crash.
   */
  const refuseRemaining = () => {
    for (const [res, req] of open) {
      if (res.headersSent) continue;
      res.writeHead(503, {
        'Content-Type': 'application/problem+json',
        'Retry-After': '5',
        Connection: 'close',
      });
      res.end(
        JSON.stringify(
          problemBody(
            'not_ready',
            'The service is shutting down and this request did not finish in time; it was not acknowledged. Retry it (a retry of an upload that was archived after all answers with the same item).',
            (req.url ?? '/').split('?')[0]!,
          ),
        ),
      );
      // The body is not read any further: destroying the request (not just its socket, which a
      // finished response no longer links to it) runs the upload's own abort path, which discards
      // its staging. A moment first, so the refusal reaches the client before the socket goes.
      setTimeout(() => req.destroy(), 200).unref();
    }
  };

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
      const timer = setTimeout(() => {
        refuseRemaining();
        // A moment for the refusals to be written before the sockets go.
        setTimeout(() => server.closeAllConnections(), 200).unref();
      }, graceMs);
      await idle;
      clearTimeout(timer);
      server.closeAllConnections();
      await closed;
    },
  };
}
