import { connectAsync } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';
import { startVictoriaMetrics } from '../harness/victoria-metrics.js';

/**
 * Readings, the daily relay audit, abnormal consumption and the time series, through the running gateway:
 * scheduled reads of simulated meters, points written to a real InfluxDB-protocol server (VictoriaMetrics) and
 * queried back, the audit's exceptions listed by the API, and an alert for excessive use.
 */
const meters: TestMeter[] = [
  ...['RD-1', 'RD-2', 'RD-TAMPER'].map((meterId) => ({ meterId, profileId: 'acme-em340-fw2.4', initialRelay: 'connected' as const })),
  // A fault drawing 60 kW on a household meter.
  { meterId: 'RD-LEAK', profileId: 'acme-em340-fw2.4', initialRelay: 'connected', loadW: 60_000 },
];

let vm: Awaited<ReturnType<typeof startVictoriaMetrics>>;
let f: GatewayFixture;
let n = 0;
const k = () => ({ 'idempotency-key': `rd-${++n}` });

beforeAll(async () => {
  vm = await startVictoriaMetrics();
  f = await startGatewayFixture(meters, {
    timeSeries: { url: vm.url, token: '', org: 'meterline', bucket: 'meterline', batchSize: 100, flushIntervalMs: 100, maxBufferLines: 10_000, maxRetries: 3 },
    readings: { schedules: [{ name: 'every-15-min', cron: '*/15 * * * *' }], concurrencyPerLink: 2, timezone: 'UTC' },
  });
}, 60_000);
afterAll(async () => {
  await f?.stop();
  await vm?.stop();
});

describe('readings, relay audit, consumption and time series', () => {
  it('a scheduled read round reads every meter; readings and attempt outcomes can be queried back from the time-series server', async () => {
    const round = await f.gateway.readings.runOnce('every-15-min');
    expect(round).toMatchObject({ status: 'completed', meters: 4, ok: 4, failed: 0 });
    const d = await f.http('POST', '/v1/meters/RD-1/disconnect', { headers: k(), body: { reason: 'customer_request', reference: 'REQ-1' } });
    expect((await f.waitForOrder(d.body.id)).state).toBe('done');
    await f.gateway.timeSeries!.flush();

    const voltage = await vm.query('meter_reading_voltage_v{meter="RD-2"}', { expectSeries: 1 });
    expect(voltage.length).toBe(1);
    expect(Number(voltage[0]!.value[1])).toBeGreaterThan(200);
    const attempts = await vm.query('switch_attempt_latency_ms{action="disconnect",outcome="ok"}', { expectSeries: 1 });
    expect(attempts[0]!.metric).toMatchObject({ profile: 'acme-em340-fw2.4', protocol: 'mqtt', link: 'dc-1' });
    const relay = await vm.query('meter_reading_relay_closed{meter="RD-1",source="read_back"}', { expectSeries: 1 });
    expect(Number(relay[0]!.value[1])).toBe(0);
  });

  it('a status report the meter pushes is written to the time series as a read one is (source status_report)', async () => {
    const energyWh = f.fleet.meter('RD-2').energyWh; // what the meter's register shows now
    const meterSide = await connectAsync(f.broker.url, { protocolVersion: 5, clientId: `rd-meter-side-${process.pid}` });
    try {
      await meterSide.publishAsync('meters/RD-2/status', JSON.stringify({ relay: 'connected', voltageV: 229.5, energyWh, ts: Date.now() }), { qos: 1 });
    } finally {
      await meterSide.endAsync();
    }
    await expect.poll(async () => (await f.http('GET', '/v1/meters/RD-2')).body.observed?.source, { timeout: 5000 }).toBe('status');
    await f.gateway.timeSeries!.flush();
    const pushed = await vm.query('meter_reading_energy_wh{meter="RD-2",source="status_report"}', { expectSeries: 1 });
    expect(Number(pushed[0]!.value[1])).toBe(energyWh);
  });

  it('the relay audit lists a relay open with no order behind it', async () => {
    f.fleet.meter('RD-TAMPER').setRelay('disconnected'); // opened on site, not by the gateway
    await f.gateway.readings.runOnce('every-15-min');
    const run = await f.http('POST', '/v1/relay-audit/run', { headers: {} });
    expect(run.status).toBe(200);
    const byMeter = Object.fromEntries(run.body.exceptions.map((e: any) => [e.meterId, e.kind]));
    expect(byMeter['RD-TAMPER']).toBe('open_without_order');
    expect(byMeter['RD-1']).toBeUndefined(); // open, but by our order
    expect(byMeter['RD-2']).toBeUndefined();
    expect((await f.http('GET', '/v1/relay-audit')).body.id).toBe(run.body.id);
  });

  it('excessive consumption between two readings raises an alert for the meter', async () => {
    await new Promise((r) => setTimeout(r, 1500));
    await f.gateway.readings.runOnce('every-15-min');
    await expect
      .poll(async () => (await f.http('GET', '/v1/alerts')).body.items.filter((a: any) => a.kind === 'alert.abnormal_consumption').map((a: any) => a.meterId), { timeout: 5000 })
      .toEqual(['RD-LEAK']);
    const alert = (await f.http('GET', '/v1/alerts')).body.items.find((a: any) => a.kind === 'alert.abnormal_consumption' && a.meterId === 'RD-LEAK');
    expect(alert.payload).toMatchObject({ kind: 'excessive' });
    expect(alert.payload.whPerHour).toBeGreaterThan(15_000); // the configured limit
  });
});
