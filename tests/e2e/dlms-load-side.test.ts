import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDlmsDriver, type DlmsDriver } from '../../drivers/dlms/index.js';
import { DlmsBusSimulator } from '../../simulators/dlms-bus.js';
import { formatObis } from '../../drivers/dlms/cosem/obis.js';
import { LOAD_SIDE_VOLTAGE_OBIS } from '../../simulators/dlms-meter.js';
import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import type { SwitchOrder } from '../../src/domain/switch-order.js';
import { dlmsAddress, dlmsTestProfiles, passwordEnv, TEST_PASSWORDS } from '../drivers/dlms/fixture.js';
import { startControlLoop, type ControlLoop } from '../harness/control-loop.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * DOMAIN.md rule 14 over DLMS/COSEM (issue 16 item 4): simulated meters on a real pty with a generator backfeeding
 * their load side. The profile names the load-side voltage register (class 3) read with the relay, and the
 * remote_reconnect Action-Result the meter refuses a close with (temporary-failure). Through the real control loop:
 * the refusal is `load_side_voltage`, the reconnect goes to the field at once (priority 1) and no close is sent again;
 * the same Action-Result with a dead load side is an ordinary refusal, retried; a profile whose gateway checks never
 * sends remote_reconnect onto a live load side.
 */
const LINK = 'rs485-ls';
const { closes, arms } = dlmsTestProfiles(400, 60);
const loadSideObis = formatObis(LOAD_SIDE_VOLTAGE_OBIS);
const meterChecks: DlmsFirmwareProfile = {
  ...closes,
  id: `${closes.id}-ls`,
  relay: { ...closes.relay, loadSideVoltageCheck: { checkedBy: 'meter', maxVoltageV: 50 } },
  dlms: { ...closes.dlms, loadSideRefusalResults: ['temporary-failure'], obis: { ...closes.dlms.obis, loadSideVoltage: loadSideObis } },
};
const gatewayChecks: DlmsFirmwareProfile = {
  ...closes,
  id: `${closes.id}-gwcheck`,
  relay: { ...closes.relay, loadSideVoltageCheck: { checkedBy: 'gateway', maxVoltageV: 50 } },
  dlms: { ...closes.dlms, obis: { ...closes.dlms.obis, loadSideVoltage: loadSideObis } },
};
const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });
const policy = openPolicy();

const meters = [
  { meterId: 'DL-SELF', address: '41', profile: meterChecks, checksLoadSide: true },
  { meterId: 'DL-TEMP', address: '42', profile: meterChecks, checksLoadSide: true },
  { meterId: 'DL-GW', address: '43', profile: gatewayChecks, checksLoadSide: false },
];

let pty: PtyPair;
let bus: DlmsBusSimulator;
let driver: DlmsDriver;
let loop: ControlLoop;
let n = 0;

beforeAll(async () => {
  pty = await startPtyPair();
  bus = new DlmsBusSimulator({
    path: pty.devicePath,
    logger,
    meters: meters.map((m) => ({ meterId: m.meterId, physicalAddress: Number(m.address), controlMode: 2 as const, password: TEST_PASSWORDS.closes, initialRelay: 'disconnected' as const, checksLoadSide: m.checksLoadSide })),
  });
  await bus.start();
  driver = createDlmsDriver({ links: { ports: { [LINK]: { path: pty.gatewayPath, baudRate: 9600, frameRetries: 2 } } }, profiles: [meterChecks, gatewayChecks], logger, env: passwordEnv(closes, arms) });
  await driver.start();
  loop = await startControlLoop({
    protocol: 'dlms',
    driver,
    profiles: [meterChecks, gatewayChecks],
    meters: meters.map((m) => ({ meterId: m.meterId, profileId: m.profile.id, link: LINK, region: 'test', address: m.address })),
    linkConcurrency: 1,
    logger,
  });
}, 20_000);

afterAll(async () => {
  await loop?.stop();
  await driver?.stop();
  await bus?.stop();
  if (pty) {
    await pty.stop();
    removePtyDir(pty);
  }
});

async function reconnect(meterId: string): Promise<string> {
  const now = Date.now();
  const [out] = await loop.store.submitOrders(
    [{ meterId, action: 'reconnect', reason: 'payment', note: null, urgent: false, notBefore: null, paymentAt: now, requestedBy: 'ls-e2e', idempotencyKey: `ls-${++n}`, requestHash: `h-${n}`, reference: null }],
    { now, reconnectLimitHours: 24, newOrderId: () => `ord_ls_${now.toString(36)}_${n}`, policy },
  );
  loop.controller.wake();
  return out!.order.id;
}

