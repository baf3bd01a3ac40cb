import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { CommandAck, MeterAddress, MeterDriver, RelayReading, WireResult } from '../../drivers/driver.js';
import { systemClock } from '../../src/control/clock.js';
import { SwitchController } from '../../src/control/switch-controller.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { FirmwareProfile } from '../../src/domain/firmware-profile.js';
import type { RelayState, SwitchAction } from '../../src/domain/relay.js';
import { HttpPaymentRechecker } from '../../src/integrations/billing-recheck.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { GatewayStore, OrderRequest } from '../../src/store/store.js';
import { eventually } from '../harness/startup-run.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * The control loop leases no more of a link's orders while its driver has requests waiting for a slot in its window
 * (issue 19): they wait as due orders, in priority order, with no lease running, instead of in the driver's
 * first-come queue. The real loop and SQLite store around an in-memory driver with a window of two requests whose
 * commands are held until the test lets them go.
 */
const shipped = loadFirmwareProfiles(join(process.cwd(), 'firmware-profiles')).get('acme-em340-fw2.4')!;
const profile: FirmwareProfile = { ...shipped, timeouts: { commandMs: 10_000, readMs: 10_000 }, relay: { ...shipped.relay, operateTimeMs: 0 } };
const WINDOW = 2;

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

/** A driver with a window of WINDOW requests; commands are answered only once `release()` is called. */
function windowedDriver() {
  const relay = new Map<string, RelayState>();
  let inFlight = 0;
  const waiting: (() => void)[] = [];
  let held = true;
  const heldCommands: (() => void)[] = [];
  const commanded: string[] = [];
  const slot = async <T>(work: () => Promise<T>): Promise<T> => {
    if (inFlight >= WINDOW) await new Promise<void>((r) => waiting.push(r));
    else inFlight++;
    try {
      return await work();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else inFlight--;
    }
  };
  const driver: MeterDriver = {
    protocol: 'mqtt',
    start: async () => {},
    stop: async () => {},
    isLinkUp: () => true,
    hasBacklog: () => waiting.length > 0,
    readRelay: (m: MeterAddress) =>
      slot(async (): Promise<WireResult<RelayReading>> => {
        const state = relay.get(m.meterId) ?? 'disconnected';
        return { outcome: 'ok', value: { relay: state, at: Date.now() }, evidence: `{"relay":"${state}"}`, latencyMs: 1 };
      }),
    operateRelay: (m: MeterAddress, action: SwitchAction) =>
      slot(async (): Promise<WireResult<CommandAck>> => {
        commanded.push(m.meterId);
        if (held) await new Promise<void>((r) => heldCommands.push(r));
        relay.set(m.meterId, action === 'disconnect' ? 'disconnected' : 'connected');
        return { outcome: 'ok', value: { claimedRelay: relay.get(m.meterId)! }, evidence: '{"result":"ok"}', latencyMs: 1 };
      }),
  };
  return {
    driver,
    commanded,
    backlog: () => waiting.length,
    release: () => {
      held = false;
      for (const r of heldCommands.splice(0)) r();
    },
  };
}

const reconnect = (meterId: string, urgent = false): OrderRequest => ({ meterId, action: 'reconnect', reason: 'payment', note: null, urgent, notBefore: null, paymentAt: Date.now(), requestedBy: 'billing', idempotencyKey: null, requestHash: meterId });

async function startLoop(meters: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'meterline-backlog-'));
  const sqlite = new SqliteStore(join(dir, 'meterline.db'));
  await sqlite.migrate();
  await sqlite.upsertMeters(meters.map((meterId) => ({ meterId, profileId: profile.id, link: 'broker-1', region: 'north' })), Date.now());
  let dueFetches = 0;
  const store = new Proxy(sqlite, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver) as unknown;
      if (key === 'dueOrders') {
        return (...args: Parameters<GatewayStore['dueOrders']>) => {
          dueFetches++;
          return target.dueOrders(...args);
        };
      }
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  const wire = windowedDriver();
  const policy = openPolicy();
  const controller = new SwitchController({
    store,
    drivers: new Map([['mqtt', wire.driver]]),
    profiles: new Map([[profile.id, profile]]),
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    options: { tickMs: 60_000, linkConcurrency: 20, links: {}, shutdownGraceMs: 1000, leaseMs: 30_000 },
    instanceId: 'backlog-test',
    policy,
    payments: new HttpPaymentRechecker(policy.paymentRecheck),
  });
  await controller.start();
  cleanup = async () => {
    wire.release();
    await controller.stop();
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  };
  let n = 0;
  const admit = async (requests: OrderRequest[]): Promise<string[]> => {
    const now = Date.now();
    const out = await store.submitOrders(requests, { now, reconnectLimitHours: 24, newOrderId: () => `ord_backlog_${Date.now()}_${++n}`, policy });
    controller.wake();
    return out.map((o) => o.order.id);
  };
  return { store, wire, admit, dueFetches: () => dueFetches };
}

describe('the control loop and a driver whose window is full', () => {
  it('leases no more while requests wait for the window; an urgent reconnect admitted then goes on the wire before the orders admitted ahead of it', async () => {
    const meters = ['BL-1', 'BL-2', 'BL-3', 'BL-4', 'BL-5', 'BL-6', 'BL-URGENT'];
    const { store, wire, admit, dueFetches } = await startLoop(meters);
    // Three orders: all leased in one tick (nothing waits yet); two take the window, the third waits for it.
    const first = await admit(['BL-1', 'BL-2', 'BL-3'].map((m) => reconnect(m)));
    await eventually('a request waiting for the window', async () => (wire.backlog() > 0 ? true : undefined), 5_000);
    expect(wire.commanded).toHaveLength(WINDOW);

    // Three more, then an urgent one: the loop looks (a due fetch after the wake) and leases none of them.
    const later = await admit(['BL-4', 'BL-5', 'BL-6'].map((m) => reconnect(m)));
    const fetched = dueFetches();
    const [urgent] = await admit([reconnect('BL-URGENT', true)]);
    await eventually('the loop looked again', async () => (dueFetches() > fetched ? true : undefined), 5_000);
    await new Promise((r) => setImmediate(r));
    for (const id of [...later, urgent!]) expect((await store.getOrder(id))?.state, id).toBe('queued');

    // The window frees: the urgent reconnect is the first of the waiting orders on the wire, and every order ends done.
    wire.release();
    await eventually('every order done', async () => {
      const orders = await Promise.all([...first, ...later, urgent!].map((id) => store.getOrder(id)));
      return orders.every((o) => o?.state === 'done') ? true : undefined;
    }, 10_000);
    const afterFirst = wire.commanded.slice(3);
    expect(afterFirst[0], wire.commanded.join(', ')).toBe('BL-URGENT');
    expect(new Set(wire.commanded)).toEqual(new Set(meters));
  });
});
