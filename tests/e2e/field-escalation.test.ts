import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';
import { startWebhookReceiver, type WebhookReceiver } from '../harness/webhook-receiver.js';

/**
 * DOMAIN.md rules 11 and 16 end to end: reconnects that the remote path cannot finish go to the field before the
 * 24-hour limit, and a collapse of disconnect success stops disconnects for the population while reconnects go
 * on. Real mosquitto, simulated meters, real HTTP endpoints for the field-service system and the alerting.
 */
const HOUR = 3_600_000;
const CLOSES = 'acme-em340-fw2.4';
const FIELD_SECRET = 'field-secret-0123456789';
const ALERT_SECRET = 'alert-secret-0123456789';
const POPULATION = Array.from({ length: 1000 }, (_, i) => `SR-${String(i + 1).padStart(4, '0')}`);

const meters: TestMeter[] = [
  { meterId: 'GONE-1', profileId: CLOSES, initialRelay: 'disconnected', region: 'east', link: 'dc-east' },
  { meterId: 'GONE-2', profileId: CLOSES, initialRelay: 'disconnected', region: 'east', link: 'dc-east' },
  ...POPULATION.map((meterId) => ({ meterId, profileId: 'volta-pp20-fw1.7', initialRelay: 'connected' as const, region: 'west', link: 'dc-west' })),
  { meterId: 'SR-RECONNECT', profileId: 'volta-pp20-fw1.7', initialRelay: 'disconnected', region: 'west', link: 'dc-west' },
];

