import mqtt from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModbusRtuBus } from '../../simulators/modbus-rtu-bus.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { ModbusFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';

/**
 * Each link's health as an operator sees it (issue 16): `GET /v1/links`, `/metrics` and `/healthz` of a gateway with
 * a Modbus RTU bus on a real pseudo-terminal pair (socat) and its MQTT broker connection to a real mosquitto. The
 * bus is unplugged (socat killed) and plugged back in; the broker is stopped and started again.
 */
const BUS = 'feeder-7-bus';
let pty: PtyPair;
let bus: ModbusRtuBus;
let f: GatewayFixture;

type Link = { link: string; kind: string; state: 'up' | 'down'; since: string; lastError: { at: string; message: string } | null; counters: Record<string, any> };

async function links(): Promise<Link[]> {
  const res = await f.http('GET', '/v1/links');
  expect(res.status).toBe(200);
  return res.body.items;
}
const link = async (name: string): Promise<Link> => (await links()).find((l) => l.link === name)!;
const mqttLink = async (): Promise<Link> => (await links()).find((l) => l.kind === 'mqtt')!;

async function metric(series: string): Promise<number | undefined> {
  const res = await f.http('GET', '/metrics');
  const line = (res.body as string).split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function until<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`${what}: still ${JSON.stringify(v)} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A live read of the meter, as the supply answer does it (GET /v1/meters/:id/supply). */
const readLive = async (meterId: string) => (await f.http('GET', `/v1/meters/${meterId}/supply`)).body as { liveRead: string; liveReadDetail: string | null };

beforeAll(async () => {
  pty = await startPtyPair();
  const breaker = loadFirmwareProfiles('firmware-profiles').get('brk-rc100-modbus-fw3.2') as ModbusFirmwareProfile;
  bus = new ModbusRtuBus({ path: pty.devicePath, baudRate: 19_200, parity: 'none', logger: pino({ level: 'silent' }), devices: [{ unitId: 9, meterId: 'LH-BRK-9', profile: breaker, initialRelay: 'connected' }] });
  await bus.start();
  f = await startGatewayFixture([{ meterId: 'LH-MQTT-1', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }], {
    modbus: { rtu: { [BUS]: { path: pty.gatewayPath, baudRate: 19_200, parity: 'none', dataBits: 8, stopBits: 1, noiseGapMs: 20, frameRetries: 1, reopenMs: 100 } }, tcp: {} },
  });
  expect((await f.http('PUT', '/v1/meters/LH-BRK-9', { body: { profileId: breaker.id, link: BUS, region: 'north', address: '9' } })).status).toBe(200);
}, 60_000);

afterAll(async () => {
  await f?.stop();
  await bus?.stop();
  await pty?.stop();
  if (pty) removePtyDir(pty);
});

describe('link health: GET /v1/links, /metrics, /healthz', () => {
  it('needs a key like every other read', async () => {
    expect((await f.http('GET', '/v1/links', { key: null })).status).toBe(401);
  });

  it('an RTU bus counts corrupted answers and timeouts, goes down when its adapter is unplugged (named in /healthz) and comes back up, its reopen counted', async () => {
    const start = await link(BUS);
    expect(start).toMatchObject({ kind: 'modbus-rtu', state: 'up', lastError: null, counters: { crcErrors: 0, garbled: 0, frameRetries: 0, timeouts: 0, exceptions: {}, reopens: 0 } });
    expect(Date.parse(start.since)).toBeGreaterThan(0);
    expect(await f.http('GET', '/healthz', { key: null })).toMatchObject({ status: 200, body: { status: 'ok', checks: { links: true, broker: true } } });
    expect(await metric(`meterline_link_up{link="${BUS}",kind="modbus-rtu"}`)).toBe(1);

    // The breaker garbles its answers: each frame is sent again once (frameRetries 1), then the read is garbled.
    bus.meter('LH-BRK-9').garbleReplies(2);
    expect(await readLive('LH-BRK-9')).toMatchObject({ liveRead: 'failed', liveReadDetail: expect.stringMatching(/^garbled: /) });
    const noisy = await link(BUS);
    expect(noisy.counters.crcErrors + noisy.counters.garbled).toBe(2);
    expect(noisy.counters.frameRetries).toBe(1);
    expect(noisy.lastError?.message).toMatch(/^unit 9: /);
    expect(await metric(`meterline_link_frame_retries_total{link="${BUS}",kind="modbus-rtu"}`)).toBe(1);

    // It stops answering: a timeout.
    bus.meter('LH-BRK-9').offlineUntil(Number.MAX_SAFE_INTEGER);
    expect(await readLive('LH-BRK-9')).toMatchObject({ liveRead: 'failed', liveReadDetail: expect.stringMatching(/^timeout: /) });
    expect((await link(BUS)).counters.timeouts).toBe(1);
    expect(await metric(`meterline_link_timeouts_total{link="${BUS}",kind="modbus-rtu"}`)).toBe(1);
    bus.meter('LH-BRK-9').clearFaults();

    // The adapter is unplugged: the link is down, /healthz degraded and names it with since when and why.
    const before = Date.now();
    await pty.stop();
    const down = await until('the bus down in /v1/links', () => link(BUS), (l) => l.state === 'down');
    expect(Date.parse(down.since)).toBeGreaterThanOrEqual(before - 1000);
    expect(down.lastError?.message).toMatch(/serial port .*(closed|is not open)|cannot open serial port/);
    const degraded = await f.http('GET', '/healthz', { key: null });
    expect(degraded).toMatchObject({ status: 200, body: { status: 'degraded', checks: { links: false, broker: true, store: true } } });
    const problem = (degraded.body.problems as Array<{ check: string; detail: string }>).find((p) => p.check === 'links');
    expect(problem?.detail).toContain(`${BUS} (modbus-rtu) down since ${down.since}`);
    expect(await metric(`meterline_link_up{link="${BUS}",kind="modbus-rtu"}`)).toBe(0);

    // Plugged back in at the same path: up again, the reopen counted, the bus answers.
    await pty.start();
    const up = await until('the bus up again in /v1/links', () => link(BUS), (l) => l.state === 'up', 15_000);
    expect(up.counters.reopens).toBe(1);
    expect(Date.parse(up.since)).toBeGreaterThan(Date.parse(down.since));
    expect(up.lastError).not.toBeNull(); // the last failure stays visible after the recovery
    expect(await f.http('GET', '/healthz', { key: null })).toMatchObject({ body: { status: 'ok', checks: { links: true } } });
    expect(await metric(`meterline_link_reopens_total{link="${BUS}",kind="modbus-rtu"}`)).toBe(1);
    expect(await metric(`meterline_link_up{link="${BUS}",kind="modbus-rtu"}`)).toBe(1);
    await until('the simulated bus reopened', async () => bus.isOpen, (open) => open, 5000);
    expect((await readLive('LH-BRK-9')).liveRead).toBe('ok');
  }, 60_000);

  it('the MQTT connection counts replies with an unknown correlation id, and shows the broker going down and coming back', async () => {
    const start = await mqttLink();
    expect(start).toMatchObject({ link: f.broker.url, state: 'up', counters: { unknownCorrelationIds: 0, reconnects: 0 } });

    const stray = await mqtt.connectAsync(f.broker.url, { clientId: 'link-health-test' });
    await stray.publishAsync('meters/LH-MQTT-1/reply', JSON.stringify({ cid: 'nobody-asked-1', result: 'ok', relay: 'connected' }), { qos: 1 });
    await stray.publishAsync('meters/LH-MQTT-1/reply', JSON.stringify({ cid: 'nobody-asked-2', result: 'ok', relay: 'connected' }), { qos: 1 });
    await stray.endAsync();
    await until('two unknown correlation ids counted', mqttLink, (l) => l.counters.unknownCorrelationIds === 2);
    expect(await metric(`meterline_link_unknown_correlation_ids_total{link="${f.broker.url}",kind="mqtt"}`)).toBe(2);

    await f.broker.stop();
    const down = await until('the broker connection down', mqttLink, (l) => l.state === 'down');
    expect(down.lastError?.message).toBeTruthy();
    const degraded = await f.http('GET', '/healthz', { key: null });
    expect(degraded.body).toMatchObject({ status: 'degraded', checks: { broker: false, links: true } }); // named once, by the broker check

    await f.broker.start();
    const up = await until('the broker connection up again', mqttLink, (l) => l.state === 'up', 15_000);
    expect(up.counters.reconnects).toBe(1);
    expect(Date.parse(up.since)).toBeGreaterThan(Date.parse(down.since));
    expect(await metric(`meterline_link_reconnects_total{link="${f.broker.url}",kind="mqtt"}`)).toBe(1);
  }, 60_000);
});
