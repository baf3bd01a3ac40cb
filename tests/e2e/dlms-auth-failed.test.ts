import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDlmsDriver, type DlmsDriver } from '../../drivers/dlms/index.js';
import { DlmsBusSimulator } from '../../simulators/dlms-bus.js';
import type { SwitchAction } from '../../src/domain/relay.js';
import type { SwitchOrder } from '../../src/domain/switch-order.js';
import { createGatewayMetrics, type GatewayMetrics } from '../../src/integrations/metrics.js';
import { fixedAuditKey } from '../../src/store/audit-key-source.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import type { GatewayStore } from '../../src/store/store.js';
import { dlmsTestProfiles, passwordEnv, TEST_PASSWORDS } from '../drivers/dlms/fixture.js';
import { startControlLoop, type ControlLoop } from '../harness/control-loop.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * Issue 15: a meter that refuses the gateway's credentials. Simulated DLMS meters on a real pty whose password was
 * changed on site (the gateway still holds the old one): the meter answers every AARQ with an AARE rejected,
 * authentication-failure. Through the real control loop, on SQLite and on PostgreSQL: one attempt only (no retry,
 * no read-back association), the order ends on the refusal with its reason in plain words, a `credentials` work
 * order, the refusal counted per link. A meter that is offline is retried as before.
 */
const LINK = 'rs485-auth';
const { closes, arms, all } = dlmsTestProfiles(400, 60);
const policy = openPolicy();
const logger = pino({ level: process.env.DLMS_TEST_LOG ?? 'silent' });
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schemas: string[] = [];

const meters = [
  { meterId: 'AUTH-RECONNECT', address: '31' },
  { meterId: 'AUTH-DISCONNECT', address: '32' },
  { meterId: 'AUTH-OFFLINE', address: '33' },
];

let pty: PtyPair;
let bus: DlmsBusSimulator;
let driver: DlmsDriver;

beforeAll(async () => {
  pty = await startPtyPair();
  bus = new DlmsBusSimulator({
    path: pty.devicePath,
    logger,
    meters: meters.map((m) => ({ meterId: m.meterId, physicalAddress: Number(m.address), controlMode: 2 as const, password: TEST_PASSWORDS.closes, initialRelay: 'disconnected' as const })),
  });
  await bus.start();
  driver = createDlmsDriver({ links: { ports: { [LINK]: { path: pty.gatewayPath, baudRate: 9600, frameRetries: 2 } } }, profiles: all, logger, env: passwordEnv(closes, arms) });
  await driver.start();
}, 20_000);

afterAll(async () => {
  await driver?.stop();
  await bus?.stop();
  if (pty) {
    await pty.stop();
    removePtyDir(pty);
  }
  if (schemas.length > 0) {
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
    } finally {
      await client.end();
    }
  }
});

/** Put every simulated meter back: the gateway's password, in service, relay as given. */
function resetMeters(): void {
  for (const m of meters) {
    const sim = bus.busMeter(m.meterId);
    sim.cosem.password = TEST_PASSWORDS.closes;
    sim.meter.clearFaults();
  }
}

const STORES: { name: string; open?: () => Promise<GatewayStore> }[] = [
  { name: 'SQLite' },
  {
    name: 'PostgreSQL',
    open: async () => {
      const schema = `ml_auth_${randomBytes(6).toString('hex')}`;
      schemas.push(schema);
      return new PostgresStore({ connectionString: DATABASE_URL, schema, auditKey: fixedAuditKey() });
    },
  },
];

