import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDlmsDriver, type DlmsDriver } from '../../drivers/dlms/index.js';
import { DlmsBusSimulator } from '../../simulators/dlms-bus.js';
import { SwitchController } from '../../src/control/switch-controller.js';
import type { SwitchAction } from '../../src/domain/relay.js';
import type { SwitchOrder } from '../../src/domain/switch-order.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { openPolicy } from '../harness/test-policy.js';
import { dlmsTestProfiles, passwordEnv, TEST_PASSWORDS } from '../drivers/dlms/fixture.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { startControlLoop, type ControlLoop } from '../harness/control-loop.js';

/**
 * The control loop with the DLMS driver over a real pty: a real SqliteStore, the real SwitchController,
 * simulated DLMS meters on one RS-485 bus. Success means verified by a read-back in a fresh association.
 */
const LINK = 'rs485-e2e';
const { closes, arms, all } = dlmsTestProfiles(400, 60);
const policy = openPolicy();
const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });

let dir: string;
let pty: PtyPair;
let bus: DlmsBusSimulator;
let driver: DlmsDriver;
let store: SqliteStore;
let controller: SwitchController;
let loop: ControlLoop;
let n = 0;

const meters = [
  { meterId: 'E2E-MODE1', profile: arms, address: '21', controlMode: 1 as const, password: TEST_PASSWORDS.arms },
  { meterId: 'E2E-MODE2', profile: closes, address: '22', controlMode: 2 as const, password: TEST_PASSWORDS.closes },
  { meterId: 'E2E-DISC', profile: closes, address: '1/23', controlMode: 2 as const, password: TEST_PASSWORDS.closes },
  { meterId: 'E2E-LIAR', profile: closes, address: '24', controlMode: 2 as const, password: TEST_PASSWORDS.closes },
  // Registered under a profile whose reconnect closes, but the meter's own control mode (1) only arms.
  { meterId: 'E2E-MISREG', profile: closes, address: '25', controlMode: 1 as const, password: TEST_PASSWORDS.closes },
];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meterline-dlms-e2e-'));
  pty = await startPtyPair();
  bus = new DlmsBusSimulator({
    path: pty.devicePath,
    logger,
    meters: meters.map((m) => ({ meterId: m.meterId, physicalAddress: Number(m.address.split('/').at(-1)), controlMode: m.controlMode, password: m.password, initialRelay: 'disconnected' as const })),
  });
  await bus.start();
  driver = createDlmsDriver({ links: { ports: { [LINK]: { path: pty.gatewayPath, baudRate: 9600, frameRetries: 2 } } }, profiles: all, logger, env: passwordEnv(closes, arms) });
  await driver.start();
  loop = await startControlLoop({
    protocol: 'dlms',
    driver,
    profiles: all,
    meters: meters.map((m) => ({ meterId: m.meterId, profileId: m.profile.id, link: LINK, region: 'test', address: m.address })),
    linkConcurrency: 4,
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
  rmSync(dir, { recursive: true, force: true });
});

async function order(meterId: string, action: SwitchAction): Promise<string> {
  const now = Date.now();
  const [out] = await store.submitOrders(
    [{ meterId, action, reason: action === 'reconnect' ? 'payment' : 'customer_request', note: null, urgent: false, notBefore: null, paymentAt: action === 'reconnect' ? now : null, requestedBy: 'dlms-e2e', idempotencyKey: `k-${++n}`, requestHash: `h-${n}`, reference: action === 'reconnect' ? null : 'REQ-1' }],
    { now, reconnectLimitHours: 24, newOrderId: () => `ord_dlms_${now.toString(36)}_${n}`, policy },
  );
  controller.wake();
  return out!.order.id;
}

