import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDlmsDriver, type DlmsDriver } from '../../drivers/dlms/index.js';
import { DlmsBusSimulator } from '../../simulators/dlms-bus.js';
import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { DlmsLimiterSchema } from '../../src/domain/profiles/dlms-profile.js';
import type { SwitchOrder } from '../../src/domain/switch-order.js';
import { dlmsTestProfiles, passwordEnv, TEST_PASSWORDS } from '../drivers/dlms/fixture.js';
import { startControlLoop, type ControlLoop } from '../harness/control-loop.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * Limit orders (DOMAIN.md rule 10) through the control loop on DLMS: a real SqliteStore and SwitchController, the
 * DLMS driver over a real pty to simulated meters with a class 71 limiter. The order is done only when the read-back,
 * in a fresh association, shows the limit asked for (none, for a removal), and the meter's rule 10 period follows.
 * The MQTT case with the API, payments and the rules is tests/e2e/limit-orders.test.ts.
 */
const LINK = 'rs485-limit-orders';
const { closes, arms } = dlmsTestProfiles(400, 60);
const limiter: DlmsFirmwareProfile = { ...closes, id: 'e570-limiter-orders', dlms: { ...closes.dlms, limiter: DlmsLimiterSchema.parse({}) } };
const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });

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
    meters: [
      { meterId: 'DL-LIM', physicalAddress: 41, controlMode: 2, password: TEST_PASSWORDS.closes, initialRelay: 'connected' },
      { meterId: 'DL-LIAR', physicalAddress: 42, controlMode: 2, password: TEST_PASSWORDS.closes, initialRelay: 'connected' },
    ],
  });
  await bus.start();
  driver = createDlmsDriver({ links: { ports: { [LINK]: { path: pty.gatewayPath, baudRate: 9600, frameRetries: 2 } } }, profiles: [limiter, closes, arms], logger, env: passwordEnv(closes, arms) });
  await driver.start();
  loop = await startControlLoop({
    protocol: 'dlms',
    driver,
    profiles: [limiter, closes, arms],
    meters: [
      { meterId: 'DL-LIM', profileId: limiter.id, link: LINK, region: 'test', address: '41' },
      { meterId: 'DL-LIAR', profileId: limiter.id, link: LINK, region: 'test', address: '42' },
    ],
    linkConcurrency: 2,
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

async function limit(meterId: string, limitW: number | null): Promise<string> {
  const now = Date.now();
  const [out] = await loop.store.submitOrders(
    [{ meterId, action: 'limit', limitW, reason: limitW === null ? 'operator' : 'arrears', note: null, urgent: false, notBefore: null, paymentAt: null, requestedBy: 'dlms-limit', idempotencyKey: `k-${++n}`, requestHash: `h-${n}` }],
    { now, reconnectLimitHours: 24, newOrderId: () => `ord_dlms_limit_${now.toString(36)}_${n}`, policy: openPolicy() },
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

describe('limit orders on DLMS (class 71) through the control loop', () => {
  it('a limit is done when the read-back shows it, and starts the rule 10 period; a removal is done when none is read back, and ends it', async () => {
    const set = await judged(await limit('DL-LIM', 2200), (o) => ['done', 'failed'].includes(o.state));
    expect(set.state).toBe('done');
    expect(bus.meter('DL-LIM').loadLimitW).toBe(2200);
    const [attempt] = await loop.store.listAttempts(set.id);
    expect(attempt).toMatchObject({ outcome: 'ok' });
    const limited = (await loop.store.getMeter('DL-LIM'))!.flags;
    expect(limited.hasLoadLimiter).toBe(true);
    expect(limited.loadLimitedSince).toBe(set.completedAt);

    const lift = await judged(await limit('DL-LIM', null), (o) => ['done', 'failed'].includes(o.state));
    expect(lift.state).toBe('done');
    expect(bus.meter('DL-LIM').loadLimitW).toBeNull();
    expect((await loop.store.getMeter('DL-LIM'))!.flags.loadLimitedSince).toBeNull();
  });

  it('a meter that claims the limit without setting it is caught by the read-back', async () => {
    bus.meter('DL-LIAR').setFaults({ lieAboutSuccess: true });
    const o = await judged(await limit('DL-LIAR', 1800), (x) => x.attempts >= 1 && x.state !== 'in_flight');
    expect(o.state).not.toBe('done');
    const [attempt] = await loop.store.listAttempts(o.id);
    expect(attempt!.outcome).toBe('verify_mismatch');
    expect(bus.meter('DL-LIAR').loadLimitW).toBeNull();
    expect((await loop.store.getMeter('DL-LIAR'))!.flags.loadLimitedSince).toBeNull();
  });
});
