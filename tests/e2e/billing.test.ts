import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../harness/fake-clock.js';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';

/**
 * The billing system's side end to end: payments and top-ups, idempotent retries, pending disconnects cancelled,
 * callbacks signed and delivered in order per meter — including after the endpoint was down for 10 minutes of
 * a fake clock — and the change feed by cursor.
 */
const MIN = 60_000;
const SECRET = 'billing-callback-secret-1';
const CLOSES = 'acme-em340-fw2.4';
const meters: TestMeter[] = [
  { meterId: 'PP-1', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'PP-2', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'PP-3', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'ACC-A1', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'ACC-A2', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'PP-4', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'PP-5', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'PP-6', profileId: CLOSES, initialRelay: 'connected' },
];

interface Delivered {
  seq: number;
  kind: string;
  meterId: string;
  orderId: string;
  valid: boolean;
}
const received: Delivered[] = [];
let endpointDown = false;
const endpoint = createServer((req, res) => {
  let raw = '';
  req.on('data', (c: Buffer) => (raw += c.toString()));
  req.on('end', () => {
    if (endpointDown) return void res.writeHead(503).end();
    const body = JSON.parse(raw) as Delivered;
    const valid = req.headers['x-meterline-signature'] === `sha256=${createHmac('sha256', SECRET).update(raw).digest('hex')}`;
    received.push({ seq: body.seq, kind: body.kind, meterId: body.meterId, orderId: body.orderId, valid });
    res.writeHead(204).end();
  });
});

const clock = new FakeClock(Date.parse('2026-11-24T10:00:00Z'));
let f: GatewayFixture;
let n = 0;
const k = () => ({ 'idempotency-key': `bill-${++n}` });
const until = async (what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000) => {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};
/**
 * A credit cut-off the only way there is one: the meter goes into prepayment mode with no credit on its ledger, a
 * reading reaches credit control, and credit control orders the cut-off (DOMAIN.md rule 8).
 */
const cutOff = async (meterId: string) => {
  const cutOffs = async () => ((await f.http('GET', `/v1/orders?meterId=${meterId}&limit=1000`)).body.items as any[]).filter((o) => o.action === 'disconnect' && o.reason === 'credit_exhausted').map((o) => o.id as string);
  const before = new Set(await cutOffs());
  await f.http('PUT', `/v1/meters/${meterId}/flags`, { key: f.billingKey, headers: k(), body: { prepaymentMode: true, prepaymentAgreementRef: `PPA-${meterId}` } });
  expect((await f.gateway.controller.readNow(meterId)).ok).toBe(true);
  let id: string | undefined;
  await until(`credit control's cut-off of ${meterId}`, async () => {
    id = (await cutOffs()).find((o) => !before.has(o));
    return id !== undefined;
  });
  return id!;
};

