import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { FakeClock } from '../harness/fake-clock.js';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';
import { startWebhookReceiver, type WebhookReceiver } from '../harness/webhook-receiver.js';

/**
 * DOMAIN.md rules 17 and 18 end to end: every exception of the daily relay audit acts (an alert, counted in
 * meterline_alerts_total, on the meter's timeline; an inspection work order where someone must look at the
 * customer), once per episode however often the audit runs; and the supply answer agrees with the audit. Real
 * mosquitto, simulated meters switched by hand as a person on site would, a real field-service endpoint.
 */
const CLOSES = 'acme-em340-fw2.4';
const ARMS = 'volta-pp20-fw1.7';
const FIELD_SECRET = 'field-secret-0123456789';
const HOUR = 3_600_000;
const meters: TestMeter[] = [
  { meterId: 'RA-TAMPER', profileId: CLOSES, initialRelay: 'connected', region: 'east' },
  { meterId: 'RA-BYPASS', profileId: CLOSES, initialRelay: 'connected' },
  { meterId: 'RA-ARMED', profileId: ARMS, initialRelay: 'connected' },
  { meterId: 'RA-WAITING', profileId: ARMS, initialRelay: 'connected' },
  { meterId: 'RA-FINE', profileId: CLOSES, initialRelay: 'connected' },
];
// The meters stamp their readings with the real time: the fake clock starts there and moves only forward.
const clock = new FakeClock(Date.now());
let f: GatewayFixture;
let field: WebhookReceiver;
let n = 0;
const k = () => ({ 'idempotency-key': `ra-${++n}` });

const auditRun = async () => {
  await f.gateway.readings.runOnce();
  const run = await f.http('POST', '/v1/relay-audit/run', { headers: {} });
  expect(run.status).toBe(200);
  return run.body as { exceptions: { meterId: string; kind: string; alerted: boolean; workOrderId: string | null; episodeId: string }[] };
};
const exceptionOf = (run: Awaited<ReturnType<typeof auditRun>>, meterId: string) => run.exceptions.filter((e) => e.meterId === meterId);
const alertsFor = async (meterId: string) => (await f.http('GET', '/v1/alerts?limit=1000')).body.items.filter((a: any) => a.kind === 'alert.relay_audit' && a.meterId === meterId);
const workOrdersFor = async (meterId: string) => (await f.http('GET', '/v1/work-orders?limit=1000')).body.items.filter((w: any) => w.meterId === meterId);
const alertMetric = async (kind: string): Promise<number> => {
  const text = await (await fetch(`${f.gateway.apiUrl}/metrics`, { headers: { authorization: `Bearer ${f.operatorKey}` } })).text();
  const line = text.split('\n').find((l) => l.startsWith(`meterline_alerts_total{kind="${kind}"}`));
  return line ? Number(line.split(' ')[1]) : 0;
};
const supply = async (meterId: string) => (await f.http('GET', `/v1/meters/${meterId}/supply`)).body;
const until = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> => {
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
  const base = loadConfig({});
  f = await startGatewayFixture(
    meters,
    {
      relayAudit: { ...base.relayAudit, maxArmedHours: 2 },
      fieldService: { webhookUrl: field.url, secret: FIELD_SECRET },
      notifications: { webhookUrl: null, secret: null, pollMs: 100 },
    },
    { clock },
  );
}, 60_000);
afterAll(async () => {
  await f?.stop();
  await field?.close();
});

