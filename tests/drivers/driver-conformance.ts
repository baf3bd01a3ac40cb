import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { MeterAddress, MeterDriver, RequestOptions } from '../../drivers/driver.js';
import type { SimulatedMeter } from '../../simulators/meter-model.js';

/**
 * The one conformance suite every `MeterDriver` must pass (MQTT now; Modbus and DLMS later run the same
 * cases against their own simulators). Each case checks what an operator would: what the driver
 * reports, and what the simulated meter behind it actually did.
 */

export interface DriverFixture {
  driver: MeterDriver;
  /** At least one meter whose remote reconnect closes the relay. */
  closesMeter: MeterAddress;
  /** At least one meter whose remote reconnect only arms the relay. */
  armsMeter: MeterAddress;
  /** The simulated meter behind a meter id. */
  sim(meterId: string): SimulatedMeter;
  /** Request timeout the cases use (keep it short: 300–1000 ms; timeouts are checked to fire within a second of it). */
  timeoutMs: number;
  /** Whether the protocol carries the correlation id and order id to the meter (so its log names them). */
  carriesIds: boolean;
  teardown(): Promise<void>;
}

let seq = 0;
function opts(timeoutMs: number, kind: 'cmd' | 'read', orderId = `conf-${process.pid}-${++seq}`): RequestOptions {
  return { timeoutMs, correlationId: `${orderId}:1:${kind}`, orderId };
}

