import { connect, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { FirmwareProfile } from '../../src/domain/firmware-profile.js';
import { FakeClock } from '../harness/fake-clock.js';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';

/**
 * DOMAIN.md rule 14 end to end over MQTT (issue 16 item 4): voltage on the load side of an open relay (the meter
 * model's `backfeed` fault: a generator, a bypass, tampering). A meter that checks itself refuses the close with its
 * firmware's reason word; a profile whose gateway checks has the gateway read the load side first and never send the
 * close. Either way the reconnect goes to the field at once, at priority 1, with the reason; the supply answer, the
 * timeline, the work order and /metrics say why; and no close is sent again, also after the control loop has run
 * for most of the 24 hours on a fake clock. An independent MQTT client on the broker counts the commands.
 */
const HOUR = 3_600_000;
const START = Date.parse('2026-11-24T10:00:00Z');
const clock = new FakeClock(START);
const REFUSAL_WORD = 'LOAD_SIDE_LIVE';

const acme = loadFirmwareProfiles(`${process.cwd()}/firmware-profiles`).get('acme-em340-fw2.4')!;
if (acme.protocol !== 'mqtt') throw new Error('acme-em340-fw2.4 is an MQTT profile');
/** The same firmware family, one build that checks its load side itself, one whose gateway must check it. */
const selfChecking: FirmwareProfile = {
  ...acme,
  id: 'acme-em340-fw2.6-ls',
  firmware: '2.6 (load-side check)',
  relay: { ...acme.relay, loadSideVoltageCheck: { checkedBy: 'meter', maxVoltageV: 50 } },
  mqtt: { ...acme.mqtt, loadSideRefusalReasons: [REFUSAL_WORD] },
};
const gatewayChecked: FirmwareProfile = { ...acme, id: 'acme-em340-fw2.4-gwcheck', relay: { ...acme.relay, loadSideVoltageCheck: { checkedBy: 'gateway', maxVoltageV: 50 } } };

const meters: TestMeter[] = [
  { meterId: 'LS-SELF', profileId: selfChecking.id, initialRelay: 'disconnected' },
  { meterId: 'LS-GW', profileId: gatewayChecked.id, initialRelay: 'disconnected' },
  { meterId: 'LS-GW-CLEAR', profileId: gatewayChecked.id, initialRelay: 'disconnected' },
];

let f: GatewayFixture;
let recorder: MqttClient;
/** Every command on the broker, as an independent client saw it. */
const seen: { meterId: string; op: string; orderId?: string }[] = [];
let n = 0;
const k = () => ({ 'idempotency-key': `ls-${++n}` });
const closesTo = (meterId: string) => seen.filter((c) => c.meterId === meterId && c.op === 'reconnect');
/** A few ticks of the control loop (tickMs 50) pass in real time while the fake clock stands still. */
const someTicks = () => new Promise((r) => setTimeout(r, 300));
const until = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> => {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 30));
  }
};
const openWorkOrder = (orderId: string) => until('work order', async () => (await f.http('GET', '/v1/work-orders?status=open')).body.items.find((w: any) => w.orderId === orderId));
const sample = async (series: string): Promise<number> => {
  const text = (await f.http('GET', '/metrics', { key: f.adminKey })).body as string;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
};
const reconnect = async (meterId: string) => {
  const r = await f.http('POST', `/v1/meters/${meterId}/reconnect`, { key: f.billingKey, headers: k(), body: { reason: 'payment', paymentReceivedAt: new Date(clock.now()).toISOString() } });
  expect(r.status).toBe(202);
  return r.body.id as string;
};

beforeAll(async () => {
  f = await startGatewayFixture(meters, {}, { clock, extraProfiles: [selfChecking, gatewayChecked] });
  recorder = connect(f.broker.url, { clientId: `ls-recorder-${process.pid}` });
  await new Promise<void>((resolve, reject) => {
    recorder.once('connect', () => recorder.subscribe('meters/+/cmd', { qos: 1 }, (err) => (err ? reject(err) : resolve())));
    recorder.once('error', reject);
  });
  recorder.on('message', (topic, payload) => {
    const body = JSON.parse(payload.toString('utf8')) as { op: string; orderId?: string };
    seen.push({ meterId: topic.split('/')[1]!, op: body.op, ...(body.orderId ? { orderId: body.orderId } : {}) });
  });
  f.fleet.meter('LS-SELF').setFaults({ backfeed: true });
  f.fleet.meter('LS-GW').setFaults({ backfeed: true });
}, 60_000);
afterAll(async () => {
  await recorder?.endAsync();
  await f?.stop();
});

