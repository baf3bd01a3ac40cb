import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 that a test can cut and heal, to put a network partition between a client (the
 * gateway) and a server (the broker) without touching either.
 *
 * - `cut('refuse')`: every connection is reset (RST) at once and new ones are reset as soon as they are
 *   accepted, as when a firewall rejects or a host is down and its peer says so.
 * - `cut('blackhole')`: nothing is said. Bytes in both directions stop being forwarded (they are held, as the
 *   kernels' retransmission queues hold them), closes are not passed on, and new connections are accepted
 *   but get nothing through. Only a timeout on the client (MQTT keepalive, connect timeout) can notice.
 * - `heal()`: new connections go through again. What happens to connections that hung in a blackhole is
 *   `staleAfterHeal`:
 *   - `'resume'` (default): held bytes and closes are delivered late, in order, as TCP retransmission does
 *     after a short outage: a command written into the partition can reach the broker after it.
 *   - `'dead'`: they stay silent forever (a NAT or firewall that lost its state): only the client's keepalive
 *     can get it out of them.
 */
export type CutMode = 'refuse' | 'blackhole';

export interface TcpProxy {
  port: number;
  url(scheme?: string): string;
  cut(mode: CutMode): void;
  heal(): void;
  /** The current state. */
  readonly state: 'open' | CutMode;
  /** Connections accepted so far, and those open now. */
  readonly accepted: number;
  readonly open: number;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  /** Held while blackholed: bytes, then the end of each direction. */
  toUpstream: Buffer[];
  toClient: Buffer[];
  clientEnded: boolean;
  upstreamEnded: boolean;
  /** This pair hung in a blackhole and, with `staleAfterHeal: 'dead'`, never comes back. */
  dead: boolean;
  held: boolean;
}

/** `listenPort`: where the proxy listens (default: a free port); a test can open it late, as a server that comes up. */
export async function startTcpProxy(target: { host?: string; port: number }, options: { staleAfterHeal?: 'resume' | 'dead'; listenPort?: number } = {}): Promise<TcpProxy> {
  const host = target.host ?? '127.0.0.1';
  const stale = options.staleAfterHeal ?? 'resume';
  const pairs = new Set<Pair>();
  let state: 'open' | CutMode = 'open';
  let accepted = 0;

  const drop = (p: Pair) => {
    pairs.delete(p);
    p.client.destroy();
    p.upstream.destroy();
  };

  const reset = (s: Socket) => {
    if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
    else s.destroy();
  };

  /** Deliver what a pair held (healed, 'resume'). */
  const release = (p: Pair) => {
    p.held = false;
    for (const b of p.toUpstream.splice(0)) if (!p.upstream.destroyed) p.upstream.write(b);
    for (const b of p.toClient.splice(0)) if (!p.client.destroyed) p.client.write(b);
    if (p.clientEnded) p.upstream.end();
    if (p.upstreamEnded) p.client.end();
    if (p.clientEnded && p.upstreamEnded) pairs.delete(p);
  };

  const server: Server = createServer({ pauseOnConnect: false }, (client) => {
    accepted++;
    client.setNoDelay(true);
    if (state === 'refuse') {
      client.on('error', () => undefined);
      reset(client);
      return;
    }
    const upstream = createConnection({ host, port: target.port });
    upstream.setNoDelay(true);
    const p: Pair = { client, upstream, toUpstream: [], toClient: [], clientEnded: false, upstreamEnded: false, dead: false, held: state === 'blackhole' };
    pairs.add(p);
    const silent = () => p.held || p.dead;
    client.on('data', (b: Buffer) => {
      if (p.dead) return;
      if (p.held) p.toUpstream.push(b);
      else upstream.write(b);
    });
    upstream.on('data', (b: Buffer) => {
      if (p.dead) return;
      if (p.held) p.toClient.push(b);
      else client.write(b);
    });
    client.on('end', () => {
      p.clientEnded = true;
      if (!silent()) upstream.end();
    });
    upstream.on('end', () => {
      p.upstreamEnded = true;
      if (!silent()) client.end();
    });
    // A reset or error on one side: passed on as a reset unless the partition swallows it.
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
    client.on('close', (hadError) => {
      if (silent()) {
        p.clientEnded = true;
        return;
      }
      if (hadError) reset(upstream);
      else upstream.end();
      if (upstream.destroyed) pairs.delete(p);
    });
    upstream.on('close', (hadError) => {
      if (silent()) {
        p.upstreamEnded = true;
        return;
      }
      if (hadError) reset(client);
      else client.end();
      if (client.destroyed) pairs.delete(p);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listenPort ?? 0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('tcp-proxy: no port');
  const port = addr.port;

  return {
    port,
    url: (scheme = 'mqtt') => `${scheme}://127.0.0.1:${port}`,
    get state() {
      return state;
    },
    get accepted() {
      return accepted;
    },
    get open() {
      return pairs.size;
    },
    cut(mode) {
      state = mode;
      for (const p of [...pairs]) {
        if (mode === 'refuse') {
          pairs.delete(p);
          reset(p.client);
          reset(p.upstream);
        } else {
          p.held = true;
        }
      }
    },
    heal() {
      state = 'open';
      for (const p of [...pairs]) {
        if (!p.held) continue;
        if (stale === 'dead') {
          // The state of these connections is gone: they never carry a byte again. Closing them is left to
          // the ends' own timeouts (the client's keepalive, the broker's 1.5 × keepalive).
          p.dead = true;
          p.held = false;
          p.toUpstream.length = 0;
          p.toClient.length = 0;
        } else {
          release(p);
        }
      }
    },
    async close() {
      for (const p of [...pairs]) drop(p);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
