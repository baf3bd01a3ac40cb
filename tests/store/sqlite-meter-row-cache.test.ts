import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NO_LOAD_SIDE_CHECK } from '../../src/domain/firmware-profile.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { Lease, OrderRequest, SubmitContext } from '../../src/store/store.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * The SQLite store keeps recently read meter rows in memory (issue 19): whatever changes a meter, the next order
 * and the next read see the meter as it now is, and a write that rolls back leaves nothing of itself behind.
 */
describe('SQLite store: the meter rows it keeps follow every change', () => {
  let store: SqliteStore;
  let dbPath: string;
  const RULES = { relay: { remoteReconnect: 'closes' as const, operateTimeMs: 0, loadSideVoltageCheck: NO_LOAD_SIDE_CHECK }, retry: { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 } };
  let now = 1_764_000_000_000;
  let seq = 0;
  const ctx = (): SubmitContext => ({ now, reconnectLimitHours: 24, newOrderId: () => `ord_${String(++seq).padStart(6, '0')}`, policy: openPolicy() });
  const reconnect = (meterId: string): OrderRequest => ({
    meterId,
    action: 'reconnect',
    reason: 'payment',
    note: null,
    urgent: false,
    notBefore: null,
    paymentAt: now,
    requestedBy: 'billing',
    idempotencyKey: null,
    requestHash: 'h',
  });
  const lease = (): Lease => ({ owner: 'gw-a', until: now + 30_000 });

  beforeEach(async () => {
    dbPath = join(mkdtempSync(join(tmpdir(), 'ml-meter-cache-')), 'gw.db');
    store = new SqliteStore(dbPath);
    await store.migrate();
    await store.upsertMeters([{ meterId: 'M-1', profileId: 'acme-a', link: 'L1', region: 'north', address: '5' }], now);
  });
  afterEach(async () => {
    await store.close();
  });

  /** Submit, lease and verify a reconnect of M-1; returns the order as leased (what the controller addresses). */
  async function verifiedReconnect(observedAt: number, energyWh: number) {
    const [created] = await store.submitOrders([reconnect('M-1')], ctx());
    const [leased] = await store.beginAttempts([created!.order.id], now, lease());
    await store.completeAttempt({
      orderId: leased!.id, attempt: leased!.attempts, leaseOwner: 'gw-a', endedAt: now, latencyMs: 10, commandEvidence: null, readEvidence: null,
      observedRelay: 'connected', detail: null, observation: { relay: 'connected', at: observedAt, source: 'read', voltageV: 231, energyWh },
      judgement: { rules: RULES, facts: { command: 'ok', readBack: 'connected' }, now, random: 0 },
    });
    return { created: created!.order, leased: leased! };
  }

  it('a meter re-registered on another link and profile is addressed by the new values on its next order', async () => {
    const first = await verifiedReconnect(now, 100);
    expect(first.created.link).toBe('L1');
    expect((await store.getMeter('M-1'))).toMatchObject({ profileId: 'acme-a', link: 'L1', address: '5', region: 'north' });

    now += 60_000;
    await store.upsertMeters([{ meterId: 'M-1', profileId: 'acme-b', link: 'L7', region: 'south', address: '9' }], now);
    const second = await verifiedReconnect(now, 200);
    expect(second.created.link).toBe('L7');
    expect(second.leased.link).toBe('L7');
    expect(await store.getMeter('M-1')).toMatchObject({ profileId: 'acme-b', link: 'L7', address: '9', region: 'south' });
  });

  it('reads, desired states, flags and region imports show at once; an older reading changes nothing', async () => {
    await verifiedReconnect(now, 100);
    expect(await store.getMeter('M-1')).toMatchObject({ observed: { relay: 'connected', at: now, energyWh: 100, voltageV: 231 }, desiredRelay: 'connected' });

    await store.recordObservation('M-1', { relay: 'disconnected', at: now + 5, source: 'push' });
    expect((await store.getMeter('M-1'))!.observed).toEqual({ relay: 'disconnected', at: now + 5, source: 'push', voltageV: 231, energyWh: 100 });
    await store.recordObservation('M-1', { relay: 'connected', at: now - 5, source: 'read', energyWh: 1 });
    expect((await store.getMeter('M-1'))!.observed).toEqual({ relay: 'disconnected', at: now + 5, source: 'push', voltageV: 231, energyWh: 100 });

    await store.setMeterFlags('M-1', { medicalEquipment: true }, 'ops', now);
    expect((await store.getMeter('M-1'))!.flags.medicalEquipment).toBe(true);
    await store.importMeterFacts([{ meterId: 'M-1', region: 'east' }], 'ops', now);
    expect((await store.getMeter('M-1'))!.region).toBe('east');

    const [order] = await store.submitOrders([{ ...reconnect('M-1'), action: 'disconnect', reason: 'customer_request', reference: 'REQ-1', paymentAt: null }], ctx());
    expect(await store.getMeter('M-1')).toMatchObject({ desiredRelay: 'disconnected', desiredOrderId: order!.order.id });
    await store.cancelOrder(order!.order.id, 'ops', 'changed their mind', now);
    expect(await store.getMeter('M-1')).toMatchObject({ desiredRelay: null, desiredOrderId: null });
  });

  it('a verdict that fails rolls its reading back, and the meter reads as before it', async () => {
    await verifiedReconnect(now, 100);
    const [created] = await store.submitOrders([reconnect('M-1')], ctx());
    const [leased] = await store.beginAttempts([created!.order.id], now, lease());
    // The database refuses the verdict (a constraint a bug would break): the store rolls the whole write back.
    const admin = new Database(dbPath);
    admin.exec(`CREATE TRIGGER refuse_verdict BEFORE UPDATE ON orders WHEN NEW.id = '${leased!.id}' AND NEW.state <> 'in_flight' BEGIN SELECT RAISE(ABORT, 'verdict refused by the test trigger'); END`);
    admin.close();
    const failed = store.completeAttempt({
      orderId: leased!.id, attempt: leased!.attempts, leaseOwner: 'gw-a', endedAt: now + 10, latencyMs: 10, commandEvidence: null, readEvidence: null,
      observedRelay: 'disconnected', detail: null, observation: { relay: 'disconnected', at: now + 10, source: 'read', energyWh: 999 },
      judgement: { rules: RULES, facts: { command: 'ok', readBack: 'disconnected' }, now: now + 10, random: 0 },
    });
    await expect(failed).rejects.toThrow(/verdict refused by the test trigger/);
    expect((await store.getMeter('M-1'))!.observed).toMatchObject({ relay: 'connected', at: now, energyWh: 100 });
    expect((await store.listObservations('M-1', 10)).map((o) => o.energyWh)).toEqual([100]);
  });

  it('a swap recorded for a meter is in its swaps from then on; a meter with none has none', async () => {
    expect(await store.listMeterSwaps('M-1', 10)).toEqual([]);
    await store.recordMeterSwap({ meterId: 'M-1', at: now, oldFinalWh: 500, newFirstWh: 0, newSerial: 'S-2', reference: 'WO-1', recordedBy: 'field' }, now);
    expect((await store.listMeterSwaps('M-1', 10)).map((s) => s.oldFinalWh)).toEqual([500]);
    const again = new SqliteStore(store.path);
    await again.migrate();
    try {
      expect((await again.listMeterSwaps('M-1', 10)).map((s) => s.newSerial)).toEqual(['S-2']);
    } finally {
      await again.close();
    }
  });
});