describe('every relay-audit exception acts, once per episode', () => {
  it('a relay opened by hand with no order: one alert, counted and on the timeline, and one inspection work order (medical equipment first) for the crew; a second run repeats none of it', async () => {
    await f.http('PUT', '/v1/meters/RA-TAMPER/flags', { key: f.billingKey, headers: k(), body: { medicalEquipment: true } });
    const counted = await alertMetric('relay_audit_open_without_order');
    f.fleet.meter('RA-TAMPER').setRelay('disconnected'); // opened on site, by nobody's decision

    const first = await auditRun();
    const [ex] = exceptionOf(first, 'RA-TAMPER');
    expect(ex).toMatchObject({ kind: 'open_without_order', alerted: true });
    expect(exceptionOf(first, 'RA-FINE')).toEqual([]);

    const alerts = await alertsFor('RA-TAMPER');
    expect(alerts).toHaveLength(1);
    expect(alerts[0].payload).toMatchObject({ meterId: 'RA-TAMPER', exception: 'open_without_order', episodeId: ex!.episodeId, workOrderId: ex!.workOrderId });
    expect(await alertMetric('relay_audit_open_without_order')).toBe(counted + 1);

    const timeline = (await f.http('GET', '/v1/meters/RA-TAMPER/timeline')).body.items.filter((i: any) => i.kind === 'alert');
    expect(timeline).toHaveLength(1);
    expect(timeline[0].details).toMatchObject({ kind: 'relay_audit_open_without_order', episodeId: ex!.episodeId, workOrderId: ex!.workOrderId, endedAt: null });
    expect(timeline[0].summary).toContain('A person should look');

    const crewKey = (await f.http('POST', '/v1/keys', { key: f.adminKey, headers: k(), body: { name: 'crew-east-1', role: 'field' } })).body.key as string;
    const listed = (await f.http('GET', '/v1/work-orders?status=open&region=east', { key: crewKey })).body.items.filter((w: any) => w.meterId === 'RA-TAMPER');
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ id: ex!.workOrderId, kind: 'inspection', orderId: null, action: 'inspect', priority: 1, status: 'open', region: 'east' });
    expect(listed[0].reason).toContain('open');
    expect(Date.parse(listed[0].dueAt)).toBe(clock.now() + 24 * HOUR); // relayAudit.inspectionDueHours
    const told = await until('work_order.created at the field system', async () => field.received.find((w) => w.kind === 'work_order.created' && w.body.payload.workOrderId === ex!.workOrderId));
    expect(told.signatureValid).toBe(true);
    expect(told.body.payload).toMatchObject({ kind: 'inspection', orderId: null, meterId: 'RA-TAMPER', action: 'inspect' });

    // The next run sees the same relay: the same episode, nothing new.
    const second = await auditRun();
    expect(exceptionOf(second, 'RA-TAMPER')).toMatchObject([{ kind: 'open_without_order', alerted: false, episodeId: ex!.episodeId, workOrderId: ex!.workOrderId }]);
    expect(await alertsFor('RA-TAMPER')).toHaveLength(1);
    expect(await alertMetric('relay_audit_open_without_order')).toBe(counted + 1);
    expect(await workOrdersFor('RA-TAMPER')).toHaveLength(1);

    // The crew closes the relay and reports it; the next run no longer sees it and the episode ends.
    f.fleet.meter('RA-TAMPER').setRelay('connected');
    clock.set(Math.max(clock.now(), Date.now())); // the crew reports after the meters' last readings
    const done = await f.http('POST', `/v1/work-orders/${ex!.workOrderId}/complete`, { key: crewKey, headers: k(), body: { outcome: 'reconnected', note: 'relay closed, seal replaced' } });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ workOrder: { status: 'done', outcome: 'reconnected', kind: 'inspection' }, order: null });
    expect((await f.http('GET', '/v1/meters/RA-TAMPER')).body.observed).toMatchObject({ relay: 'connected', source: 'field' });
    const third = await auditRun();
    expect(exceptionOf(third, 'RA-TAMPER')).toEqual([]);
    const ended = (await f.http('GET', '/v1/meters/RA-TAMPER/timeline')).body.items.find((i: any) => i.kind === 'alert');
    expect(ended.details.endedAt).not.toBeNull();

    // Opened again later: a new episode, alerted and inspected again.
    f.fleet.meter('RA-TAMPER').setRelay('disconnected');
    const fourth = await auditRun();
    const [again] = exceptionOf(fourth, 'RA-TAMPER');
    expect(again).toMatchObject({ kind: 'open_without_order', alerted: true });
    expect(again!.episodeId).not.toBe(ex!.episodeId);
    expect(await alertsFor('RA-TAMPER')).toHaveLength(2);
    expect(await alertMetric('relay_audit_open_without_order')).toBe(counted + 2);
    expect((await workOrdersFor('RA-TAMPER')).map((w: any) => w.status).sort()).toEqual(['done', 'open']);
  }, 60_000);

  it('a relay closed after our done disconnect (a bypass): the supply answer says on_supply_against_order and the audit closed_while_should_be_open, with an inspection', async () => {
    const d = await f.http('POST', '/v1/meters/RA-BYPASS/disconnect', { headers: k(), body: { reason: 'customer_request', reference: 'REQ-1', note: 'moving out' } });
    expect((await f.waitForOrder(d.body.id)).state).toBe('done');
    expect((await supply('RA-BYPASS')).status).toBe('disconnected_by_order');

    f.fleet.meter('RA-BYPASS').setRelay('connected'); // bypassed on site
    const answer = await supply('RA-BYPASS');
    expect(answer.status).toBe('on_supply_against_order');
    expect(answer.sentence).toContain('A person should look');
    expect(answer.orderId).toBe(d.body.id);

    const run = await auditRun();
    const [ex] = exceptionOf(run, 'RA-BYPASS');
    expect(ex).toMatchObject({ kind: 'closed_while_should_be_open', alerted: true });
    expect(await workOrdersFor('RA-BYPASS')).toMatchObject([{ id: ex!.workOrderId, kind: 'inspection', orderId: null }]);
    expect(await alertMetric('relay_audit_closed_while_should_be_open')).toBe(1);
  }, 60_000);

  it('a relay armed with no order of ours: the supply answer does not say armed_waiting_for_customer, it says open without an order, as the audit does', async () => {
    f.fleet.meter('RA-ARMED').setRelay('armed');
    const answer = await supply('RA-ARMED');
    expect(answer.status).toBe('disconnected_without_order');
    expect(answer.sentence).toContain('no order of ours armed it');
    const [ex] = exceptionOf(await auditRun(), 'RA-ARMED');
    expect(ex).toMatchObject({ kind: 'open_without_order', alerted: true });
  }, 60_000);

  it('a relay our reconnect armed, waiting longer than relayAudit.maxArmedHours (2 h here): an armed_too_long alert, and no inspection', async () => {
    const d = await f.http('POST', '/v1/meters/RA-WAITING/disconnect', { headers: k(), body: { reason: 'customer_request', reference: 'REQ-2' } });
    expect((await f.waitForOrder(d.body.id)).state).toBe('done');
    const r = await f.http('POST', '/v1/meters/RA-WAITING/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'top_up' } });
    expect((await f.waitForOrder(r.body.id)).state).toBe('armed');
    expect((await supply('RA-WAITING')).status).toBe('armed_waiting_for_customer');
    expect(exceptionOf(await auditRun(), 'RA-WAITING')).toEqual([]);
    clock.advance(3 * HOUR);
    const [ex] = exceptionOf(await auditRun(), 'RA-WAITING');
    expect(ex).toMatchObject({ kind: 'armed_too_long', alerted: true, workOrderId: null });
    expect(await workOrdersFor('RA-WAITING')).toEqual([]);
    expect(await alertMetric('relay_audit_armed_too_long')).toBe(1);
  }, 60_000);
});
