import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MeterDriver } from '../../drivers/driver.js';
import { createDlmsDriver } from '../../drivers/dlms/index.js';
import { createModbusDriver } from '../../drivers/modbus/index.js';
import type { SimulatedMeter } from '../../simulators/meter-model.js';
import { DlmsBusSimulator } from '../../simulators/dlms-bus.js';
import { ModbusRtuBus } from '../../simulators/modbus-rtu-bus.js';
import type { FirmwareProfile } from '../../src/domain/firmware-profile.js';
import { DlmsLimiterSchema } from '../../src/domain/profiles/dlms-profile.js';
import type { SwitchOrder } from '../../src/domain/switch-order.js';
import { dlmsTestProfiles, passwordEnv, TEST_PASSWORDS } from '../drivers/dlms/fixture.js';
import { selectBeforeOperateModule } from '../drivers/modbus-test-devices.js';
import { startControlLoop, type ControlLoop } from '../harness/control-loop.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * Limit orders (DOMAIN.md rule 10) through the control loop on the serial protocols: a real SqliteStore and
 * SwitchController, each protocol's driver over a real pty to simulated meters with a limiter (DLMS class 71, a
 * Modbus demand-limit register). The order is done only when the read-back shows the limit asked for (none, for a
 * removal), and the meter's rule 10 period follows. The MQTT case, with the API, payments and the rules, is
 * tests/e2e/limit-orders.test.ts.
 */
const logger = pino({ level: process.env.LIMIT_TEST_LOG ?? 'silent' });
const LINK = 'rs485-limit-orders';

/** One protocol's peers on a pty: two meters with a limiter, LIM-1 and LIM-2, under `profile`. */
interface Rig {
  profiles: FirmwareProfile[];
  profileId: string;
  addresses: [string, string];
  start(pty: PtyPair): Promise<{ driver: MeterDriver; model(meterId: string): SimulatedMeter; stop(): Promise<void> }>;
}

const dlms = (): Rig => {
  const { closes, arms } = dlmsTestProfiles(400, 60);
  const limiter: FirmwareProfile = { ...closes, id: 'e570-limiter-orders', dlms: { ...closes.dlms, limiter: DlmsLimiterSchema.parse({}) } };
  const profiles = [limiter, closes, arms];
  return {
    profiles,
    profileId: limiter.id,
    addresses: ['41', '42'],
    async start(pty) {
      const bus = new DlmsBusSimulator({
        path: pty.devicePath,
        logger,
        meters: [41, 42].map((a, i) => ({ meterId: `LIM-${i + 1}`, physicalAddress: a, controlMode: 2 as const, password: TEST_PASSWORDS.closes, initialRelay: 'connected' as const })),
      });
      await bus.start();
      const driver = createDlmsDriver({ links: { ports: { [LINK]: { path: pty.gatewayPath, baudRate: 9600, frameRetries: 2 } } }, profiles, logger, env: passwordEnv(closes, arms) });
      await driver.start();
      const stop = async () => {
        await driver.stop();
        await bus.stop();
      };
      return { driver, model: (id) => bus.meter(id), stop };
    },
  };
};

const modbus = (): Rig => {
  const module = selectBeforeOperateModule(500);
  return {
    profiles: [module],
    profileId: module.id,
    addresses: ['5', '6'],
    async start(pty) {
      const bus = new ModbusRtuBus({
        path: pty.devicePath,
        baudRate: 19_200,
        parity: 'none',
        devices: [5, 6].map((unitId, i) => ({ unitId, meterId: `LIM-${i + 1}`, profile: module, initialRelay: 'connected' as const })),
      });
      await bus.start();
      const driver = createModbusDriver({ links: { rtu: { [LINK]: { path: pty.gatewayPath, baudRate: 19_200, parity: 'none', frameRetries: 1 } } }, profiles: [module] });
      await driver.start();
      const unit = (id: string) => (id === 'LIM-1' ? 5 : 6);
      const stop = async () => {
        await driver.stop();
        await bus.stop();
      };
      return { driver, model: (id) => bus.device(unit(id)).meter, stop };
    },
  };
};