describe('the load-side voltage check before closing (rule 14)', () => {
  it('a meter that checks itself refuses the close: escalated at once with the reason, a priority-1 load_side_voltage work order, the supply answer, timeline and metrics say why, and one close only on the wire, even a day later', async () => {
    const id = await reconnect('LS-SELF');
    const o = await f.waitForOrder(id, ['escalated']);
    expect(o.attempts).toHaveLength(1);
    expect(o.attempts[0].outcome).toBe('load_side_voltage');
    expect(o.stateReason).toMatch(/close refused: \d+(\.\d)? V on the load side \(the meter refused to close\); a bypass, a generator backfeed or tampering/);
    expect(f.fleet.meter('LS-SELF').relay).toBe('disconnected');

    const wo = await openWorkOrder(id);
    expect(wo).toMatchObject({ kind: 'load_side_voltage', action: 'reconnect', priority: 1, meterId: 'LS-SELF' });
    expect(wo.reason).toMatch(/^voltage on the load side: do not close from afar; find the bypass, generator backfeed or tampering and make it safe/);
    expect(Date.parse(wo.dueAt)).toBeLessThan(Date.parse(o.deadline));

    const supply = (await f.http('GET', '/v1/meters/LS-SELF/supply')).body;
    expect(supply).toMatchObject({ status: 'reconnect_refused_load_side', orderId: id });
    expect(supply.sentence).toMatch(/^Reconnect refused: voltage on the load side .* crew sent \(order /);
    expect(supply.sentence).toMatch(/meter refused to close: \d+(\.\d)? V on the load side \(reason "LOAD_SIDE_LIVE"\)/);

    const timeline = (await f.http('GET', '/v1/meters/LS-SELF/timeline')).body.items;
    const attempt = timeline.find((i: any) => i.kind === 'attempt' && i.orderId === id);
    expect(attempt.summary).toMatch(/^attempt 1 of reconnect: load_side_voltage, read back disconnected \(command: load_side_voltage \(meter refused to close: \d+(\.\d)? V on the load side/);
    expect(timeline.some((i: any) => i.kind === 'order' && i.orderId === id && /→ escalated: escalated to the field: voltage on the load side/.test(i.summary))).toBe(true);

    expect(await sample('meterline_switch_attempts_total{protocol="mqtt",action="reconnect",outcome="load_side_voltage"}')).toBe(1);
    expect(closesTo('LS-SELF')).toEqual([{ meterId: 'LS-SELF', op: 'reconnect', orderId: id }]);

    // The control loop runs on for 23 hours of the customer's 24 (slow retries every 30 min, deadline scans):
    // no close is sent again automatically.
    for (let h = 0; h < 23; h++) {
      clock.advance(HOUR);
      await someTicks();
    }
    expect(closesTo('LS-SELF')).toHaveLength(1);
    expect(f.fleet.meter('LS-SELF').received.filter((c) => c.op === 'reconnect')).toHaveLength(1);
    const later = (await f.http('GET', `/v1/orders/${id}`)).body;
    expect(later).toMatchObject({ state: 'escalated' });
    expect(later.attempts).toHaveLength(1);

    // Only a person ends it: the crew made the customer's side safe and closed the relay by hand.
    f.fleet.meter('LS-SELF').setFaults({ backfeed: false });
    f.fleet.meter('LS-SELF').setRelay('connected');
    const crew = (await f.http('POST', '/v1/keys', { key: f.adminKey, headers: k(), body: { name: 'crew-ls', role: 'field' } })).body.key as string;
    const done = await f.http('POST', `/v1/work-orders/${wo.id}/complete`, { key: crew, headers: k(), body: { outcome: 'reconnected', note: 'generator disconnected, relay closed by hand' } });
    expect(done.status).toBe(200);
    expect(done.body.order.state).toBe('done_by_field');
    expect((await f.http('GET', '/v1/meters/LS-SELF/supply')).body.status).toBe('on_supply');
    expect(closesTo('LS-SELF')).toHaveLength(1);
  }, 60_000);

  it('a profile whose gateway checks: the load side is read first and found live, so no close goes on the wire at all; the order goes to the field the same way', async () => {
    const id = await reconnect('LS-GW');
    const o = await f.waitForOrder(id, ['escalated']);
    expect(o.attempts.map((a: any) => a.outcome)).toEqual(['load_side_voltage']);
    expect(o.stateReason).toMatch(/close refused: \d+(\.\d)? V on the load side \(the gateway's check before closing, above 50 V; no close sent\)/);
    const wo = await openWorkOrder(id);
    expect(wo).toMatchObject({ kind: 'load_side_voltage', priority: 1 });
    expect((await f.http('GET', '/v1/meters/LS-GW/supply')).body.status).toBe('reconnect_refused_load_side');

    for (let h = 0; h < 3; h++) {
      clock.advance(HOUR);
      await someTicks();
    }
    // This meter would close if asked (it does not check itself): the gateway never asked.
    expect(closesTo('LS-GW')).toEqual([]);
    expect(f.fleet.meter('LS-GW').received.filter((c) => c.op === 'reconnect')).toEqual([]);
    expect(f.fleet.meter('LS-GW').relay).toBe('disconnected');
    expect(seen.some((c) => c.meterId === 'LS-GW' && c.op === 'read')).toBe(true);
  }, 30_000);

  it('the same profile with a dead load side: read first, then one close, done', async () => {
    const id = await reconnect('LS-GW-CLEAR');
    const o = await f.waitForOrder(id, ['done']);
    expect(o.attempts.map((a: any) => a.outcome)).toEqual(['ok']);
    const ops = seen.filter((c) => c.meterId === 'LS-GW-CLEAR').map((c) => c.op);
    expect(ops.slice(0, 3)).toEqual(['read', 'reconnect', 'read']);
    expect(f.fleet.meter('LS-GW-CLEAR').relay).toBe('connected');
  }, 30_000);
});