let f: GatewayFixture;
let field: WebhookReceiver;
let alerts: WebhookReceiver;
let n = 0;
const k = () => ({ 'idempotency-key': `esc-${++n}` });
const until = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> => {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

beforeAll(async () => {
  field = await startWebhookReceiver(FIELD_SECRET);
  alerts = await startWebhookReceiver(ALERT_SECRET);
  f = await startGatewayFixture(meters, {
    escalation: { fieldLeadHours: 8, regionLeadHours: {}, dueMarginMinutes: 60, slowRetryMs: 400, disconnectFailures: false, scanEveryMs: 200 },
    fieldService: { webhookUrl: field.url, secret: FIELD_SECRET },
    successRates: { windowMinutes: [5], alertBelow: 0.95, minSamples: 50, minDistinctMeters: 5, breakerBelow: 0.5, breakerMinSamples: 100, evaluateEveryMs: 200, alertWebhookUrl: alerts.url, alertSecret: ALERT_SECRET },
    notifications: { webhookUrl: null, secret: null, pollMs: 100 },
  });
}, 120_000);
afterAll(async () => {
  await f?.stop();
  await field?.close();
  await alerts?.close();
});

describe('field work orders before the 24-hour limit', () => {
  it('a meter that never answers: its reconnect becomes a work order due before payment + 24 h; back online, it is reconnected remotely and the work order is cancelled, and the field system is told', async () => {
    const meter = f.fleet.meter('GONE-1');
    meter.offlineUntil(Date.now() + HOUR);
    const paidAt = Date.now();
    field.failing = true; // the field system is down at first: nothing may be lost
    const r = await f.http('POST', '/v1/meters/GONE-1/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'payment', paymentReceivedAt: new Date(paidAt).toISOString() } });
    const escalated = await f.waitForOrder(r.body.id, ['escalated'], 30_000);
    expect(escalated.attempts).toHaveLength(5);
    expect(escalated.attempts.every((a: any) => a.outcome === 'timeout')).toBe(true);

    const wo = (await f.http('GET', '/v1/work-orders?status=open&region=east')).body.items.find((w: any) => w.orderId === r.body.id);
    expect(wo.reason).toContain('remote attempts exhausted');
    expect(Date.parse(wo.deadline)).toBe(Date.parse(escalated.deadline));
    expect(Date.parse(wo.deadline)).toBe(paidAt + 24 * HOUR);
    expect(Date.parse(wo.dueAt)).toBe(Date.parse(wo.deadline) - HOUR);
    expect(Date.parse(wo.raisedAt)).toBeGreaterThanOrEqual(paidAt);

    await new Promise((res) => setTimeout(res, 400));
    expect(field.received.filter((w) => w.body.orderId === r.body.id)).toEqual([]);
    field.failing = false;
    const created = await until('work_order.created at the field system', async () => field.received.find((w) => w.kind === 'work_order.created' && w.body.orderId === r.body.id));
    expect(created.signatureValid).toBe(true);
    expect(created.body.payload).toMatchObject({ meterId: 'GONE-1', workOrderId: wo.id, dueAt: wo.dueAt });

    meter.offlineUntil(0); // the concentrator is back
    const done = await f.waitForOrder(r.body.id, ['done'], 30_000);
    expect(done.result).toEqual({ relay: 'connected', verified: true });
    const cancelled = (await f.http('GET', `/v1/work-orders/${wo.id}`)).body;
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.note).toContain('restored remotely');
    const told = await until('work_order.cancelled at the field system', async () => field.received.find((w) => w.kind === 'work_order.cancelled' && w.body.orderId === r.body.id));
    expect(told.signatureValid).toBe(true);
  });

  it('a reconnect that cannot finish before deadline − field lead time is escalated at once; the crew completes it on site', async () => {
    f.fleet.meter('GONE-2').offlineUntil(Date.now() + HOUR);
    await f.http('PUT', '/v1/meters/GONE-2/flags', { key: f.billingKey, headers: k(), body: { medicalEquipment: true } });
    const paidAt = Date.now() - 17 * HOUR; // a third-party payment reported late: 7 h left, the crew needs 8
    const r = await f.http('POST', '/v1/meters/GONE-2/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'payment', paymentReceivedAt: new Date(paidAt).toISOString() } });
    const wo = await until('work order', async () => (await f.http('GET', '/v1/work-orders?status=open')).body.items.find((w: any) => w.orderId === r.body.id));
    expect(wo.reason).toContain('cannot finish remotely in time');
    expect(wo.priority).toBe(1); // medical equipment
    expect(wo.timeLeftMinutes).toBeLessThanOrEqual(7 * 60);
    const order = (await f.http('GET', `/v1/orders/${r.body.id}`)).body;
    expect(order.attempts.length).toBeLessThan(5);

    const crew = (await f.http('POST', '/v1/keys', { key: f.adminKey, headers: k(), body: { name: 'crew-east-2', role: 'field' } })).body.key as string;
    expect((await f.http('POST', `/v1/work-orders/${wo.id}/assign`, { key: crew, headers: k(), body: { assignee: 'crew-east-2' } })).body.status).toBe('assigned');
    const completed = await until('completion', async () => {
      const res = await f.http('POST', `/v1/work-orders/${wo.id}/complete`, { key: crew, headers: k(), body: { outcome: 'reconnected', note: 'relay closed by hand, supply checked' } });
      return res.status === 409 ? undefined : res; // an attempt on the wire: report again
    });
    expect(completed.status).toBe(200);
    expect(completed.body.workOrder).toMatchObject({ status: 'done', outcome: 'reconnected' });
    expect(completed.body.order.state).toBe('done_by_field');
    const meter = (await f.http('GET', '/v1/meters/GONE-2')).body;
    expect(meter.observed).toMatchObject({ relay: 'connected', source: 'field' });
  });
});

describe('success-rate monitor and the disconnect circuit breaker', () => {
  it('1,000 meters whose disconnects start failing: the rate falls below threshold, an alert fires, new disconnects for the population are held, reconnects go on', async () => {
    for (const m of POPULATION) f.fleet.meter(m).setFaults({ stuckRelay: true });
    const bulk = await f.http('POST', '/v1/orders/bulk', { headers: k(), body: { orders: POPULATION.map((meterId) => ({ meterId, action: 'disconnect', reason: 'customer_request', reference: 'REQ-1' })) } });
    expect(bulk.body.created).toBe(1000);

    const breaker = await until('breaker', async () => (await f.http('GET', '/v1/stats/breakers')).body.items.find((b: any) => b.scope === 'profile' && b.key === 'volta-pp20-fw1.7'), 60_000);
    expect(breaker.reason).toMatch(/disconnect success \d+(\.\d)?% .* below 50%/);
    const rates = (await f.http('GET', '/v1/stats/success-rates?fresh=true')).body;
    const rate = rates.rates.find((x: any) => x.scope === 'profile' && x.key === 'volta-pp20-fw1.7' && x.action === 'disconnect' && x.kind === 'attempt');
    expect(rate.rate).toBeLessThan(0.5);
    expect(rates.alerting.some((x: any) => x.key === 'volta-pp20-fw1.7' && x.action === 'disconnect')).toBe(true);
    const alert = await until('alert webhook', async () => alerts.received.find((a) => a.kind === 'alert.success_rate' && a.body.payload.key === 'volta-pp20-fw1.7'));
    expect(alert.signatureValid).toBe(true);
    await until('breaker alert', async () => alerts.received.find((a) => a.kind === 'alert.circuit_open'));

    // New disconnects for that population wait; a reconnect of the same profile goes ahead.
    const later = await f.http('POST', '/v1/meters/SR-0001/disconnect', { headers: k(), body: { reason: 'customer_request', reference: 'REQ-1' } });
    const held = later.status === 202 ? later.body : (await f.http('GET', `/v1/orders?meterId=SR-0001&state=held&order=asc`)).body.items[0];
    expect(held.state).toBe('held');
    expect(held.stateReason).toContain('E_CIRCUIT_OPEN');
    const rc = await f.http('POST', '/v1/meters/SR-RECONNECT/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'top_up' } });
    expect((await f.waitForOrder(rc.body.id, undefined, 30_000)).state).toBe('armed');

    // Disconnect attempts stop while the breaker is open.
    const count = () => POPULATION.reduce((s, m) => s + f.fleet.meter(m).received.filter((c) => c.op === 'disconnect').length, 0);
    const before = count();
    await new Promise((r) => setTimeout(r, 1000));
    expect(count() - before).toBeLessThanOrEqual(50); // at most what was already on the wire
    const metrics = await fetch(`${f.gateway.apiUrl}/metrics`, { headers: { authorization: `Bearer ${f.operatorKey}` } });
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    expect(text).toMatch(/^meterline_circuit_breakers_open [1-9]/m);
    expect(text).toMatch(/meterline_switch_attempts_total\{protocol="mqtt",action="disconnect",outcome="verify_mismatch"\} \d+/);
    expect((await f.http('GET', '/v1/alerts')).body.items.some((a: any) => a.kind === 'alert.circuit_open')).toBe(true);

    const reset = await f.http('POST', `/v1/stats/breakers/${breaker.id}/reset`, { headers: k() });
    expect(reset.body.resetBy).toBe('demo-operator');
  }, 120_000);
});
