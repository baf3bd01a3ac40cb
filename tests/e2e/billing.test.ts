import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import Database from 'better-sqlite3';
import { connectAsync } from 'mqtt';
import pg from 'pg';
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
    const p = await f.http('POST', '/v1/payments', { key: f.billingKey, headers: k(), body: { meterId: 'PP-2', amountMinor: 500, receivedAt: new Date(clock.now()).toISOString(), kind: 'top_up' } });
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
    const p = await f.http('POST', '/v1/payments', { key: f.billingKey, headers: k(), body: { meterId: 'PP-3', amountMinor: 1000, receivedAt: new Date(clock.now()).toISOString(), kind: 'top_up' } });
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

describe('money: exact whole minor units, bounded (issue 14)', () => {
  const pay = (body: Record<string, unknown>) => f.http('POST', '/v1/payments', { key: f.billingKey, headers: k(), body: { receivedAt: new Date(clock.now()).toISOString(), ...body } });
  const bulk = (payments: Record<string, unknown>[]) =>
    f.http('POST', '/v1/payments/bulk', { key: f.billingKey, headers: k(), body: { payments: payments.map((p) => ({ receivedAt: new Date(clock.now()).toISOString(), ...p })) } });
  const credit = async (meterId: string) => f.http('GET', `/v1/meters/${meterId}/credit`);
  const paymentsOf = async (meterId: string) => ((await f.http('GET', '/v1/payments?limit=10000', { key: f.billingKey })).body.items as any[]).filter((p) => p.meterId === meterId);
  const prepayment = async (meterId: string) => {
    await f.registerMeters([{ meterId, profileId: CLOSES, initialRelay: 'connected' }]); // no simulator: nothing reads it but the test
    expect((await f.http('PUT', `/v1/meters/${meterId}/flags`, { key: f.billingKey, headers: k(), body: { prepaymentMode: true, prepaymentAgreementRef: `PPA-${meterId}` } })).status).toBe(200);
  };
  /** A row of the ledger as a release before this one could write it, straight into the store. */
  const legacyCreditEvent = async (meterId: string, event: object) => {
    const store = f.gateway.config.store;
    if (store.kind === 'sqlite') {
      const db = new Database(store.sqlite.path);
      db.pragma('busy_timeout = 5000');
      db.prepare('INSERT INTO credit_events (meter_id, event, at) VALUES (?, ?, ?)').run(meterId, JSON.stringify(event), clock.now());
      db.close();
    } else {
      const client = new pg.Client({ connectionString: store.postgres!.url });
      await client.connect();
      await client.query(`INSERT INTO ${store.postgres!.schema}.credit_events (meter_id, event, at) VALUES ($1, $2, $3)`, [meterId, JSON.stringify(event), clock.now()]);
      await client.end();
    }
  };

  it('two top-ups of 1e300 are refused with 400 E_AMOUNT_OVER_LIMIT and record nothing; the credit view still answers 200', async () => {
    await prepayment('MO-HUGE');
    for (let i = 0; i < 2; i++) {
      const r = await pay({ meterId: 'MO-HUGE', amount: 1e300, kind: 'top_up', reference: `HUGE-${i}` });
      expect(r.status).toBe(400);
      expect(r.body.code).toBe('E_AMOUNT_OVER_LIMIT');
      expect(r.body.message).toMatch(/maximum of 10000000 minor units \(100,000\.00\)/);
    }
    expect((await pay({ meterId: 'MO-HUGE', amountMinor: 1e300, kind: 'top_up' })).body.code).toBe('E_AMOUNT_OVER_LIMIT');
    // In a file: the whole file is refused, naming the row.
    const file = await bulk([{ meterId: 'MO-HUGE', amountMinor: 500, kind: 'top_up' }, { meterId: 'MO-HUGE', amount: 1e300, kind: 'top_up' }]);
    expect(file.status).toBe(400);
    expect(file.body).toMatchObject({ code: 'E_AMOUNT_OVER_LIMIT', details: { invalid: [{ index: 1, code: 'E_AMOUNT_OVER_LIMIT' }] } });
    const c = await credit('MO-HUGE');
    expect(c.status).toBe(200);
    expect(c.body).toMatchObject({ balance: 0, emergencyDebt: 0, lastTopUp: null });
    expect(await paymentsOf('MO-HUGE')).toEqual([]);
  });

  it('ledger rows written before amounts were bounded (two 1e300 top-ups) are ignored: the credit view answers 200 with the real balance', async () => {
    await prepayment('MO-LEGACY');
    await legacyCreditEvent('MO-LEGACY', { type: 'top_up', amount: 1e302, at: clock.now(), ref: 'legacy-1' });
    await legacyCreditEvent('MO-LEGACY', { type: 'top_up', amount: 1e302, at: clock.now(), ref: 'legacy-2' });
    expect((await pay({ meterId: 'MO-LEGACY', amount: 12.34, kind: 'top_up' })).status).toBe(201);
    const c = await credit('MO-LEGACY');
    expect(c.status).toBe(200);
    expect(c.body).toMatchObject({ balance: 1234, status: 'in_credit', lastTopUp: { amount: 1234 } });
  });

  it('amounts with more decimals than the minor unit allows are refused with 400 E_AMOUNT_INVALID; a decimal that converts exactly is taken', async () => {
    for (const amount of [12.345, '12.345', 0.001, '0.001', -5, 0, '1e3', '12,50']) {
      const r = await pay({ meterId: 'PP-6', amount });
      expect([amount, r.status, r.body.code]).toEqual([amount, 400, 'E_AMOUNT_INVALID']);
    }
    for (const body of [{ amountMinor: 12.5 }, { amountMinor: 0 }, { amountMinor: -100 }, { amount: 12.5, amountMinor: 1250 }, {}]) {
      const r = await pay({ meterId: 'PP-6', ...body });
      expect([body, r.status, r.body.code]).toEqual([body, 400, 'E_AMOUNT_INVALID']);
    }
    const exact = await pay({ meterId: 'PP-6', amount: '12.50', reference: 'DECIMAL-STRING' });
    expect(exact.status).toBe(201);
    expect(exact.body).toMatchObject({ amountMinor: 1250, amount: 12.5 });
    const tenth = await pay({ meterId: 'PP-6', amount: 0.1, reference: 'A-TENTH' });
    expect(tenth.body).toMatchObject({ amountMinor: 10, amount: 0.1 });
  });

  it('the same payment in either form is the same payment: a retry with amountMinor replays one sent with amount', async () => {
    const headers = k();
    const body = { meterId: 'PP-6', receivedAt: new Date(clock.now()).toISOString(), reference: 'EITHER-FORM' };
    const first = await f.http('POST', '/v1/payments', { key: f.billingKey, headers, body: { ...body, amount: 20.5 } });
    expect(first.status).toBe(201);
    for (const again of [{ amountMinor: 2050 }, { amount: '20.50' }]) {
      const r = await f.http('POST', '/v1/payments', { key: f.billingKey, headers, body: { ...body, ...again } });
      expect([r.status, r.body.id]).toEqual([200, first.body.id]);
    }
    expect((await f.http('POST', '/v1/payments', { key: f.billingKey, headers, body: { ...body, amountMinor: 2051 } })).body.code).toBe('E_IDEMPOTENCY_CONFLICT');
  });

  it('the maximum per payment (10,000,000 minor units) is accepted and one over refused; a top-up may not take a balance over 100,000,000', async () => {
    expect((await pay({ meterId: 'PP-6', amountMinor: 10_000_000, reference: 'MAX' })).status).toBe(201);
    expect((await pay({ meterId: 'PP-6', amount: '100000.00', reference: 'MAX-MAJOR' })).body).toMatchObject({ amountMinor: 10_000_000 });
    const over = await pay({ meterId: 'PP-6', amountMinor: 10_000_001 });
    expect(over).toMatchObject({ status: 400, body: { code: 'E_AMOUNT_OVER_LIMIT', details: { maxAmountMinor: 10_000_000 } } });
    expect((await pay({ meterId: 'PP-6', amount: 100_000.01 })).body.code).toBe('E_AMOUNT_OVER_LIMIT');

    await prepayment('MO-MAX');
    const ten = Array.from({ length: 10 }, (_, i) => ({ meterId: 'MO-MAX', amountMinor: 10_000_000, kind: 'top_up', reference: `MAX-${i}` }));
    // One minor unit over the balance limit in a file: nothing recorded.
    const tooMuch = await bulk([...ten, { meterId: 'MO-MAX', amountMinor: 1, kind: 'top_up' }]);
    expect(tooMuch).toMatchObject({ status: 400, body: { code: 'E_CREDIT_BALANCE_LIMIT', details: { maxCreditBalanceMinor: 100_000_000, overLimit: [{ index: 10, meterId: 'MO-MAX', balanceAfterMinor: 100_000_001 }] } } });
    expect((await credit('MO-MAX')).body.balance).toBe(0);
    expect((await bulk(ten)).status).toBe(202);
    expect((await credit('MO-MAX')).body.balance).toBe(100_000_000);
    expect((await pay({ meterId: 'MO-MAX', amountMinor: 1, kind: 'top_up' })).body.code).toBe('E_CREDIT_BALANCE_LIMIT');
    expect((await credit('MO-MAX')).body.balance).toBe(100_000_000);
  });

  it('10,000 top-ups of 0.10 make exactly 1,000.00, and consumption at a fractional cost is charged in whole pence with the rest carried: credit view, payments list and reconciliation (JSON and CSV) exact', async () => {
    await prepayment('MO-EXACT');
    const day = '2026-11-21'; // a day of its own, so its reconciliation holds exactly these payments
    const receivedAt = `${day}T12:00:00Z`;
    const file = await bulk(Array.from({ length: 10_000 }, (_, i) => ({ meterId: 'MO-EXACT', amount: 0.1, kind: 'top_up', receivedAt, reference: `DIME-${i}` })));
    expect(file.body).toMatchObject({ created: 10_000, replayed: 0 });
    expect((await credit('MO-EXACT')).body).toMatchObject({ balance: 100_000, unchargedMicro: 0, lastTopUp: { amount: 10 } });

    const listed = await paymentsOf('MO-EXACT');
    expect(listed).toHaveLength(10_000);
    expect(listed.every((p) => p.amountMinor === 10 && p.amount === 0.1)).toBe(true);
    expect(listed.reduce((s, p) => s + p.amountMinor, 0)).toBe(100_000);

    const report = (await f.http('GET', `/v1/reconciliation?day=${day}`, { key: f.billingKey })).body;
    expect(report).toMatchObject({ payments: 10_000, amountMinor: 100_000, amount: 1000, paymentsWithoutAmount: 0 });
    const csv = await (await fetch(`${f.gateway.apiUrl}/v1/reconciliation?day=${day}&format=csv`, { headers: { authorization: `Bearer ${f.billingKey}` } })).text();
    const [header, summary] = csv.split('\r\n').map((l) => l.split(','));
    const row = Object.fromEntries(header!.map((h, i) => [h, summary![i]]));
    expect(row).toMatchObject({ payments: '10000', amount: '1000.00', amount_minor: '100000' });

    // The meter pushes its register; each 7 Wh at the shipped 25 per kWh costs 0.175 minor units (175,000 millionths).
    const meterSide = await connectAsync(f.broker.url, { protocolVersion: 5, clientId: `money-meter-${process.pid}` });
    try {
      const t0 = clock.now() - 30 * MIN;
      for (let i = 0; i <= 20; i++) {
        await meterSide.publishAsync('meters/MO-EXACT/status', JSON.stringify({ relay: 'connected', voltageV: 231, energyWh: 50_000 + 7 * i, ts: t0 + i * MIN }), { qos: 1 });
        const totalMicro = 175_000 * i; // the first reading is the baseline
        await expect
          .poll(async () => {
            const c = (await credit('MO-EXACT')).body;
            return [c.balance, c.unchargedMicro];
          }, { timeout: 5000 })
          .toEqual([100_000 - Math.floor(totalMicro / 1_000_000), totalMicro % 1_000_000]);
      }
    } finally {
      await meterSide.endAsync();
    }
    // 20 × 0.175 = 3.5: 3 charged, half a penny carried; every figure a safe integer.
    const c = (await credit('MO-EXACT')).body;
    expect(c).toMatchObject({ balance: 99_997, unchargedMicro: 500_000, emergencyDebt: 0, emergencyCreditRemaining: 0 });
    expect([c.balance, c.unchargedMicro, c.emergencyDebt, c.emergencyCreditRemaining, c.lastTopUp.amount].every(Number.isSafeInteger)).toBe(true);
  }, 180_000);
});