const FINAL = new Set(['done', 'armed', 'failed', 'escalated', 'superseded', 'refused', 'cancelled', 'held']);
async function settled(id: string, timeoutMs = 10_000): Promise<SwitchOrder> {
  let o: SwitchOrder | undefined;
  const until = Date.now() + timeoutMs;
  for (;;) {
    o = await store.getOrder(id);
    if (o && FINAL.has(o.state)) return o;
    if (Date.now() > until) throw new Error(`order ${id} still ${o?.state} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('DLMS switching through the control loop (real pty, SqliteStore, SwitchController)', () => {
  it('a reconnect of a control-mode-1 meter ends armed; after the button the next read shows connected', async () => {
    const o = await settled(await order('E2E-MODE1', 'reconnect'));
    expect(o.state).toBe('armed');
    expect(o.resultRelay).toBe('armed');
    expect(bus.meter('E2E-MODE1').relay).toBe('armed');
    const attempts = await store.listAttempts(o.id);
    expect(attempts.at(-1)?.outcome).toBe('ok');
    expect(JSON.parse(attempts.at(-1)!.commandEvidence!)).toMatchObject({ action: 'remote_reconnect', controlMode: 1, claimedRelay: 'armed' });

    expect(bus.meter('E2E-MODE1').pressButton()).toBe(true); // the customer's manual reconnect (transition e)
    const read = await driver.readRelay({ meterId: 'E2E-MODE1', profile: arms, link: LINK, address: '21' }, { timeoutMs: 400, correlationId: 'after-button' });
    expect(read.outcome === 'ok' && read.value.relay).toBe('connected');
  });

  it('the meter’s control mode decides: a mode-1 meter registered under a mode-2 profile ends armed at its first attempt, and the mismatch is counted', async () => {
    const o = await settled(await order('E2E-MISREG', 'reconnect'));
    expect(o.state).toBe('armed');
    expect(o.attempts).toBe(1);
    const [a] = await store.listAttempts(o.id);
    expect(a).toMatchObject({ outcome: 'ok', observedRelay: 'armed' });
    expect(JSON.parse(a!.commandEvidence!)).toMatchObject({ controlMode: 1, claimedRelay: 'armed' });
    expect(loop.profileMismatches).toContainEqual({ meterId: 'E2E-MISREG', profileId: closes.id, field: 'remote_reconnect' });
    expect(bus.meter('E2E-MISREG').relay).toBe('armed');
  });

  it('a reconnect of a control-mode-2 meter ends done with the read-back connected', async () => {
    const o = await settled(await order('E2E-MODE2', 'reconnect'));
    expect(o.state).toBe('done');
    expect(o.resultRelay).toBe('connected');
    const [a] = await store.listAttempts(o.id);
    expect(a?.outcome).toBe('ok');
    expect(JSON.parse(a!.readEvidence!)).toMatchObject({ relay: 'connected', controlState: 1, server: '1/22' });
    expect(bus.meter('E2E-MODE2').relay).toBe('connected');
  });

  it('a disconnect ends done with the read-back disconnected', async () => {
    bus.meter('E2E-DISC').setRelay('connected');
    const o = await settled(await order('E2E-DISC', 'disconnect'));
    expect(o.state).toBe('done');
    expect(o.resultRelay).toBe('disconnected');
    expect(bus.meter('E2E-DISC').relay).toBe('disconnected');
  });

  it('a meter whose ACTION claims success while the relay stays put is not marked done', async () => {
    const liar = bus.meter('E2E-LIAR');
    liar.setFaults({ lieAboutSuccess: true });
    const o = await settled(await order('E2E-LIAR', 'reconnect'));
    expect(o.state).not.toBe('done');
    // A reconnect whose remote attempts are exhausted goes to the field (DOMAIN.md rule 11).
    expect(o.state).toBe('escalated');
    const attempts = await store.listAttempts(o.id);
    expect(attempts.length).toBe(closes.retry.maxAttempts);
    for (const a of attempts) {
      expect(a.outcome).toBe('verify_mismatch');
      expect(a.observedRelay).toBe('disconnected');
      expect(JSON.parse(a.commandEvidence!)).toMatchObject({ claimedRelay: 'connected' }); // the claim, caught by the read-back
    }
    expect(liar.relay).toBe('disconnected');
  });
});