describe.each([
  { protocol: 'dlms' as const, rig: dlms },
  { protocol: 'modbus' as const, rig: modbus },
])('limit orders on $protocol through the control loop', ({ protocol, rig: makeRig }) => {
  const rig = makeRig();
  let pty: PtyPair;
  let peers: Awaited<ReturnType<Rig['start']>>;
  let loop: ControlLoop;
  let n = 0;

  beforeAll(async () => {
    pty = await startPtyPair();
    peers = await rig.start(pty);
    loop = await startControlLoop({
      protocol,
      driver: peers.driver,
      profiles: rig.profiles,
      meters: rig.addresses.map((address, i) => ({ meterId: `LIM-${i + 1}`, profileId: rig.profileId, link: LINK, region: 'test', address })),
      linkConcurrency: 2,
      logger,
    });
  }, 20_000);

  afterAll(async () => {
    await loop?.stop();
    await peers?.stop();
    if (pty) {
      await pty.stop();
      removePtyDir(pty);
    }
  });

  async function limit(meterId: string, limitW: number | null): Promise<string> {
    const now = Date.now();
    const [out] = await loop.store.submitOrders(
      [{ meterId, action: 'limit', limitW, reason: limitW === null ? 'operator' : 'arrears', note: null, urgent: false, notBefore: null, paymentAt: null, requestedBy: 'limit-e2e', idempotencyKey: `k-${++n}`, requestHash: `h-${n}` }],
      { now, reconnectLimitHours: 24, newOrderId: () => `ord_${protocol}_limit_${now.toString(36)}_${n}`, policy: openPolicy() },
    );
    loop.controller.wake();
    return out!.order.id;
  }

  async function judged(id: string, until: (o: SwitchOrder) => boolean, timeoutMs = 15_000): Promise<SwitchOrder> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const o = await loop.store.getOrder(id);
      if (o && until(o)) return o;
      if (Date.now() > end) throw new Error(`order ${id} still ${o?.state} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  it('a limit is done when the read-back shows it, and starts the rule 10 period; a removal is done when none is read back, and ends it', async () => {
    const set = await judged(await limit('LIM-1', 2200), (o) => ['done', 'failed'].includes(o.state));
    expect(set.state, set.stateReason ?? '').toBe('done');
    expect(peers.model('LIM-1').loadLimitW).toBe(2200);
    expect(peers.model('LIM-1').relay).toBe('connected');
    const [attempt] = await loop.store.listAttempts(set.id);
    expect(attempt).toMatchObject({ outcome: 'ok' });
    const limited = (await loop.store.getMeter('LIM-1'))!.flags;
    expect(limited.hasLoadLimiter).toBe(true);
    expect(limited.loadLimitedSince).toBe(set.completedAt);

    const lift = await judged(await limit('LIM-1', null), (o) => ['done', 'failed'].includes(o.state));
    expect(lift.state, lift.stateReason ?? '').toBe('done');
    expect(peers.model('LIM-1').loadLimitW).toBeNull();
    expect((await loop.store.getMeter('LIM-1'))!.flags.loadLimitedSince).toBeNull();
  });

  it('a meter that claims the limit without setting it is caught by the read-back', async () => {
    peers.model('LIM-2').setFaults({ lieAboutSuccess: true });
    const o = await judged(await limit('LIM-2', 1800), (x) => x.attempts >= 1 && x.state !== 'in_flight');
    expect(o.state).not.toBe('done');
    const [attempt] = await loop.store.listAttempts(o.id);
    expect(attempt!.outcome).toBe('verify_mismatch');
    expect(peers.model('LIM-2').loadLimitW).toBeNull();
    expect((await loop.store.getMeter('LIM-2'))!.flags.loadLimitedSince).toBeNull();
  });
});
