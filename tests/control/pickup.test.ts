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
async function startLoop(): Promise<{ store: GatewayStore; controller: SwitchController; events: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'meterline-pickup-'));
  const sqlite = new SqliteStore(join(dir, 'meterline.db'));
  await sqlite.migrate();
  await sqlite.upsertMeters(METERS.map((meterId) => ({ meterId, profileId: profile.id, link: 'broker-1', region: 'north' })), Date.now());
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
    options: { tickMs: 60_000, linkConcurrency: 10, links: {}, shutdownGraceMs: 1000, leaseMs: 30_000 },
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
  return { store, controller, events };
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

describe('the control loop picks an admitted order up', () => {
  it('at the admission’s wake, not at its next tick (tickMs 60 s here): every order is done within seconds', async () => {
    const { store, controller } = await startLoop();
    // The start's first tick has run (nothing was due): only the wake can start these before a minute is up.
    await new Promise((r) => setTimeout(r, 50));
    const ids = await admit(store, controller);
    await eventually('every order done', async () => {
      const orders = await Promise.all(ids.map((id) => store.getOrder(id)));
      return orders.every((o) => o?.state === 'done') ? true : undefined;
    }, 5_000);
  });

  it('with its meter asked for alongside its lease, once, and its command sent only after the lease is committed', async () => {
    const { store, controller, events } = await startLoop();
    await new Promise((r) => setTimeout(r, 50));
    const ids = await admit(store, controller);
    await eventually('every order done', async () => {
      const orders = await Promise.all(ids.map((id) => store.getOrder(id)));
      return orders.every((o) => o?.state === 'done') ? true : undefined;
    }, 5_000);
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