export function describeDriverConformance(name: string, setup: () => Promise<DriverFixture>): void {
  describe(`MeterDriver conformance: ${name}`, () => {
    let fx: DriverFixture;
    let driver: MeterDriver;
    let closes: MeterAddress;
    let arms: MeterAddress;
    let t: number;

    beforeAll(async () => {
      fx = await setup();
      driver = fx.driver;
      closes = fx.closesMeter;
      arms = fx.armsMeter;
      t = fx.timeoutMs;
    });

    afterAll(async () => {
      await fx?.teardown();
    });

    beforeEach(() => {
      for (const m of [closes, arms]) {
        const sim = fx.sim(m.meterId);
        sim.clearFaults();
        sim.setRelay('connected');
      }
    });

    it('reads the relay state, supply voltage and energy', async () => {
      const res = await driver.readRelay(closes, opts(t, 'read'));
      expect(res.outcome).toBe('ok');
      if (res.outcome !== 'ok') return;
      expect(res.value.relay).toBe('connected');
      expect(res.value.voltageV).toBeGreaterThan(200);
      expect(res.value.energyWh).toBeGreaterThanOrEqual(0);
      expect(res.value.at).toBeGreaterThan(0);
      expect(res.evidence.length).toBeGreaterThan(0);
      expect(res.latencyMs).toBeGreaterThanOrEqual(0);
      expect(res.latencyMs).toBeLessThan(t);
    });

    it('disconnect is acknowledged and a read then shows disconnected', async () => {
      const ack = await driver.operateRelay(closes, 'disconnect', opts(t, 'cmd'));
      expect(ack.outcome).toBe('ok');
      if (ack.outcome === 'ok') expect(ack.value.claimedRelay).toBe('disconnected');
      const read = await driver.readRelay(closes, opts(t, 'read'));
      expect(read.outcome === 'ok' && read.value.relay).toBe('disconnected');
      expect(fx.sim(closes.meterId).relay).toBe('disconnected');
    });

    it("reconnect on a 'closes' meter reads connected", async () => {
      fx.sim(closes.meterId).setRelay('disconnected');
      const ack = await driver.operateRelay(closes, 'reconnect', opts(t, 'cmd'));
      expect(ack.outcome === 'ok' && ack.value.claimedRelay).toBe('connected');
      const read = await driver.readRelay(closes, opts(t, 'read'));
      expect(read.outcome === 'ok' && read.value.relay).toBe('connected');
    });

    it("reconnect on an 'arms' meter reads armed, and connected after the button is pressed", async () => {
      const sim = fx.sim(arms.meterId);
      sim.setRelay('disconnected');
      const ack = await driver.operateRelay(arms, 'reconnect', opts(t, 'cmd'));
      expect(ack.outcome === 'ok' && ack.value.claimedRelay).toBe('armed');
      const armed = await driver.readRelay(arms, opts(t, 'read'));
      expect(armed.outcome === 'ok' && armed.value.relay).toBe('armed');
      expect(sim.pressButton()).toBe(true);
      const closed = await driver.readRelay(arms, opts(t, 'read'));
      expect(closed.outcome === 'ok' && closed.value.relay).toBe('connected');
    });

    it('a meter dropping commands gives a timeout after about the timeout, and the relay did not move', async () => {
      const sim = fx.sim(closes.meterId);
      sim.dropCommands(1);
      const started = Date.now();
      const res = await driver.operateRelay(closes, 'disconnect', opts(t, 'cmd'));
      const elapsed = Date.now() - started;
      expect(res.outcome).toBe('timeout');
      expect(elapsed).toBeGreaterThanOrEqual(t - 5);
      expect(elapsed).toBeLessThan(t + 1000);
      expect(sim.relay).toBe('connected');
      expect(sim.counters.dropped).toBe(1);
      const read = await driver.readRelay(closes, opts(t, 'read'));
      expect(read.outcome === 'ok' && read.value.relay).toBe('connected');
    });

    it('a garbled reply gives garbled with the raw bytes as evidence', async () => {
      const sim = fx.sim(closes.meterId);
      sim.garbleReplies(1);
      const res = await driver.readRelay(closes, opts(t, 'read'));
      expect(res.outcome).toBe('garbled');
      const garbage = sim.lastReply?.garbage;
      expect(garbage).toBeDefined();
      expect(res.evidence?.toLowerCase()).toContain(Buffer.from(garbage!).toString('hex'));
      // The next request is unaffected.
      const next = await driver.readRelay(closes, opts(t, 'read'));
      expect(next.outcome).toBe('ok');
    });

    it('a refused command gives nack and the relay did not move', async () => {
      const sim = fx.sim(closes.meterId);
      sim.nackCommands(1);
      const res = await driver.operateRelay(closes, 'disconnect', opts(t, 'cmd'));
      expect(res.outcome).toBe('nack');
      if (res.outcome !== 'ok') expect(res.detail.length).toBeGreaterThan(0);
      expect(sim.relay).toBe('connected');
    });

    it('an offline meter: reads time out', async () => {
      const sim = fx.sim(closes.meterId);
      sim.offlineUntil(Number.MAX_SAFE_INTEGER);
      const started = Date.now();
      const res = await driver.readRelay(closes, opts(t, 'read'));
      expect(res.outcome).toBe('timeout');
      expect(Date.now() - started).toBeLessThan(t + 1000);
      expect(sim.counters.offline).toBeGreaterThanOrEqual(1);
    });

    it("a lying meter's ack claims the asked state while a read shows the truth", async () => {
      const sim = fx.sim(closes.meterId);
      sim.setFaults({ lieAboutSuccess: true });
      const ack = await driver.operateRelay(closes, 'disconnect', opts(t, 'cmd'));
      expect(ack.outcome === 'ok' && ack.value.claimedRelay).toBe('disconnected');
      const read = await driver.readRelay(closes, opts(t, 'read'));
      expect(read.outcome === 'ok' && read.value.relay).toBe('connected');
    });

    it("a stuck relay's ack reports the unchanged state", async () => {
      fx.sim(closes.meterId).setFaults({ stuckRelay: true });
      const ack = await driver.operateRelay(closes, 'disconnect', opts(t, 'cmd'));
      expect(ack.outcome === 'ok' && ack.value.claimedRelay).toBe('connected');
    });

    it('a supply fault reads connected with no voltage', async () => {
      fx.sim(closes.meterId).setSupplyFault(true);
      const read = await driver.readRelay(closes, opts(t, 'read'));
      expect(read.outcome).toBe('ok');
      if (read.outcome !== 'ok') return;
      expect(read.value.relay).toBe('connected');
      expect(read.value.voltageV).toBe(0);
    });

    it("the meter's log records each command with its correlation id and order id", async () => {
      const sim = fx.sim(arms.meterId);
      const before = sim.received.length;
      const cmd = opts(t, 'cmd', `order-log-${++seq}`);
      const read = { ...cmd, correlationId: `${cmd.orderId}:1:read` };
      expect((await driver.operateRelay(arms, 'disconnect', cmd)).outcome).toBe('ok');
      expect((await driver.readRelay(arms, read)).outcome).toBe('ok');
      const log = sim.received.slice(before);
      expect(log.map((e) => e.op)).toEqual(['disconnect', 'read']);
      if (fx.carriesIds) {
        expect(log[0]).toMatchObject({ cid: cmd.correlationId, orderId: cmd.orderId, fate: 'executed' });
        expect(log[1]).toMatchObject({ cid: read.correlationId, orderId: cmd.orderId });
      }
    });
  });
}