beforeAll(async () => {
  await new Promise<void>((r) => endpoint.listen(0, '127.0.0.1', r));
  f = await startGatewayFixture(meters, { callbacks: { pollMs: 100, concurrency: 8, timeoutMs: 2000, maxRetryDelayMs: 5 * MIN } }, { clock });
  const url = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/meterline`;
  expect((await f.http('PUT', '/v1/callbacks', { key: f.billingKey, headers: k(), body: { url, secret: SECRET } })).status).toBe(200);
  for (const m of ['ACC-A1', 'ACC-A2']) await f.http('PUT', `/v1/meters/${m}`, { body: { profileId: CLOSES, link: 'dc-1', region: 'north', accountId: 'ACC-A' } });
}, 60_000);
afterAll(async () => {
  await f?.stop();
  endpoint.closeAllConnections();
  await new Promise<void>((r) => endpoint.close(() => r()));
});

describe('payments and top-ups', () => {
  it('a top-up reconnects a meter cut off for credit, within 24 h of the payment; a retried request changes nothing', async () => {
    const d = await f.waitForOrder(await cutOff('PP-1'));
    expect(d.state).toBe('done');
    expect(f.fleet.meter('PP-1').relay).toBe('disconnected');
    const body = { meterId: 'PP-1', amount: 20, receivedAt: new Date(clock.now()).toISOString(), kind: 'top_up', reference: 'TOPUP-881' };
    const key = k();
    const p = await f.http('POST', '/v1/payments', { key: f.billingKey, headers: key, body });
    expect(p.status).toBe(201);
    const reconnectId = p.body.effects[0].reconnectOrderId as string;
    expect(reconnectId).toBeTruthy();
    const again = await f.http('POST', '/v1/payments', { key: f.billingKey, headers: key, body });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(p.body.id);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    const conflict = await f.http('POST', '/v1/payments', { key: f.billingKey, headers: key, body: { ...body, amount: 25 } });
    expect(conflict.body.code).toBe('E_IDEMPOTENCY_CONFLICT');
    const r = await f.waitForOrder(reconnectId);
    expect(r).toMatchObject({ state: 'done', reason: 'top_up', deadline: new Date(clock.now() + 24 * 60 * MIN).toISOString() });
    expect(f.fleet.meter('PP-1').received.filter((c) => c.op === 'reconnect')).toHaveLength(1);
    expect((await f.http('GET', '/v1/payments', { key: f.billingKey })).body.items.filter((x: any) => x.reference === 'TOPUP-881')).toHaveLength(1);
  });

  it('a payment cancels a disconnect for non-payment before it is sent; the simulator never receives it', async () => {
    const start = clock.now();
    // 17:00, inside friendly-credit hours: credit control's cut-off waits for 10:00 tomorrow.
    clock.set(Date.parse('2026-11-24T17:00:00Z'));
    const id = await cutOff('PP-2');
    expect(['queued', 'held']).toContain((await f.http('GET', `/v1/orders/${id}`)).body.state);
    const p = await f.http('POST', '/v1/payments', { key: f.billingKey, headers: k(), body: { meterId: 'PP-2', amount: 5, receivedAt: new Date(clock.now()).toISOString(), kind: 'top_up' } });
    expect(p.body.effects[0]).toMatchObject({ cancelledOrders: [id], reconnectOrderId: null });
    const cancelled = await f.waitForOrder(id);
    expect(cancelled.state).toBe('cancelled');
    expect(cancelled.stateReason).toContain('E_PAID');
    clock.set(Date.parse('2026-11-25T10:05:00Z'));
    await new Promise((r) => setTimeout(r, 300));
    expect(f.fleet.meter('PP-2').received.filter((c) => c.op === 'disconnect')).toEqual([]);
    clock.set(start);
  });

  it('a payment by account reaches every meter of the account; a bulk file with an unknown meter records nothing', async () => {
    const ids = [await cutOff('ACC-A1'), await cutOff('ACC-A2')];
    for (const id of ids) expect((await f.waitForOrder(id)).state).toBe('done');
    const bad = await f.http('POST', '/v1/payments/bulk', {
      key: f.billingKey,
      headers: k(),
      body: { payments: [{ accountId: 'ACC-A', amount: 50, receivedAt: new Date(clock.now()).toISOString() }, { meterId: 'NO-SUCH', amount: 1, receivedAt: new Date(clock.now()).toISOString() }] },
    });
    expect(bad.status).toBe(404);
    expect(bad.body.details.missing).toEqual([{ index: 1, meterId: 'NO-SUCH', accountId: null }]);
    const ok = await f.http('POST', '/v1/payments/bulk', { key: f.billingKey, headers: k(), body: { payments: [{ accountId: 'ACC-A', amount: 50, receivedAt: new Date(clock.now()).toISOString(), posted: false }] } });
    expect(ok.body).toMatchObject({ created: 1, reconnects: 2 });
    for (const e of ok.body.results[0].effects) expect((await f.waitForOrder(e.reconnectOrderId)).state).toBe('done');
  });
});

describe('callbacks', () => {
  it('an endpoint down for 10 minutes receives every event afterwards, signed, in order per meter; the change feed has them all', async () => {
    endpointDown = true;
    const before = received.length;
    await f.waitForOrder(await cutOff('PP-3')); // the operator's order: the billing client does not hear of it
    const p = await f.http('POST', '/v1/payments', { key: f.billingKey, headers: k(), body: { meterId: 'PP-3', amount: 10, receivedAt: new Date(clock.now()).toISOString(), kind: 'top_up' } });
    const first = p.body.effects[0].reconnectOrderId as string;
    await f.waitForOrder(first);
    const second = await f.http('POST', '/v1/meters/PP-3/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'customer_request' } });
    await f.waitForOrder(second.body.id);
    for (let i = 0; i < 10; i++) {
      clock.advance(MIN);
      await new Promise((r) => setTimeout(r, 150));
    }
    expect(received.length).toBe(before);
    const log = (await f.http('GET', '/v1/callbacks/deliveries', { key: f.billingKey })).body.items.filter((e: any) => e.meterId === 'PP-3');
    expect(log.map((e: any) => e.delivery.deliveredAt)).toEqual([null, null]);
    expect(log[0].delivery).toMatchObject({ lastError: 'HTTP 503' });
    expect(log[0].delivery.attempts).toBeGreaterThanOrEqual(5);
    expect(log[1].delivery.attempts).toBe(0); // waits behind the first: order per meter

    endpointDown = false;
    clock.advance(6 * MIN); // past the longest backoff
    await until('callbacks after the outage', () => received.filter((r) => r.meterId === 'PP-3').length === 2);
    const pp3 = received.filter((r) => r.meterId === 'PP-3');
    expect(pp3.map((r) => [r.kind, r.orderId])).toEqual([
      ['order.done', first],
      ['order.done', second.body.id],
    ]);
    expect(pp3.every((r) => r.valid)).toBe(true);
    // Every change, exactly once, over the whole test.
    const seqs = received.map((r) => r.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    const feed = (await f.http('GET', '/v1/changes?after=0&limit=1000', { key: f.billingKey })).body;
    await until('all delivered', async () => (await f.http('GET', '/v1/callbacks/deliveries?limit=1000', { key: f.billingKey })).body.items.every((e: any) => e.delivery.deliveredAt !== null));
    expect(received.length).toBe(feed.items.length);
  });
});

describe('change feed numbering', () => {
  it('two billing clients with events interleaved each get seq 1, 2, 3, … with no gap, in their change feed and in the callbacks they received', async () => {
    // A second billing system, with its own key and its own receiver.
    const created = await f.http('POST', '/v1/keys', { key: f.adminKey, headers: k(), body: { name: 'second-billing', role: 'billing' } });
    expect(created.status).toBe(201);
    const key2 = created.body.key as string;
    const secret2 = 'second-billing-callback-secret';
    const received2: Delivered[] = [];
    const endpoint2 = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString()));
      req.on('end', () => {
        const body = JSON.parse(raw) as Delivered;
        const valid = req.headers['x-meterline-signature'] === `sha256=${createHmac('sha256', secret2).update(raw).digest('hex')}` && req.headers['x-meterline-event-seq'] === String(body.seq);
        received2.push({ seq: body.seq, kind: body.kind, meterId: body.meterId, orderId: body.orderId, valid });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => endpoint2.listen(0, '127.0.0.1', r));
    try {
      const url2 = `http://127.0.0.1:${(endpoint2.address() as AddressInfo).port}/second`;
      expect((await f.http('PUT', '/v1/callbacks', { key: key2, headers: k(), body: { url: url2, secret: secret2 } })).status).toBe(200);

      // Rounds of: the first client's reconnect, an operator's order (an event in the operator's own feed), and the
      // second client's reconnect after a payment it took.
      for (let round = 0; round < 3; round++) {
        const first = await f.http('POST', '/v1/meters/PP-4/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'customer_request' } });
        const byOperator = await f.http('POST', '/v1/meters/PP-6/reconnect', { headers: k(), body: { reason: 'operator' } });
        const second = await f.http('POST', '/v1/meters/PP-5/reconnect', { key: key2, headers: k(), body: { reason: 'payment', paymentReceivedAt: new Date(clock.now()).toISOString() } });
        expect(second.status).toBe(202);
        for (const id of [first.body.id, byOperator.body.id, second.body.id]) expect((await f.waitForOrder(id)).state).toBe('done');
      }

      const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
      for (const [key, got] of [
        [f.billingKey, received],
        [key2, received2],
      ] as const) {
        await until('all delivered', async () => (await f.http('GET', '/v1/callbacks/deliveries?limit=1000', { key })).body.items.every((e: any) => e.delivery.deliveredAt !== null));
        const feed = (await f.http('GET', '/v1/changes?after=0&limit=1000', { key })).body.items as { seq: number }[];
        expect(feed.map((e) => e.seq)).toEqual(oneTo(feed.length));
        // What the receiver holds once it drops a seq it already has (delivery is at least once): 1..N, nothing missing.
        expect([...new Set(got.map((r) => r.seq))].sort((a, b) => a - b)).toEqual(oneTo(feed.length));
        expect(got.every((r) => r.valid)).toBe(true);
      }
      const feed2 = (await f.http('GET', '/v1/changes?after=0&limit=1000', { key: key2 })).body;
      expect(feed2.items.map((e: any) => [e.seq, e.kind, e.meterId])).toEqual([
        [1, 'order.done', 'PP-5'],
        [2, 'order.done', 'PP-5'],
        [3, 'order.done', 'PP-5'],
      ]);
      expect(feed2.next).toBe(3);
      // Paging by cursor, and the operator's own feed, numbered the same way.
      expect((await f.http('GET', '/v1/changes?after=1&limit=1', { key: key2 })).body).toMatchObject({ items: [{ seq: 2 }], next: 2 });
      const ops = (await f.http('GET', '/v1/changes?after=0&limit=1000', { key: f.operatorKey })).body.items as { seq: number }[];
      expect(ops.length).toBeGreaterThanOrEqual(3);
      expect(ops.map((e) => e.seq)).toEqual(oneTo(ops.length));
    } finally {
      endpoint2.closeAllConnections();
      await new Promise<void>((r) => endpoint2.close(() => r()));
    }
  });
});

describe('reconciliation', () => {
  it('the day’s report for the billing client counts payments and reconnects, as JSON and CSV', async () => {
    const day = new Date(Date.parse('2026-11-24T10:00:00Z')).toISOString().slice(0, 10);
    const report = (await f.http('GET', `/v1/reconciliation?day=${day}`, { key: f.billingKey })).body;
    const payments = (await f.http('GET', '/v1/payments', { key: f.billingKey })).body.items.filter((p: any) => p.receivedAt.startsWith(day));
    expect(report).toMatchObject({ day, client: 'demo-billing', payments: payments.length });
    expect(report.reconnectsDone).toBeGreaterThanOrEqual(3);
    expect(report.late).toEqual([]);
    const csv = await fetch(`${f.gateway.apiUrl}/v1/reconciliation?day=${day}&format=csv`, { headers: { authorization: `Bearer ${f.billingKey}` } });
    expect(csv.headers.get('content-type')).toContain('text/csv');
    expect((await csv.text()).split('\r\n')[0]).toMatch(/^[a-z_,]+$/);
    expect((await f.http('GET', `/v1/reconciliation?day=${day}`, { key: null })).status).toBe(401);
  });
});
