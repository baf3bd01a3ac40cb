import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';

/**
 * Issue 14, item 2: `GET /v1/events` clients that stop reading. Before the fix such a client was never dropped and
 * what the gateway wrote for it piled up (25 of them took the gateway from 324 MB to 1.2 GB over 2 × 10,000 orders,
 * and kept it). Now the gateway writes to a client only while its socket takes more, keeps at most the latest view
 * of each order for it meanwhile, and resets the connection of one whose socket took nothing for
 * `api.liveEvents.stallMs`, counting the drop in `meterline_sse_clients_dropped_total`. A client that reads is
 * never dropped and sees every order's final state.
 *
 * The stalled clients are raw sockets that send the request and never read a byte of the answer.
 */
const CLOSES = 'acme-em340-fw2.4';
const METERS = 300;
/**
 * 3,000 orders carrying a 500-character note: about 7 MB of events per client, well past the few MB a socket's
 * kernel buffers take from a client that does not read (so the gateway itself has to hold or drop the rest).
 */
const WAVES = 10;
const NOTE = 'n'.repeat(500);
const STALLED = 20;
const meters: TestMeter[] = Array.from({ length: METERS }, (_, i) => ({ meterId: `SSE-${String(i).padStart(4, '0')}`, profileId: CLOSES, initialRelay: 'disconnected' as const }));

let f: GatewayFixture;
beforeAll(async () => {
  const base = loadConfig({});
  // A short stall limit so the test need not wait 30 s; the rule is the same.
  f = await startGatewayFixture(meters, { api: { ...base.api, host: '127.0.0.1', port: 0, liveEvents: { stallMs: 1_500, maxPendingOrders: 20_000 } } });
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

/** A client that asks for the stream and never reads: paused before it connects, so not one byte is taken off the socket. */
function stalledClient(): { socket: Socket; connected: Promise<void> } {
  const url = new URL(f.gateway.apiUrl);
  const socket = connect(Number(url.port), url.hostname);
  socket.pause();
  const connected = new Promise<void>((resolve) =>
    socket.once('connect', () => {
      socket.write(`GET /v1/events HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${f.operatorKey}\r\naccept: text/event-stream\r\n\r\n`);
      resolve();
    }),
  );
  return { socket, connected };
}

/** A client that reads everything, as the console does: the latest state of every order it was told about. */
function readingClient(): { latest: Map<string, string>; opened: Promise<void>; stop: () => void; ended: () => boolean; bytes: () => number } {
  const latest = new Map<string, string>();
  let bytes = 0;
  const abort = new AbortController();
  let ended = false;
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  void (async () => {
    try {
      const res = await fetch(`${f.gateway.apiUrl}/v1/events`, { headers: { authorization: `Bearer ${f.operatorKey}` }, signal: abort.signal });
      let buffer = '';
      const decoder = new TextDecoder();
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        bytes += chunk.length;
        buffer += decoder.decode(chunk, { stream: true });
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (\w+)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event === 'stats') open();
          if (event === 'orders' && data) for (const o of JSON.parse(data) as { id: string; state: string }[]) latest.set(o.id, o.state);
        }
      }
    } catch {
      /* aborted at the end of the test, or dropped: `ended` tells */
    }
    ended = true;
  })();
  return { latest, opened, stop: () => abort.abort(), ended: () => ended, bytes: () => bytes };
}

const dropped = async (): Promise<number> => {
  const text = (await f.http('GET', '/metrics')).body as string;
  return text
    .split('\n')
    .filter((l) => l.startsWith('meterline_sse_clients_dropped_total{'))
    .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
};

describe('live-event clients that stop reading', () => {
  it('the stream is authenticated before it opens: by the header, or by ?key= for EventSource', async () => {
    const abort = new AbortController();
    const byQuery = await fetch(`${f.gateway.apiUrl}/v1/events?key=${encodeURIComponent(f.operatorKey)}`, { signal: abort.signal });
    expect(byQuery.status).toBe(200);
    expect(byQuery.headers.get('content-type')).toContain('text/event-stream');
    abort.abort();
    const unknown = await f.http('GET', '/v1/events?key=op_not-a-key', { key: null });
    expect(unknown.status).toBe(401);
    expect(unknown.body.code).toBe('E_UNAUTHORIZED');
  });

  it('are cut off (reset, counted) once they fall behind, while a client that reads sees every order to its end', async () => {
    const reader = readingClient();
    await reader.opened;
    const stalled = Array.from({ length: STALLED }, stalledClient);
    await Promise.all(stalled.map((s) => s.connected));

    const created: string[] = [];
    for (let wave = 0; wave < WAVES; wave++) {
      const bulk = await f.http('POST', '/v1/orders/bulk', { headers: { 'idempotency-key': `sse-${wave}` }, body: { orders: meters.map((m) => ({ meterId: m.meterId, action: 'reconnect', reason: 'payment', note: NOTE })) } });
      expect(bulk.status).toBe(202);
      created.push(...bulk.body.results.map((r: any) => r.order.id));
      await expect
        .poll(async () => {
          const byState = (await f.http('GET', '/v1/queue')).body.byState as Record<string, number>;
          return (byState.accepted ?? 0) + (byState.queued ?? 0) + (byState.in_flight ?? 0);
        }, { timeout: 60_000, interval: 250 })
        .toBe(0);
    }

    // Every stalled client fell behind and was cut off; the reader was not.
    await expect.poll(dropped, { timeout: 20_000, interval: 250 }).toBe(STALLED);
    expect((await f.http('GET', '/metrics')).body).toContain(`meterline_sse_clients_dropped_total{reason="stalled"} ${STALLED}`);

    // The reader saw every order's final state, and is still connected: the next order reaches it.
    await expect.poll(() => created.filter((id) => reader.latest.get(id) !== 'done').length, { timeout: 10_000, interval: 100 }).toBe(0);
    const one = await f.http('POST', '/v1/meters/SSE-0000/reconnect', { headers: { 'idempotency-key': 'sse-after' }, body: { reason: 'payment' } });
    await expect.poll(() => reader.latest.get(one.body.id), { timeout: 10_000, interval: 100 }).toBe('done');
    expect(reader.ended()).toBe(false);
    expect(await dropped()).toBe(STALLED);

    // Their connections were reset, not ended: what the gateway had queued for them is gone. Reading now, each gets
    // only what its own receive buffer took before it stopped (about 128 KB), not the megabytes `end()` would still
    // have had to deliver (the reader got all of them), and then the connection is closed.
    const outcomes = await Promise.all(
      stalled.map(
        ({ socket }) =>
          new Promise<number>((resolve) => {
            let bytes = 0;
            socket.on('data', (b: Buffer) => (bytes += b.length));
            socket.on('error', () => {});
            socket.on('close', () => resolve(bytes));
            socket.resume();
          }),
      ),
    );
    // The reader's volume depends on timing (an order's changes within 250 ms go as one view), so its floor is what
    // it must have had: each order's final view, note included (3,000 × 500 B of note alone, about 1.5 MB).
    expect(reader.bytes()).toBeGreaterThan(created.length * NOTE.length);
    for (const bytes of outcomes) expect(bytes).toBeLessThan(Math.min(1024 * 1024, reader.bytes() / 2));
    reader.stop();
  }, 240_000);
});