async function settled(id: string, timeoutMs = 10_000): Promise<SwitchOrder> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const o = await loop.store.getOrder(id);
    if (o && ['done', 'armed', 'failed', 'escalated', 'superseded'].includes(o.state)) return o;
    if (Date.now() > until) throw new Error(`order ${id} still ${o?.state} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const reconnectsReceived = (meterId: string) => bus.busMeter(meterId).meter.received.filter((c) => c.op === 'reconnect').length;

describe('the load-side voltage check over DLMS (rule 14)', () => {
  it('a read gives the load-side register: the backfeed shows on the open relay', async () => {
    bus.busMeter('DL-SELF').meter.setFaults({ backfeed: true });
    const r = await driver.readRelay(dlmsAddress('DL-SELF', meterChecks, LINK, '41'), { timeoutMs: 2000, correlationId: 'ls-read' });
    expect(r.outcome).toBe('ok');
    if (r.outcome !== 'ok') return;
    expect(r.value.relay).toBe('disconnected');
    expect(r.value.loadSideVoltageV).toBeGreaterThan(200);
    expect(JSON.parse(r.evidence).loadSideVoltageV).toBe(r.value.loadSideVoltageV);
  });

  it('the meter refuses remote_reconnect with temporary-failure and voltage in the register: load_side_voltage, escalated at once to a priority-1 work order, no close sent again', async () => {
    bus.busMeter('DL-SELF').meter.setFaults({ backfeed: true });
    const before = reconnectsReceived('DL-SELF');
    const id = await reconnect('DL-SELF');
    const o = await settled(id);
    expect(o.state).toBe('escalated');
    expect(o.attempts).toBe(1);
    expect(o.stateReason).toMatch(/close refused: \d+(\.\d)? V on the load side \(the meter refused to close\)/);
    const [attempt] = await loop.store.listAttempts(id);
    expect(attempt).toMatchObject({ outcome: 'load_side_voltage', observedRelay: 'disconnected' });
    expect(attempt!.detail).toMatch(/meter refused to close: \d+(\.\d)? V on the load side \(remote_reconnect answered temporary-failure/);
    const wo = (await loop.store.listWorkOrders({ limit: 100 })).find((w) => w.orderId === id);
    expect(wo).toMatchObject({ kind: 'load_side_voltage', priority: 1, status: 'open', action: 'reconnect' });
    expect(bus.busMeter('DL-SELF').meter.relay).toBe('disconnected');

    // Well past any retry backoff (20–50 ms) and many ticks: still the one close.
    await new Promise((r) => setTimeout(r, 600));
    expect(reconnectsReceived('DL-SELF') - before).toBe(1);
    expect((await loop.store.getOrder(id))!.attempts).toBe(1);
  });

  it('the same Action-Result with a dead load side is an ordinary refusal: nack, retried, then done', async () => {
    const sim = bus.busMeter('DL-TEMP');
    sim.cosem.faults.temporaryFailures = 1;
    const id = await reconnect('DL-TEMP');
    const o = await settled(id);
    expect(o.state).toBe('done');
    expect((await loop.store.listAttempts(id)).map((a) => a.outcome)).toEqual(['nack', 'ok']);
    expect((await loop.store.listWorkOrders({ limit: 100 })).filter((w) => w.orderId === id)).toEqual([]);
  });

  it('a profile whose gateway checks: the live load side is read first and remote_reconnect is never sent', async () => {
    bus.busMeter('DL-GW').meter.setFaults({ backfeed: true });
    const id = await reconnect('DL-GW');
    const o = await settled(id);
    expect(o.state).toBe('escalated');
    expect(o.stateReason).toContain("(the gateway's check before closing, above 50 V; no close sent)");
    expect((await loop.store.listWorkOrders({ limit: 100 })).find((w) => w.orderId === id)).toMatchObject({ kind: 'load_side_voltage', priority: 1 });
    await new Promise((r) => setTimeout(r, 300));
    expect(reconnectsReceived('DL-GW')).toBe(0);
    expect(bus.busMeter('DL-GW').meter.relay).toBe('disconnected');
  });
});
