import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SuccessRateMonitor, type SuccessRateConfig } from '../../src/control/success-rate-monitor.js';
import { NO_LOAD_SIDE_CHECK } from '../../src/domain/firmware-profile.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { FakeClock } from '../harness/fake-clock.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * Link-wide success-rate alerts (issue 17): three dead meters on a link are three meter faults, not a link fault,
 * and one episode is one alert per scope, not one per window and kind of rate. Real SQLite store, fake clock.
 */
const T0 = 1_764_000_000_000;
const config: SuccessRateConfig = { windowMinutes: [15, 60], alertBelow: 0.95, minSamples: 5, minDistinctMeters: 5, breakerBelow: 0, breakerMinSamples: 1_000_000, evaluateEveryMs: 10_000 };
const profile = { relay: { remoteReconnect: 'closes' as const, operateTimeMs: 0, loadSideVoltageCheck: NO_LOAD_SIDE_CHECK }, retry: { maxAttempts: 1, baseDelayMs: 1000, maxDelayMs: 1000 } };

let dir: string;
let store: SqliteStore;
let clock: FakeClock;
let seq = 0;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ml-sr-'));
  store = new SqliteStore(join(dir, 'gw.db'));
  await store.migrate();
  clock = new FakeClock(T0);
  const meters = [];
  for (let i = 1; i <= 40; i++) meters.push({ meterId: `M-${String(i).padStart(2, '0')}`, profileId: 'p', link: 'L1', region: 'north' });
  await store.upsertMeters(meters, T0);
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Reconnect each meter once; the ones in `dead` time out (one attempt allowed, so the order fails). */
async function reconnectAll(meterIds: readonly string[], dead: ReadonlySet<string>): Promise<void> {
  const now = clock.now();
  const outs = await store.submitOrders(
    meterIds.map((meterId) => ({ meterId, action: 'reconnect', reason: 'payment', note: null, urgent: false, notBefore: null, paymentAt: now, requestedBy: 'billing', idempotencyKey: null, requestHash: `${meterId}-${now}` })),
    { now, reconnectLimitHours: 24, newOrderId: () => `ord_${String(++seq).padStart(6, '0')}`, policy: openPolicy() },
  );
  for (const { order } of outs) {
    await store.beginAttempts([order.id], now, { owner: 'gw-a', until: now + 30_000 });
    const bad = dead.has(order.meterId);
    await store.completeAttempt({
      orderId: order.id, attempt: 1, leaseOwner: 'gw-a', endedAt: now, latencyMs: 10, commandEvidence: null, readEvidence: null,
      observedRelay: bad ? null : 'connected', detail: null, observation: null,
      judgement: { rules: profile, facts: bad ? { command: 'timeout', readBack: undefined } : { command: 'ok', readBack: 'connected' }, now, random: 0 },
    });
  }
}

const meterIds = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `M-${String(from + i).padStart(2, '0')}`);
const successRateAlerts = async () => (await store.listAlerts(1000)).filter((a) => a.kind === 'alert.success_rate');

describe('success-rate alerts by distinct meters', () => {
  it('three dead meters on a link (three times each) raise no link-, profile- or region-wide alert, though the rate is far below 95%', async () => {
    const monitor = new SuccessRateMonitor(store, clock, config, pino({ level: 'silent' }));
    const dead = new Set(meterIds(1, 3));
    for (let round = 0; round < 3; round++) {
      await reconnectAll(meterIds(1, 10), dead);
      clock.advance(60_000);
      await monitor.evaluate();
    }
    const report = monitor.latest();
    const link = report.rates.find((r) => r.scope === 'link' && r.key === 'L1' && r.kind === 'attempt' && r.windowMinutes === 15)!;
    expect(link).toMatchObject({ ok: 21, total: 30, failingMeters: 3 });
    expect(report.alerting).toEqual([]);
    expect(await successRateAlerts()).toEqual([]);
  });

  it('failures on six meters: one alert per scope (link, profile, region) for the episode, not one per window and kind, and none again while it lasts, after a restart too', async () => {
    const monitor = new SuccessRateMonitor(store, clock, config, pino({ level: 'silent' }));
    const dead = new Set(meterIds(1, 6));
    for (let round = 0; round < 3; round++) {
      await reconnectAll(meterIds(1, 20), dead);
      clock.advance(60_000);
      await monitor.evaluate();
    }
    // Both windows and all three kinds of rate are below the threshold: 2 × 3 rates per scope, one alert each.
    expect(monitor.latest().alerting.filter((r) => r.scope === 'link')).toHaveLength(6);
    const alerts = await successRateAlerts();
    expect(alerts.map((a) => `${(a.payload as { scope: string }).scope} ${(a.payload as { key: string }).key}`).sort()).toEqual(['link L1', 'profile p', 'region north']);
    expect(alerts[0]!.payload).toMatchObject({ action: 'reconnect', failingMeters: 6 });

    // A restarted gateway (a new monitor on the same store) knows the episode is alerted already.
    const restarted = new SuccessRateMonitor(store, clock, config, pino({ level: 'silent' }));
    clock.advance(60_000);
    await reconnectAll(meterIds(1, 20), dead);
    expect((await restarted.evaluate()).alerting.length).toBeGreaterThan(0);
    expect(await successRateAlerts()).toHaveLength(3);

    // The episode ends when every rate has recovered (the failures leave both windows), and a new one alerts once again.
    clock.advance(61 * 60_000);
    await reconnectAll(meterIds(1, 20), new Set());
    await restarted.evaluate();
    expect((await store.listAlerts(1000)).filter((a) => a.kind === 'alert.success_rate_recovered')).toHaveLength(3);
    await reconnectAll(meterIds(1, 20), dead);
    await reconnectAll(meterIds(1, 20), dead);
    await restarted.evaluate();
    expect(await successRateAlerts()).toHaveLength(6);
  });
});
