import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../harness/fake-clock.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * Abnormal consumption (DOMAIN.md rule 20) end to end, with meters driven by hand over MQTT: they only push status
 * reports, with the register values and times a test chooses. An alert is raised once per episode (across a
 * restart of the gateway on the same store too), a recorded meter swap is not consumption, a register that goes
 * down with no swap is a register discontinuity, and the alert shows its kind, rate and period on the timeline
 * and in the supply answer. The limit is the shipped one: 15,000 Wh/h.
 */
const CLOSES = 'acme-em340-fw2.4';
const HOUR = 3_600_000;
const T0 = Date.parse('2026-11-24T00:00:00Z');
const clock = new FakeClock(T0 + 6 * HOUR);
let f: GatewayFixture;
let meterSide: MqttClient;
let n = 0;
const k = () => ({ 'idempotency-key': `ca-${++n}` });
const iso = (ms: number): string => new Date(ms).toISOString();

/** A status report as the meter pushes it: relay, voltage, energy register, the meter's own time. */
const push = async (meterId: string, at: number, energyWh: number): Promise<void> => {
  await meterSide.publishAsync(`meters/${meterId}/status`, JSON.stringify({ relay: 'connected', voltageV: 231.5, energyWh, ts: at }), { qos: 1 });
  await expect.poll(async () => (await f.http('GET', `/v1/meters/${meterId}/timeline`)).body.items.some((i: any) => i.kind === 'reading' && i.at === iso(at)), { timeout: 5000 }).toBe(true);
};
const alertsFor = async (meterId: string, kind: string) => (await f.http('GET', '/v1/alerts?limit=1000')).body.items.filter((a: any) => a.kind === kind && a.meterId === meterId);
const supplyAlerts = async (meterId: string) => (await f.http('GET', `/v1/meters/${meterId}/supply?refresh=false`)).body.consumptionAlerts;

beforeAll(async () => {
  f = await startGatewayFixture([{ meterId: 'CA-SIMULATED', profileId: CLOSES, initialRelay: 'connected' }], {}, { clock });
  // Registered, but no simulator answers for them: what the gateway learns of them is what the test pushes.
  await f.registerMeters(['CA-PUSH', 'CA-SWAP', 'CA-DROP', 'CA-PREPAY'].map((meterId) => ({ meterId, profileId: CLOSES, initialRelay: 'connected' as const })));
  meterSide = await connectAsync(f.broker.url, { protocolVersion: 5, clientId: `meter-side-${process.pid}` });
}, 60_000);
afterAll(async () => {
  await meterSide?.endAsync();
  await f?.stop();
});

