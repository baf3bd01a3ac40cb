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
import type { GatewayStore } from '../../src/store/store.js';
import { eventually } from '../harness/startup-run.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * How the control loop picks an admitted order up (issue 19, request→verified latency): at the admission's wake, not
 * at its next tick; each attempt's meter asked for with its lease rather than in a round trip of its own after it; and
 * still nothing on the wire before the lease is committed. The real loop and SQLite store around an in-memory driver,
 * with a tick far longer than the test.
 */
const shipped = loadFirmwareProfiles(join(process.cwd(), 'firmware-profiles')).get('acme-em340-fw2.4')!;
const profile: FirmwareProfile = { ...shipped, timeouts: { commandMs: 1000, readMs: 1000 }, relay: { ...shipped.relay, operateTimeMs: 0 } };
const METERS = ['PICK-1', 'PICK-2', 'PICK-3'];

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

/** The loop with tickMs 60 s, over a store and a driver that log, in order, what the loop asked and sent. */
async function startLoop(opts: { meters?: string[]; linkConcurrency?: number; gate?: Promise<void> } = {}): Promise<{ store: GatewayStore; controller: SwitchController; events: string[]; dueCalls: () => number }> {
  const meters = opts.meters ?? METERS;
  let dueCalls = 0;
  const dir = mkdtempSync(join(tmpdir(), 'meterline-pickup-'));
  const sqlite = new SqliteStore(join(dir, 'meterline.db'));
  await sqlite.migrate();
  await sqlite.upsertMeters(meters.map((meterId) => ({ meterId, profileId: profile.id, link: 'broker-1', region: 'north' })), Date.now());
  const events: string[] = [];
  const store = new Proxy(sqlite, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver) as unknown;
      if (key === 'getMeter') {
        return (meterId: string) => {
          events.push(`meter asked ${meterId}`);
          return target.getMeter(meterId);
        };
      }
      if (key === 'dueOrders') {
        return (...args: Parameters<GatewayStore['dueOrders']>) => {
          dueCalls++;
          return target.dueOrders(...args);
        };
      }
      if (key === 'beginAttempts') {
        return async (...args: Parameters<GatewayStore['beginAttempts']>) => {
          const taken = await target.beginAttempts(...args);
          for (const o of taken) events.push(`leased ${o.meterId}`);
          return taken;
        };
      }
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  const relay = new Map<string, RelayState>();
  const driver: MeterDriver = {
    protocol: 'mqtt',
    start: async () => {},
    stop: async () => {},
    isLinkUp: () => true,
    async readRelay(m: MeterAddress): Promise<WireResult<RelayReading>> {
      const state = relay.get(m.meterId) ?? 'disconnected';
      return { outcome: 'ok', value: { relay: state, at: Date.now() }, evidence: `{"relay":"${state}"}`, latencyMs: 1 };
    },
    async operateRelay(m: MeterAddress, action: SwitchAction): Promise<WireResult<CommandAck>> {
      events.push(`command ${m.meterId}`);
      await opts.gate;
      relay.set(m.meterId, action === 'disconnect' ? 'disconnected' : 'connected');
      return { outcome: 'ok', value: { claimedRelay: relay.get(m.meterId)! }, evidence: '{"result":"ok"}', latencyMs: 1 };
    },
  };
  const policy = openPolicy();
  const controller = new SwitchController({
    store,
    drivers: new Map([['mqtt', driver]]),
    profiles: new Map([[profile.id, profile]]),
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    options: { tickMs: 60_000, linkConcurrency: opts.linkConcurrency ?? 10, links: {}, shutdownGraceMs: 1000, leaseMs: 30_000 },
    instanceId: 'pickup-test',
    policy,
    payments: new HttpPaymentRechecker(policy.paymentRecheck),
  });
  await controller.start();
  cleanup = async () => {
    await controller.stop();
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { store, controller, events, dueCalls: () => dueCalls };
}

async function admit(store: GatewayStore, controller: SwitchController): Promise<string[]> {
  const now = Date.now();
  let n = 0;
  const out = await store.submitOrders(
    METERS.map((meterId) => ({ meterId, action: 'reconnect' as const, reason: 'payment' as const, note: null, urgent: false, notBefore: null, paymentAt: now, requestedBy: 'billing', idempotencyKey: null, requestHash: meterId })),
    { now, reconnectLimitHours: 24, newOrderId: () => `ord_pickup_${++n}`, policy: openPolicy() },
  );
  controller.wake();
  return out.map((o) => o.order.id);
}

/** Waits (up to 5 s) until every order in `ids` is done. */
const allDone = (store: GatewayStore, ids: readonly string[]) =>
  eventually('every order done', async () => {
    const orders = await Promise.all(ids.map((id) => store.getOrder(id)));
    return orders.every((o) => o?.state === 'done') ? true : undefined;
  }, 5_000);

describe('the control loop picks an admitted order up', () => {
  it('at the admission’s wake, not at its next tick (tickMs 60 s here): every order is done within seconds', async () => {
    const { store, controller } = await startLoop();
    // The start's first tick has run (nothing was due): only the wake can start these before a minute is up.
    await new Promise((r) => setTimeout(r, 50));
    const ids = await admit(store, controller);
    await allDone(store, ids);
  });

  it('with its meter asked for alongside its lease, once, and its command sent only after the lease is committed', async () => {
    const { store, controller, events } = await startLoop();
    await new Promise((r) => setTimeout(r, 50));
    const ids = await admit(store, controller);
    await allDone(store, ids);
    for (const meterId of METERS) {
      const asked = events.indexOf(`meter asked ${meterId}`);
      const leased = events.indexOf(`leased ${meterId}`);
      const command = events.indexOf(`command ${meterId}`);
      expect(events.filter((e) => e === `meter asked ${meterId}`), meterId).toHaveLength(1);
      expect(asked, `${meterId}: ${events.join(', ')}`).toBeGreaterThanOrEqual(0);
      expect(asked, `${meterId}: the meter is asked for before the lease's answer, not after it`).toBeLessThan(leased);
      expect(leased, `${meterId}: durable before acted on`).toBeLessThan(command);
    }
  });
});

describe('admissions hand the loop their orders (issue 19: no due query per admission)', () => {
  const request = (meterId: string, action: 'reconnect' | 'disconnect', urgent = false) => ({
    meterId, action, reason: action === 'reconnect' ? ('payment' as const) : ('customer_request' as const), note: null, urgent, notBefore: null,
    paymentAt: action === 'reconnect' ? Date.now() : null, requestedBy: 'billing', idempotencyKey: null, requestHash: `${meterId}:${action}`, origin: 'api' as const, reference: action === 'disconnect' ? 'REF-1' : null,
  });
  let n = 0;
  const ctx = () => ({ now: Date.now(), reconnectLimitHours: 24, newOrderId: () => `ord_burst_${++n}`, policy: openPolicy() });

  it('with room on the link, each admission is picked from what it handed over: no due query per admission or per finished attempt', async () => {
    const meters = Array.from({ length: 30 }, (_, i) => `KEPT-${i}`);
    const { store, controller, events, dueCalls } = await startLoop({ meters });
    await new Promise((r) => setTimeout(r, 50));
    const before = dueCalls();
    const ids: string[] = [];
    for (const m of meters) {
      const out = await store.submitOrders([request(m, 'reconnect')], ctx());
      controller.wake(out.map((o) => o.order));
      ids.push(out[0]!.order.id);
      await eventually('picked', async () => (events.includes(`command ${m}`) ? true : undefined), 5_000);
    }
    await eventually('every order done', async () => ((await Promise.all(ids.map((id) => store.getOrder(id)))).every((o) => o?.state === 'done') ? true : undefined), 10_000);
    // The start's empty fetch answers for every link until something may have changed it (tickMs is 60 s here).
    expect(dueCalls() - before, '30 admissions, each started and finished').toBeLessThanOrEqual(2);
  });

  it('a burst of admissions behind a full link: few due queries; the urgent one goes first; a superseded buffered one is never sent', async () => {
    const meters = Array.from({ length: 60 }, (_, i) => `BURST-${i}`);
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const { store, controller, events, dueCalls } = await startLoop({ meters, linkConcurrency: 1, gate });
    await new Promise((r) => setTimeout(r, 50));
    // One on the wire (held there by the gate), the next 9 buffered.
    const first = await store.submitOrders(meters.slice(0, 10).map((m) => request(m, 'reconnect')), ctx());
    controller.wake(first.map((o) => o.order));
    await eventually('one on the wire', async () => (events.some((e) => e.startsWith('command')) ? true : undefined), 5_000);
    const before = dueCalls();
    // 49 admissions, one request each (the last one urgent); one of them supersedes a buffered reconnect with a disconnect... a
    // reconnect cannot be overtaken (rule 12), so a newer reconnect for a buffered meter supersedes the buffered one.
    const superseded = first[5]!.order.id;
    const again = await store.submitOrders([request(meters[5]!, 'reconnect')], ctx());
    controller.wake(again.map((o) => o.order));
    expect((await store.getOrder(superseded))!.state).toBe('superseded');
    for (const m of meters.slice(10, 59)) {
      const out = await store.submitOrders([request(m, 'reconnect')], ctx());
      controller.wake(out.map((o) => o.order));
    }
    const urgent = await store.submitOrders([request(meters[59]!, 'reconnect', true)], ctx());
    controller.wake(urgent.map((o) => o.order));
    await new Promise((r) => setTimeout(r, 50));
    expect(dueCalls() - before, 'due queries while 50 admissions arrived behind a full link').toBeLessThanOrEqual(3);
    open();
    const all = [...first, ...again, ...urgent].map((o) => o.order.id);
    await eventually('every order ended', async () => {
      const orders = await Promise.all(all.map((id) => store.getOrder(id)));
      return orders.every((o) => o && ['done', 'superseded'].includes(o.state)) ? true : undefined;
    }, 10_000);
    const commands = events.filter((e) => e.startsWith('command'));
    // The first on the wire was admitted before the urgent one; the urgent one is the next.
    expect(commands[1], commands.join(', ')).toBe(`command ${meters[59]}`);
    const leased = events.filter((e) => e === `leased ${meters[5]}`);
    expect(leased, 'the superseded order is never leased: only its successor').toHaveLength(1);
    expect((await store.getOrder(superseded))!.attempts).toBe(0);
  });
});
