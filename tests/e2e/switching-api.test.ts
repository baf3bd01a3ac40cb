import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';

/**
 * The acceptance scenarios of the switching core, through the HTTP API, the control loop, a real mosquitto
 * broker and simulated meters (faults are simulator modes, not mocks).
 */
const CLOSES = 'acme-em340-fw2.4'; // remote reconnect closes the relay; 5 attempts
const ARMS = 'volta-pp20-fw1.7'; // remote reconnect only arms; 3 attempts

const meters: TestMeter[] = [
  { meterId: 'HEALTHY-1', profileId: CLOSES, initialRelay: 'disconnected' },
  { meterId: 'DROPS-2', profileId: CLOSES, initialRelay: 'disconnected' },
  { meterId: 'STUCK-0', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'STUCK-1', profileId: CLOSES, initialRelay: 'disconnected' },
  { meterId: 'LIAR-1', profileId: ARMS, initialRelay: 'disconnected' },
  { meterId: 'SUPERSEDE-1', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'IDEM-1', profileId: CLOSES, initialRelay: 'disconnected' },
  { meterId: 'ARMS-1', profileId: ARMS, initialRelay: 'disconnected' },
  { meterId: 'BUSY-1', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'AUTH-1', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'OUTAGE-1', profileId: CLOSES, initialRelay: 'disconnected' },
  { meterId: 'CANCEL-1', profileId: CLOSES, initialRelay: 'connected' },
  ...Array.from({ length: 300 }, (_, i) => ({ meterId: `BULK-${String(i).padStart(4, '0')}`, profileId: i % 2 ? ARMS : CLOSES, initialRelay: 'disconnected' as const })),
];

let f: GatewayFixture;
let keyN = 0;
const key = () => `test-key-${++keyN}`;
const commandsTo = (meterId: string, op?: string) => f.fleet.meter(meterId).received.filter((c) => (op ? c.op === op : c.op !== 'read'));