describe.each(STORES)('a meter that refuses the gateway’s credentials, through the control loop ($name)', ({ open }) => {
  let loop: ControlLoop<GatewayStore>;
  let metrics: GatewayMetrics;
  let n = 0;

  beforeAll(async () => {
    metrics = createGatewayMetrics({
      queueDepth: async () => ({}),
      workOrdersByStatus: async () => ({}),
      mostUrgentReconnectSecondsLeft: async () => null,
      successRates: async () => [],
      openCircuitBreakers: async () => 0,
      timeSeries: () => ({ dropped: 0, buffered: 0 }),
      singletonDutyHeld: () => true,
    });
    const base = {
      protocol: 'dlms',
      driver,
      profiles: all,
      meters: meters.map((m) => ({ meterId: m.meterId, profileId: closes.id, link: LINK, region: 'test', address: m.address })),
      linkConcurrency: 1,
      logger,
      // Wired as the gateway wires them (src/gateway/control-wiring.ts).
      hooks: {
        onAuthFailure: (r: { protocol: string; link: string }) => metrics.authFailures.inc({ protocol: r.protocol, link: r.link }),
        onAttempt: (a: { protocol: string; action: string; outcome: string }) => metrics.attempts.inc({ protocol: a.protocol, action: a.action, outcome: a.outcome }),
      },
    };
    loop = open ? await startControlLoop({ ...base, openStore: open }) : await startControlLoop(base);
  }, 20_000);

  afterAll(async () => {
    await loop?.stop();
  });

  async function order(meterId: string, action: SwitchAction): Promise<string> {
    const now = Date.now();
    const [out] = await loop.store.submitOrders(
      [{ meterId, action, reason: action === 'reconnect' ? 'payment' : 'customer_request', note: null, urgent: false, notBefore: null, paymentAt: action === 'reconnect' ? now : null, requestedBy: 'auth-e2e', idempotencyKey: `k-${++n}`, requestHash: `h-${n}`, reference: action === 'reconnect' ? null : 'REQ-1' }],
      { now, reconnectLimitHours: 24, newOrderId: () => `ord_auth_${now.toString(36)}_${n}`, policy },
    );
    loop.controller.wake();
    return out!.order.id;
  }

  async function settled(id: string, timeoutMs = 10_000): Promise<SwitchOrder> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const o = await loop.store.getOrder(id);
      if (o && ['done', 'armed', 'failed', 'escalated', 'superseded', 'refused', 'cancelled'].includes(o.state)) return o;
      if (Date.now() > until) throw new Error(`order ${id} still ${o?.state} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  const sample = async (series: string): Promise<number> => {
    const line = (await metrics.render()).split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? 0 : Number(line.slice(series.length + 1));
  };

  it('a reconnect: one attempt, auth_failed, escalated at once with a credentials work order due before the deadline, no remote attempt after, counted per link', async () => {
    resetMeters();
    const sim = bus.busMeter('AUTH-RECONNECT');
    sim.cosem.password = 'changed-on-site';
    sim.meter.setRelay('disconnected');
    const refusedBefore = sim.cosem.counters.refused;
    const id = await order('AUTH-RECONNECT', 'reconnect');
    const o = await settled(id);

    expect(o.state).toBe('escalated');
    expect(o.attempts).toBe(1);
    expect(o.stateReason).toMatch(/the meter refused the gateway's credentials \(.*authenticationFailure \(13\).*\); retrying with the same keys cannot succeed/);
    expect(o.stateReason).not.toContain(TEST_PASSWORDS.closes);
    const attempts = await loop.store.listAttempts(id);
    expect(attempts.map((a) => a.outcome)).toEqual(['auth_failed']);
    // One association, refused; the read-back was not spent on a second refusal.
    expect(sim.cosem.counters.refused - refusedBefore).toBe(1);
    expect(sim.meter.relay).toBe('disconnected');

    const [wo] = (await loop.store.listWorkOrders({ limit: 100 })).filter((w) => w.orderId === id);
    expect(wo).toMatchObject({ kind: 'credentials', action: 'reconnect', status: 'open', meterId: 'AUTH-RECONNECT' });
    expect(wo!.reason).toMatch(/^meter refuses the gateway's keys: .*check the key file or renew the keys/);
    expect(wo!.dueAt).toBeLessThan(o.deadline!);

    expect(loop.authFailures).toEqual([{ meterId: 'AUTH-RECONNECT', protocol: 'dlms', link: LINK }]);
    expect(await sample(`meterline_auth_failures_total{protocol="dlms",link="${LINK}"}`)).toBe(1);
    expect(await sample('meterline_switch_attempts_total{protocol="dlms",action="reconnect",outcome="auth_failed"}')).toBe(1);

    // Well past any retry backoff (20–50 ms) and several ticks: still one attempt, nothing more went to the meter.
    await new Promise((r) => setTimeout(r, 600));
    expect((await loop.store.getOrder(id))!.attempts).toBe(1);
    expect(sim.cosem.counters.refused - refusedBefore).toBe(1);
  });

  it('a disconnect: one attempt, failed at once with the reason, and a credentials work order saying the disconnect was not done', async () => {
    resetMeters();
    const sim = bus.busMeter('AUTH-DISCONNECT');
    sim.cosem.password = 'changed-on-site';
    sim.meter.setRelay('connected');
    const id = await order('AUTH-DISCONNECT', 'disconnect');
    const o = await settled(id);

    expect(o.state).toBe('failed');
    expect(o.attempts).toBe(1);
    expect(o.stateReason).toMatch(/refused the gateway's credentials.*retrying with the same keys cannot succeed/);
    expect((await loop.store.listAttempts(id)).map((a) => a.outcome)).toEqual(['auth_failed']);
    expect(sim.meter.relay).toBe('connected');
    const [wo] = (await loop.store.listWorkOrders({ limit: 100 })).filter((w) => w.orderId === id);
    expect(wo).toMatchObject({ kind: 'credentials', action: 'disconnect', status: 'open' });
    expect(wo!.reason).toMatch(/the disconnect was not done/);
    expect(await sample(`meterline_auth_failures_total{protocol="dlms",link="${LINK}"}`)).toBe(2);
  });

  it('an unreachable meter behaves as before: every attempt spent (timeouts), then failed; no credentials work order, nothing counted as an auth failure', async () => {
    resetMeters();
    const sim = bus.busMeter('AUTH-OFFLINE');
    sim.meter.setRelay('connected');
    sim.meter.setFaults({ offlineUntil: Date.now() + 60_000 });
    const failuresBefore = loop.authFailures.length;
    const id = await order('AUTH-OFFLINE', 'disconnect');
    const o = await settled(id, 15_000);

    expect(o.state).toBe('failed');
    expect(o.attempts).toBe(closes.retry.maxAttempts);
    expect(o.stateReason).toContain(`${closes.retry.maxAttempts} of ${closes.retry.maxAttempts} attempts used`);
    const attempts = await loop.store.listAttempts(id);
    expect(attempts.map((a) => a.outcome)).toEqual(Array(closes.retry.maxAttempts).fill('timeout'));
    expect((await loop.store.listWorkOrders({ limit: 100 })).filter((w) => w.orderId === id)).toEqual([]);
    expect(loop.authFailures.length).toBe(failuresBefore);
  }, 20_000);
});