describe('consumption alerts are right once', () => {
  it('a meter that only pushes status reports raises an excessive-use alert, with its kind, rate and period on the timeline and in the supply answer', async () => {
    await push('CA-PUSH', T0, 1_000);
    await push('CA-PUSH', T0 + HOUR, 21_000); // 20,000 Wh in one hour
    await expect.poll(async () => (await alertsFor('CA-PUSH', 'alert.abnormal_consumption')).length, { timeout: 5000 }).toBe(1);
    const [alert] = await alertsFor('CA-PUSH', 'alert.abnormal_consumption');
    expect(alert.payload).toMatchObject({ kind: 'excessive', whPerHour: 20_000, from: iso(T0), to: iso(T0 + HOUR) });

    const timeline = (await f.http('GET', '/v1/meters/CA-PUSH/timeline')).body.items.filter((i: any) => i.kind === 'alert');
    expect(timeline).toHaveLength(1);
    expect(timeline[0].details).toMatchObject({ kind: 'consumption_excessive', whPerHour: 20_000, from: iso(T0), to: iso(T0 + HOUR) });
    expect(timeline[0].summary).toContain('20000 Wh/h');
    expect(await supplyAlerts('CA-PUSH')).toMatchObject([{ kind: 'consumption_excessive', whPerHour: 20_000, from: iso(T0), to: iso(T0 + HOUR), episodeId: timeline[0].details.episodeId }]);
  });

  it('a restart of the gateway on the same store does not alert the same episode again; the episode grows', async () => {
    await f.restartGateway();
    await push('CA-PUSH', T0 + 2 * HOUR, 41_000); // the same excessive use, one hour longer
    // The check ran after the restart: the episode now ends at T0 + 2 h.
    await expect.poll(async () => (await supplyAlerts('CA-PUSH'))[0]?.to, { timeout: 5000 }).toBe(iso(T0 + 2 * HOUR));
    expect(await supplyAlerts('CA-PUSH')).toHaveLength(1);
    expect(await alertsFor('CA-PUSH', 'alert.abnormal_consumption')).toHaveLength(1);
  });

  it('a meter swap recorded through the API is not consumption: the new register starting higher raises no alert, and later use is judged from the new register', async () => {
    await push('CA-SWAP', T0, 5_000);
    await push('CA-SWAP', T0 + HOUR, 5_500);
    const body = { at: iso(T0 + 90 * 60_000), oldRegisterFinalWh: 5_600, newRegisterFirstWh: 900_000, newSerial: 'EM340-2291745', reference: 'job 7781' };
    expect((await f.http('POST', '/v1/meters/CA-SWAP/swaps', { key: f.billingKey, headers: k(), body })).status).toBe(403); // meter:write
    const headers = k();
    const swap = await f.http('POST', '/v1/meters/CA-SWAP/swaps', { headers, body });
    expect(swap.status).toBe(201);
    expect(swap.body).toMatchObject({ meterId: 'CA-SWAP', oldRegisterFinalWh: 5_600, newRegisterFirstWh: 900_000, newSerial: 'EM340-2291745', recordedBy: 'demo-operator' });
    const again = await f.http('POST', '/v1/meters/CA-SWAP/swaps', { headers, body });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.id).toBe(swap.body.id);
    expect((await f.http('GET', '/v1/meters/CA-SWAP/swaps')).body.items).toHaveLength(1);
    const audit = (await f.http('GET', '/v1/audit?target=CA-SWAP', { key: f.supervisorKey })).body.items;
    expect(audit.filter((a: any) => a.action === 'meter.swap')).toHaveLength(1);

    await push('CA-SWAP', T0 + 2 * HOUR, 900_300); // 300 Wh since the swap
    await push('CA-SWAP', T0 + 3 * HOUR, 920_300); // then 20,000 Wh in an hour: a real excess, on the new register
    await expect.poll(async () => (await alertsFor('CA-SWAP', 'alert.abnormal_consumption')).length, { timeout: 5000 }).toBe(1);
    const [alert] = await alertsFor('CA-SWAP', 'alert.abnormal_consumption');
    expect(alert.payload).toMatchObject({ kind: 'excessive', whPerHour: 20_000, from: iso(T0 + 2 * HOUR), to: iso(T0 + 3 * HOUR) });
    expect(await alertsFor('CA-SWAP', 'alert.register_discontinuity')).toEqual([]);
  });

  it('a register that goes down with no swap recorded is a register discontinuity, not a consumption alert', async () => {
    await push('CA-DROP', T0, 50_000);
    await push('CA-DROP', T0 + HOUR, 50_400);
    await push('CA-DROP', T0 + 2 * HOUR, 120); // reset on site, nobody recorded a swap
    await expect.poll(async () => (await alertsFor('CA-DROP', 'alert.register_discontinuity')).length, { timeout: 5000 }).toBe(1);
    const [drop] = await alertsFor('CA-DROP', 'alert.register_discontinuity');
    expect(drop.payload).toMatchObject({ beforeWh: 50_400, afterWh: 120, from: iso(T0 + HOUR), to: iso(T0 + 2 * HOUR) });
    expect(await alertsFor('CA-DROP', 'alert.abnormal_consumption')).toEqual([]);
    expect(await supplyAlerts('CA-DROP')).toEqual([]);
    const timeline = (await f.http('GET', '/v1/meters/CA-DROP/timeline')).body.items.filter((i: any) => i.kind === 'alert');
    expect(timeline.map((i: any) => i.details.kind)).toEqual(['register_discontinuity']);
    const metrics = await (await fetch(`${f.gateway.apiUrl}/metrics`, { headers: { authorization: `Bearer ${f.operatorKey}` } })).text();
    expect(metrics).toMatch(/^meterline_alerts_total\{kind="register_discontinuity"\} 1$/m);
  });

  it('pushed readings charge prepayment credit as read ones do, and a recorded swap is never charged as consumption', async () => {
    const balance = async () => (await f.http('GET', '/v1/meters/CA-PREPAY/credit')).body.balance as number;
    await f.http('PUT', '/v1/meters/CA-PREPAY/flags', { key: f.billingKey, headers: k(), body: { prepaymentMode: true, prepaymentAgreementRef: 'PPA-CA-PREPAY' } });
    await f.http('POST', '/v1/payments', { key: f.billingKey, headers: k(), body: { meterId: 'CA-PREPAY', amount: 10, receivedAt: iso(clock.now()), kind: 'top_up' } });
    expect(await balance()).toBe(1000); // minor units; the shipped tariff is 25 per kWh
    await push('CA-PREPAY', T0, 100_000);
    await push('CA-PREPAY', T0 + HOUR, 104_000); // 4 kWh: 100
    await expect.poll(balance, { timeout: 5000 }).toBe(900);
    const swap = await f.http('POST', '/v1/meters/CA-PREPAY/swaps', { headers: k(), body: { at: iso(T0 + 90 * 60_000), oldRegisterFinalWh: 104_400, newRegisterFirstWh: 2_000_000 } });
    expect(swap.status).toBe(201);
    expect(await balance()).toBe(890); // the old register's last 0.4 kWh
    await push('CA-PREPAY', T0 + 2 * HOUR, 2_001_000); // 1 kWh on the new register: 25
    await expect.poll(balance, { timeout: 5000 }).toBe(865);
    expect(await alertsFor('CA-PREPAY', 'alert.abnormal_consumption')).toEqual([]);
  });
});
