import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createModbusDriver, type ModbusDriver } from '../../drivers/modbus/index.js';
import { ModbusRtuBus } from '../../simulators/modbus-rtu-bus.js';
import { SwitchController } from '../../src/control/switch-controller.js';
import type { ModbusFirmwareProfile } from '../../src/domain/firmware-profile.js';
import type { SwitchOrder } from '../../src/domain/switch-order.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { modbusTestProfiles, seededRandom } from '../drivers/modbus-fixtures.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { startControlLoop, type ControlLoop } from '../harness/control-loop.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * One RS-485 bus with 30 unit ids behind the real control loop: a real SqliteStore, the real SwitchController
 * with the Modbus driver, the simulated bus on the far end of a real pty, paced at 19,200 baud, with 5% of the
 * bytes the meters send corrupted. Every reconnect must end verified by a read-back, and the simulator's
 * referee must never have seen two frames on the bus at once.
 */
const LINK = 'rs485-bus-1';
const UNITS = Array.from({ length: 30 }, (_, i) => i + 1);
const policy = openPolicy();
const logger = pino({ level: process.env.MODBUS_TEST_LOG ?? 'silent' });

function fast(p: ModbusFirmwareProfile): ModbusFirmwareProfile {
  return { ...p, relay: { ...p.relay, operateTimeMs: 20 }, retry: { ...p.retry, baseDelayMs: 50, maxDelayMs: 200 } };
}
// A response timeout well above the simulated slaves' answer time even on a starved CPU: the master, the bus and the
// slaves share this process, so under load a slave's timer can fire after the master's, and the master's next request
// would then meet a reply it had given up on (the referee's "overlap"), which says nothing about the driver.
const shipped = modbusTestProfiles(1000);
const breaker = fast(shipped.breaker);
const meter = fast(shipped.meter);
const profileOf = (unit: number): ModbusFirmwareProfile => (unit <= 15 ? breaker : meter);
const meterId = (unit: number): string => `MB-BUS1-${String(unit).padStart(3, '0')}`;

let dir: string;
let pty: PtyPair;
let bus: ModbusRtuBus;
let driver: ModbusDriver;
let store: SqliteStore;
let controller: SwitchController;
let loop: ControlLoop;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meterline-modbus-e2e-'));
  pty = await startPtyPair();
  bus = new ModbusRtuBus({
    path: pty.devicePath,
    baudRate: 19_200,
    parity: 'none',
    paced: true,
    noise: { share: 0.05, on: 'replies' },
    random: seededRandom(2024),
    logger,
    devices: UNITS.map((u) => ({ unitId: u, meterId: meterId(u), profile: profileOf(u), initialRelay: 'disconnected' as const })),
  });
  await bus.start();
  driver = createModbusDriver({ links: { rtu: { [LINK]: { path: pty.gatewayPath, baudRate: 19_200, parity: 'none', frameRetries: 5 } } }, profiles: [breaker, meter], logger });
  await driver.start();
  loop = await startControlLoop({
    protocol: 'modbus',
    driver,
    profiles: [breaker, meter],
    meters: UNITS.map((u) => ({ meterId: meterId(u), profileId: profileOf(u).id, link: LINK, region: 'test', address: String(u) })),
    linkConcurrency: 30,
    logger,
  });
  store = loop.store;
  controller = loop.controller;
}, 20_000);

afterAll(async () => {
  await loop?.stop();
  await driver?.stop();
  await bus?.stop();
  if (pty) {
    await pty.stop();
    removePtyDir(pty);
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function allSettled(ids: readonly string[], timeoutMs: number): Promise<SwitchOrder[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const orders = await Promise.all(ids.map((id) => store.getOrder(id)));
    if (orders.every((o) => o && ['done', 'armed', 'failed'].includes(o.state))) return orders as SwitchOrder[];
    if (Date.now() > until) throw new Error(`not settled: ${orders.filter((o) => !o || !['done', 'armed', 'failed'].includes(o.state)).map((o) => `${o?.id}:${o?.state}`).join(', ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('one Modbus RTU bus, 30 unit ids, through the control loop', () => {
  it('reconnects all 30 with every result verified by a read-back, one frame on the bus at a time, on a noisy line', async () => {
    const now = Date.now();
    const out = await store.submitOrders(
      UNITS.map((u) => ({
        meterId: meterId(u),
        action: 'reconnect' as const,
        reason: 'payment' as const,
        note: null,
        urgent: false,
        notBefore: null,
        paymentAt: now,
        requestedBy: 'modbus-e2e',
        idempotencyKey: `bus1-${u}`,
        requestHash: `h-${u}`,
      })),
      { now, reconnectLimitHours: 24, newOrderId: (() => { let n = 0; return () => `ord_mb_${now.toString(36)}_${++n}`; })(), policy },
    );
    expect(out.map((o) => o.kind)).toEqual(UNITS.map(() => 'created'));
    controller.wake();

    const orders = await allSettled(out.map((o) => o.order.id), 30_000);
    for (const [i, o] of orders.entries()) {
      const unit = UNITS[i]!;
      const expected = profileOf(unit) === breaker ? 'connected' : 'armed';
      expect({ meter: o.meterId, state: o.state, relay: o.resultRelay }).toEqual({ meter: meterId(unit), state: expected === 'connected' ? 'done' : 'armed', relay: expected });
      expect(bus.meter(meterId(unit)).relay).toBe(expected);
      const attempts = await store.listAttempts(o.id);
      expect(attempts.length).toBeGreaterThanOrEqual(1);
      expect(attempts.length).toBe(o.attempts);
      const last = attempts.at(-1)!;
      expect(last.outcome).toBe('ok');
      expect(last.observedRelay).toBe(expected);
      expect(last.readEvidence).toMatch(new RegExp(`^${unit.toString(16).padStart(2, '0')}`)); // the read-back's raw frame, from this unit
      expect(last.commandEvidence).toMatch(new RegExp(`^${unit.toString(16).padStart(2, '0')}(05|06)`)); // the write echo
    }

    // The referee on the bus: never a request while a reply was on the line or inside t3.5 after it.
    expect(bus.violations).toEqual([]);
    expect(bus.counters.violations).toBe(0);
    // The line really was noisy, and the driver re-sent what it corrupted.
    const status = driver.linkStatus()[LINK]!;
    expect(bus.counters.corruptedBytes).toBeGreaterThan(20);
    expect(status.crcErrors + status.garbledFrames).toBeGreaterThan(5);
    expect(status.retries).toBeGreaterThan(5);
    expect(status.losses).toBe(0);
  }, 40_000);
});