beforeAll(async () => {
  f = await startGatewayFixture(meters);
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('switching through the API, verified by read-back', () => {
  it('a healthy reconnect ends done, with the read-back as evidence, and the meter shows connected', async () => {
    const res = await f.http('POST', '/v1/meters/HEALTHY-1/reconnect', {
      key: f.billingKey,
      headers: { 'idempotency-key': key() },
      body: { reason: 'payment', paymentReceivedAt: new Date().toISOString() },
    });
    expect(res.status).toBe(202);
    expect(res.body.state).toBe('queued');
    expect(res.body.requestedBy).toBe('demo-billing');
    const order = await f.waitForOrder(res.body.id);
    expect(order.state).toBe('done');
    expect(order.result).toEqual({ relay: 'connected', verified: true });
    expect(order.attempts).toHaveLength(1);
    expect(order.attempts[0].outcome).toBe('ok');
    expect(order.attempts[0].latencyMs).toBeGreaterThanOrEqual(0);
    expect(JSON.parse(order.attempts[0].evidence.readBack)).toMatchObject({ relay: 'connected' });
    expect(order.events.map((e: any) => e.to)).toEqual(['accepted', 'queued', 'in_flight', 'done']);
    expect(f.fleet.meter('HEALTHY-1').relay).toBe('connected');
    const meter = await f.http('GET', '/v1/meters/HEALTHY-1');
    expect(meter.body.observed).toMatchObject({ relay: 'connected', source: 'read' });
    expect(meter.body.desiredRelay).toBe('connected');
    expect(meter.body.openOrders).toEqual([]);
    expect(meter.body.profile.remoteReconnect).toBe('closes');
  });

  it('a meter that drops its first two commands is reconnected on the third attempt', async () => {
    f.fleet.meter('DROPS-2').dropCommands(2);
    const res = await f.http('POST', '/v1/meters/DROPS-2/reconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'payment' } });
    const order = await f.waitForOrder(res.body.id);
    expect(order.state).toBe('done');
    expect(order.attempts.map((a: any) => a.outcome)).toEqual(['timeout', 'timeout', 'ok']);
    expect(commandsTo('DROPS-2', 'reconnect')).toHaveLength(3);
    expect(f.fleet.meter('DROPS-2').relay).toBe('connected');
  });

  it('a stuck relay: a disconnect ends failed with every attempt recorded; a reconnect goes to the field after its last remote attempt', async () => {
    f.fleet.meter('STUCK-0').setFaults({ stuckRelay: true });
    f.fleet.meter('STUCK-1').setFaults({ stuckRelay: true });
    const d = await f.http('POST', '/v1/meters/STUCK-0/disconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'customer_request', reference: 'REQ-1' } });
    const res = await f.http('POST', '/v1/meters/STUCK-1/reconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'payment' } });
    const disconnect = await f.waitForOrder(d.body.id);
    expect(disconnect.state).toBe('failed');
    expect(disconnect.result.verified).toBe(false);
    expect(disconnect.attempts).toHaveLength(5);
    expect(disconnect.attempts.every((a: any) => a.outcome === 'verify_mismatch' && a.observedRelay === 'connected' && a.endedAt)).toBe(true);
    expect(disconnect.stateReason).toContain('5 of 5');
    const order = await f.waitForOrder(res.body.id, ['escalated']);
    expect(order.result.verified).toBe(false);
    expect(order.attempts).toHaveLength(5);
    expect(order.attempts.every((a: any) => a.outcome === 'verify_mismatch' && a.observedRelay === 'disconnected' && a.endedAt)).toBe(true);
    expect(order.stateReason).toContain('escalated to the field: remote attempts exhausted: 5 of 5');
    expect(commandsTo('STUCK-1', 'reconnect')).toHaveLength(5);
    const wo = (await f.http('GET', '/v1/work-orders?status=open')).body.items.find((w: any) => w.orderId === res.body.id);
    expect(wo).toMatchObject({ meterId: 'STUCK-1', action: 'reconnect', status: 'open' });
  });

  it('a meter that claims success while its relay did not move is never marked done', async () => {
    f.fleet.meter('LIAR-1').setFaults({ lieAboutSuccess: true });
    const res = await f.http('POST', '/v1/meters/LIAR-1/reconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'payment' } });
    const order = await f.waitForOrder(res.body.id, ['escalated', 'done', 'armed', 'failed']);
    expect(order.state).toBe('escalated');
    expect(order.attempts).toHaveLength(3);
    for (const a of order.attempts) {
      expect(a.outcome).toBe('verify_mismatch');
      expect(JSON.parse(a.evidence.command)).toMatchObject({ result: 'ok', relay: 'READY' }); // the claim
      expect(JSON.parse(a.evidence.readBack)).toMatchObject({ relay: 'OFF' }); // the truth
    }
    expect(f.fleet.meter('LIAR-1').relay).toBe('disconnected');
  });

  it('an arms-only meter ends armed; the customer’s button press then shows connected', async () => {
    const res = await f.http('POST', '/v1/meters/ARMS-1/reconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'top_up' } });
    const order = await f.waitForOrder(res.body.id);
    expect(order.state).toBe('armed');
    expect(order.result).toEqual({ relay: 'armed', verified: true });
    f.fleet.meter('ARMS-1').pressButton();
    await expect.poll(async () => (await f.http('GET', '/v1/meters/ARMS-1')).body.observed, { timeout: 5000 }).toMatchObject({ relay: 'connected', source: 'status' });
  });
});

describe('latest intent wins, one command per meter', () => {
  it('a queued disconnect superseded by a later reconnect is never sent', async () => {
    const later = new Date(Date.now() + 3_600_000).toISOString();
    const d = await f.http('POST', '/v1/meters/SUPERSEDE-1/disconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'customer_request', reference: 'REQ-1', notBefore: later } });
    expect(d.status).toBe(202);
    expect(d.body.state).toBe('queued');
    const r = await f.http('POST', '/v1/meters/SUPERSEDE-1/reconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'payment' } });
    const reconnect = await f.waitForOrder(r.body.id);
    expect(reconnect.state).toBe('done');
    const disconnect = await f.waitForOrder(d.body.id);
    expect(disconnect.state).toBe('superseded');
    expect(disconnect.supersededBy).toBe(r.body.id);
    expect(disconnect.attempts).toEqual([]);
    expect(commandsTo('SUPERSEDE-1', 'disconnect')).toEqual([]);
    expect(f.fleet.meter('SUPERSEDE-1').relay).toBe('connected');
  });

  it('an order arriving while another is on the wire waits for it, then runs; never two commands at once', async () => {
    const m = f.fleet.meter('BUSY-1');
    m.setFaults({ lateReplyMs: 300 });
    const d = await f.http('POST', '/v1/meters/BUSY-1/disconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'customer_request', reference: 'REQ-1' } });
    await f.waitForOrder(d.body.id, ['in_flight']);
    const r = await f.http('POST', '/v1/meters/BUSY-1/reconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'customer_request' } });
    const disconnect = await f.waitForOrder(d.body.id);
    const reconnect = await f.waitForOrder(r.body.id);
    expect(disconnect.state).toBe('done'); // it was on the wire and did happen
    expect(reconnect.state).toBe('done');
    expect(Date.parse(reconnect.attempts[0].startedAt)).toBeGreaterThanOrEqual(Date.parse(disconnect.completedAt));
    expect(commandsTo('BUSY-1').map((c) => c.op)).toEqual(['disconnect', 'reconnect']);
    expect(m.relay).toBe('connected');
    m.clearFaults();
  });

  it('a disconnect is refused while a reconnect is open, naming the rule', async () => {
    f.fleet.meter('AUTH-1').setFaults({ lateReplyMs: 400 });
    const r = await f.http('POST', '/v1/meters/AUTH-1/reconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'payment' } });
    const d = await f.http('POST', '/v1/meters/AUTH-1/disconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'customer_request', reference: 'REQ-1' } });
    expect(d.status).toBe(409);
    expect(d.body.code).toBe('E_RECONNECT_PENDING');
    expect(d.body.message).toContain(r.body.id);
    expect(d.body.details.order.state).toBe('refused');
    await f.waitForOrder(r.body.id);
    expect(commandsTo('AUTH-1', 'disconnect')).toEqual([]);
    f.fleet.meter('AUTH-1').clearFaults();
  });
});

describe('broker outage', () => {
  it('orders wait while the broker is down, spend no attempts, and finish when it is back', async () => {
    await f.broker.stop();
    await expect.poll(async () => (await f.http('GET', '/healthz', { key: null })).body.status, { timeout: 5000 }).toBe('degraded');
    const res = await f.http('POST', '/v1/meters/OUTAGE-1/reconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'payment' } });
    expect(res.status).toBe(202);
    await new Promise((r) => setTimeout(r, 1500)); // longer than the profile's whole retry budget at full speed
    const waiting = await f.http('GET', `/v1/orders/${res.body.id}`);
    expect(waiting.body.state).toBe('queued');
    expect(waiting.body.attempts).toEqual([]);
    await f.broker.start();
    const order = await f.waitForOrder(res.body.id);
    expect(order.state).toBe('done');
    expect(order.attempts).toHaveLength(1);
    expect(f.fleet.meter('OUTAGE-1').relay).toBe('connected');
  });
});

describe('idempotency, validation and access', () => {
  it('a retried POST with the same Idempotency-Key creates no second order; another body with that key is a 409', async () => {
    const k = key();
    const body = { reason: 'payment', paymentReceivedAt: '2026-11-25T08:00:00Z' };
    const a = await f.http('POST', '/v1/meters/IDEM-1/reconnect', { key: f.billingKey, headers: { 'idempotency-key': k }, body });
    const b = await f.http('POST', '/v1/meters/IDEM-1/reconnect', { key: f.billingKey, headers: { 'idempotency-key': k }, body });
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(b.body.id).toBe(a.body.id);
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    const c = await f.http('POST', '/v1/meters/IDEM-1/reconnect', { key: f.billingKey, headers: { 'idempotency-key': k }, body: { ...body, urgent: true } });
    expect(c.status).toBe(409);
    expect(c.body.code).toBe('E_IDEMPOTENCY_CONFLICT');
    await f.waitForOrder(a.body.id);
    const list = await f.http('GET', '/v1/orders?meterId=IDEM-1');
    expect(list.body.items).toHaveLength(1);
    expect(commandsTo('IDEM-1', 'reconnect')).toHaveLength(1);
  });

  it('a write without an Idempotency-Key, or with an invalid body, is refused with a stable code and changes nothing', async () => {
    const noKey = await f.http('POST', '/v1/meters/IDEM-1/reconnect', { body: { reason: 'payment' }, idempotencyKey: null });
    expect(noKey.status).toBe(400);
    expect(noKey.body.code).toBe('E_IDEMPOTENCY_KEY_MISSING');
    const bad = await f.http('POST', '/v1/meters/IDEM-1/disconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'because' } });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('E_VALIDATION');
    expect(bad.body.message).toContain('reason');
    const unknown = await f.http('POST', '/v1/meters/NO-SUCH-METER/reconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'payment' } });
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('E_METER_NOT_FOUND');
    const list = await f.http('GET', '/v1/orders?meterId=IDEM-1');
    expect(list.body.items).toHaveLength(1);
  });

  it('no route but /healthz and the docs answers without a key; billing may not disconnect', async () => {
    expect((await f.http('GET', '/healthz', { key: null })).body).toMatchObject({ status: 'ok', checks: { broker: true } });
    const spec = await f.http('GET', '/openapi.json', { key: null });
    expect(spec.status).toBe(200);
    expect(Object.keys(spec.body.paths)).toEqual(expect.arrayContaining(['/v1/meters/{meterId}/reconnect', '/v1/meters/{meterId}/disconnect', '/v1/orders/{orderId}', '/v1/orders/bulk', '/v1/meters/{meterId}']));
    expect((await f.http('GET', '/docs', { key: null })).status).toBe(200);
    const anon = await f.http('GET', '/v1/meters/AUTH-1', { key: null });
    expect(anon.status).toBe(401);
    expect(anon.body.code).toBe('E_UNAUTHORIZED');
    expect((await f.http('GET', '/v1/meters/AUTH-1', { key: 'op_not-a-real-key' })).status).toBe(401);
    const billingDisconnect = await f.http('POST', '/v1/meters/AUTH-1/disconnect', { key: f.billingKey, headers: { 'idempotency-key': key() }, body: { reason: 'arrears' } });
    expect(billingDisconnect.status).toBe(403);
    expect(billingDisconnect.body.code).toBe('E_FORBIDDEN');
  });
});

describe('bulk', () => {
  it('300 reconnects in one request all end verified (done or armed by profile), and a retry returns the same orders', async () => {
    const k = key();
    const orders = meters.filter((m) => m.meterId.startsWith('BULK-')).map((m) => ({ meterId: m.meterId, action: 'reconnect', reason: 'payment' }));
    const res = await f.http('POST', '/v1/orders/bulk', { headers: { 'idempotency-key': k }, body: { orders } });
    expect(res.status).toBe(202);
    expect(res.body.created).toBe(300);
    const again = await f.http('POST', '/v1/orders/bulk', { headers: { 'idempotency-key': k }, body: { orders } });
    expect(again.body.replayed).toBe(300);
    expect(again.body.results.map((r: any) => r.order.id)).toEqual(res.body.results.map((r: any) => r.order.id));
    await expect
      .poll(async () => (await f.http('GET', '/v1/queue')).body.byState, { timeout: 30_000, interval: 200 })
      .not.toHaveProperty('queued');
    for (const r of res.body.results) {
      const order = await f.waitForOrder(r.order.id);
      const expected = meters.find((m) => m.meterId === order.meterId)!.profileId === ARMS ? 'armed' : 'done';
      expect(order.state).toBe(expected);
      expect(commandsTo(order.meterId, 'reconnect')).toHaveLength(1);
    }
  });

  it('a bulk request naming an unknown meter creates nothing and lists the bad rows', async () => {
    const before = (await f.http('GET', '/v1/queue')).body.byState;
    const res = await f.http('POST', '/v1/orders/bulk', {
      headers: { 'idempotency-key': key() },
      body: { orders: [{ meterId: 'AUTH-1', action: 'reconnect', reason: 'payment' }, { meterId: 'GHOST-9', action: 'disconnect', reason: 'arrears' }] },
    });
    expect(res.status).toBe(404);
    expect(res.body.details.missing).toEqual([{ index: 1, meterId: 'GHOST-9' }]);
    expect((await f.http('GET', '/v1/queue')).body.byState).toEqual(before);
  });
});

describe('cancelling an order', () => {
  it('an operator cancels a queued disconnect with a reason: never sent, audited; a finished order cannot be cancelled; billing may not cancel', async () => {
    const later = new Date(Date.now() + 3_600_000).toISOString();
    const d = await f.http('POST', '/v1/meters/CANCEL-1/disconnect', { headers: { 'idempotency-key': key() }, body: { reason: 'vacant_premises', reference: 'MOVE-1', notBefore: later } });
    expect((await f.http('POST', `/v1/orders/${d.body.id}/cancel`, { key: f.billingKey, headers: { 'idempotency-key': key() }, body: { reason: 'not mine' } })).status).toBe(403);
    const c = await f.http('POST', `/v1/orders/${d.body.id}/cancel`, { headers: { 'idempotency-key': key() }, body: { reason: 'tenant stays, premises not vacant' } });
    expect(c.status).toBe(200);
    expect(c.body).toMatchObject({ state: 'cancelled', stateReason: 'cancelled by demo-operator: tenant stays, premises not vacant' });
    expect((await f.http('GET', '/v1/meters/CANCEL-1')).body.desiredRelay).toBeNull();
    const again = await f.http('POST', `/v1/orders/${d.body.id}/cancel`, { headers: { 'idempotency-key': key() }, body: { reason: 'twice' } });
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('E_ORDER_FINISHED');
    const audit = (await f.http('GET', '/v1/audit?target=CANCEL-1', { key: f.adminKey })).body.items;
    expect(audit.find((a: any) => a.action === 'order.cancel')).toMatchObject({ actor: 'demo-operator', details: { orderId: d.body.id, reason: 'tenant stays, premises not vacant' } });
    expect(commandsTo('CANCEL-1')).toEqual([]);
  });
});
