import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NO_LOAD_SIDE_CHECK } from '../../src/domain/firmware-profile.js';
import { writesOrders } from '../../src/store/order-row-cache.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { AttemptReport, Lease, OrderRequest, SubmitContext } from '../../src/store/store.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * The SQLite store keeps its open orders' rows in memory (issue 19, order-row-cache.ts): whichever write changes an
 * order (one the store follows or any other), its lease and its verdict see the order as it now is, and a write that
 * rolls back leaves nothing of itself behind.
 */
describe('which statements write orders (order-row-cache.ts)', () => {
  it('finds every kind of write to the orders table, and no read nor a write of another table', () => {
    for (const sql of ['UPDATE orders SET x = 1', 'update  "orders" set x = 1', 'INSERT INTO orders (id) VALUES (1)', 'INSERT OR REPLACE INTO main.orders (id) VALUES (1)',
      'REPLACE INTO orders (id) VALUES (1)', 'DELETE FROM orders WHERE id = 1', 'UPDATE OR IGNORE orders SET x = 1', 'WITH a AS (SELECT 1) UPDATE orders SET x = 1', 'UPDATE\n  orders SET x = 1']) {
      expect([sql, writesOrders(sql)]).toEqual([sql, true]);
    }
    for (const sql of ['SELECT * FROM orders', 'INSERT INTO order_events (order_id) VALUES (1)', 'UPDATE orders_archive SET x = 1', 'DELETE FROM client_orders']) {
      expect([sql, writesOrders(sql)]).toEqual([sql, false]);
    }
  });
});

describe('SQLite store: the order rows it keeps follow every change', () => {
  let store: SqliteStore;
  let dbPath: string;
  const H = 3_600_000;
  const RULES = { relay: { remoteReconnect: 'closes' as const, operateTimeMs: 0, loadSideVoltageCheck: NO_LOAD_SIDE_CHECK }, retry: { maxAttempts: 3, baseDelayMs: 0, maxDelayMs: 0 } };
  let now = 1_764_000_000_000;
  let seq = 0;
  const ctx = (): SubmitContext => ({ now, reconnectLimitHours: 24, newOrderId: () => `ord_${String(++seq).padStart(6, '0')}`, policy: openPolicy() });
  const reconnect = (meterId: string): OrderRequest => ({
    meterId, action: 'reconnect', reason: 'payment', note: null, urgent: false, notBefore: null, paymentAt: now,
    requestedBy: 'billing', idempotencyKey: null, requestHash: 'h',
  });
  const lease = (owner = 'gw-a', at = now): Lease => ({ owner, until: at + 30_000 });
  const report = (orderId: string, attempt: number, leaseOwner: string, at: number, ok = true): AttemptReport => ({
    orderId, attempt, leaseOwner, endedAt: at, latencyMs: 10, commandEvidence: null, readEvidence: null,
    observedRelay: ok ? 'connected' : 'disconnected', detail: null, observation: null,
    judgement: { rules: RULES, facts: ok ? { command: 'ok', readBack: 'connected' } : { command: 'timeout', readBack: 'disconnected' }, now: at, random: 0 },
  });

  beforeEach(async () => {
    dbPath = join(mkdtempSync(join(tmpdir(), 'ml-order-cache-')), 'gw.db');
    store = new SqliteStore(dbPath);
    await store.migrate();
    await store.upsertMeters([{ meterId: 'M-1', profileId: 'acme-a', link: 'L1', region: 'north', address: '5' }], now);
  });
  afterEach(async () => {
    await store.close();
  });

  it('a lease taken over by another instance refuses the first holder\'s verdict and takes the new holder\'s', async () => {
    const [created] = await store.submitOrders([reconnect('M-1')], ctx());
    const id = created!.order.id;
    const [leased] = await store.beginAttempts([id], now, lease('gw-a'));
    const later = now + 31_000;
    expect((await store.claimOrphans(lease('gw-b', later), later, 10, false)).map((o) => o.id)).toEqual([id]);
    await expect(store.completeAttempt(report(id, leased!.attempts, 'gw-a', later))).rejects.toMatchObject({ code: 'E_LEASE_LOST' });
    const done = await store.completeAttempt(report(id, leased!.attempts, 'gw-b', later));
    expect(done).toMatchObject({ id, state: 'done', attempts: 1 });
    expect(await store.getOrder(id)).toEqual(done);
  });

  it('an order sent to the field while on the wire (a write the store does not follow: the work order\'s) is verified as escalated: its work order is cancelled', async () => {
    const [created] = await store.submitOrders([reconnect('M-1')], ctx());
    const id = created!.order.id;
    const [leased] = await store.beginAttempts([id], now, lease());
    expect(leased).toMatchObject({ state: 'in_flight', attempts: 1, escalatedAt: null });
    const raised = await store.escalateOrder(id, now + 5, { reason: 'cannot finish remotely in time', dueAt: now + 19 * H, priority: 3 }, now + H);
    expect(raised!.order).toMatchObject({ state: 'in_flight', escalatedAt: now + 5 });
    const done = await store.completeAttempt(report(id, 1, 'gw-a', now + 10));
    expect(done).toMatchObject({ state: 'done', escalatedAt: now + 5 });
    expect(await store.getOrder(id)).toEqual(done);
    expect((await store.listWorkOrders({ orderId: id, limit: 10 })).map((w) => w.status)).toEqual(['cancelled']);
  });

  it('every lease and verdict in a row of retries reads the order as the last one left it', async () => {
    const [created] = await store.submitOrders([reconnect('M-1')], ctx());
    const id = created!.order.id;
    for (let attempt = 1; attempt <= 2; attempt++) {
      const [leased] = await store.beginAttempts([id], now, lease());
      expect(leased).toMatchObject({ state: 'in_flight', attempts: attempt });
      expect(await store.getOrder(id)).toEqual(leased);
      const after = await store.completeAttempt(report(id, attempt, 'gw-a', now, false));
      expect(after).toMatchObject({ state: 'queued', attempts: attempt });
      expect(await store.getOrder(id)).toEqual(after);
    }
    const [third] = await store.beginAttempts([id], now, lease());
    expect(await store.completeAttempt(report(id, 3, 'gw-a', now))).toMatchObject({ state: 'done', attempts: 3 });
    expect(third!.attempts).toBe(3);
    expect((await store.listOrderEvents(id)).map((e) => `${e.from ?? '-'}→${e.to}`)).toEqual([
      '-→accepted', 'accepted→queued', 'queued→in_flight', 'in_flight→queued', 'queued→in_flight', 'in_flight→queued', 'queued→in_flight', 'in_flight→done',
    ]);
  });

  it('a lease that fails rolls back, and the order leases afterwards at attempt 1 as if it never had', async () => {
    const [created] = await store.submitOrders([reconnect('M-1')], ctx());
    const id = created!.order.id;
    // The database refuses the attempt's row (a constraint a bug would break) after the order's row was written.
    const admin = new Database(dbPath);
    admin.exec(`CREATE TRIGGER refuse_attempt BEFORE INSERT ON attempts BEGIN SELECT RAISE(ABORT, 'attempt refused by the test trigger'); END`);
    admin.close();
    await expect(store.beginAttempts([id], now, lease())).rejects.toThrow(/attempt refused by the test trigger/);
    expect(await store.getOrder(id)).toMatchObject({ state: 'queued', attempts: 0 });
    const admin2 = new Database(dbPath);
    admin2.exec('DROP TRIGGER refuse_attempt');
    admin2.close();
    const [leased] = await store.beginAttempts([id], now, lease());
    expect(leased).toMatchObject({ state: 'in_flight', attempts: 1 });
    expect(await store.completeAttempt(report(id, 1, 'gw-a', now))).toMatchObject({ state: 'done', attempts: 1 });
  });

  it('verdicts given at the same moment stand or fall alone, each with its history: the refused one leaves no event, the others keep theirs in order', async () => {
    await store.upsertMeters([{ meterId: 'M-2', profileId: 'acme-a', link: 'L1', region: 'north', address: '6' }, { meterId: 'M-3', profileId: 'acme-a', link: 'L1', region: 'north', address: '7' }], now);
    const created = await store.submitOrders([reconnect('M-1'), reconnect('M-2'), reconnect('M-3')], ctx());
    const ids = created.map((c) => c.order.id);
    expect((await store.beginAttempts(ids, now, lease())).map((o) => o.state)).toEqual(['in_flight', 'in_flight', 'in_flight']);
    const admin = new Database(dbPath);
    // Refused at its last step (the change feed's row, after the order's row and its event were written).
    admin.exec(`CREATE TRIGGER refuse_verdict BEFORE INSERT ON client_feed WHEN NEW.order_id = '${ids[1]}' AND NEW.kind LIKE '%done%' BEGIN SELECT RAISE(ABORT, 'verdict refused by the test trigger'); END`);
    admin.close();
    const verdicts = await Promise.allSettled(ids.map((id) => store.completeAttempt(report(id, 1, 'gw-a', now + 10))));
    expect(verdicts.map((v) => v.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const history = async (id: string) => (await store.listOrderEvents(id)).map((e) => `${e.from ?? '-'}→${e.to}`);
    expect(await history(ids[0]!)).toEqual(['-→accepted', 'accepted→queued', 'queued→in_flight', 'in_flight→done']);
    expect(await history(ids[1]!)).toEqual(['-→accepted', 'accepted→queued', 'queued→in_flight']);
    expect(await history(ids[2]!)).toEqual(['-→accepted', 'accepted→queued', 'queued→in_flight', 'in_flight→done']);
    expect(await store.getOrder(ids[1]!)).toMatchObject({ state: 'in_flight', attempts: 1 });
  });

  it('an order cancelled while another is on the wire is not leased, and the one on the wire is verified', async () => {
    await store.upsertMeters([{ meterId: 'M-2', profileId: 'acme-a', link: 'L1', region: 'north', address: '6' }], now);
    const [mine] = await store.submitOrders([reconnect('M-2')], ctx());
    const cached = await store.beginAttempts([mine!.order.id], now, lease());
    expect(cached.map((o) => o.state)).toEqual(['in_flight']);
    const [order] = await store.submitOrders([{ ...reconnect('M-1'), action: 'disconnect', reason: 'customer_request', reference: 'REQ-1', paymentAt: null }], ctx());
    await store.cancelOrder(order!.order.id, 'ops', 'changed their mind', now);
    expect(await store.beginAttempts([order!.order.id], now, lease())).toEqual([]);
    expect(await store.getOrder(order!.order.id)).toMatchObject({ state: 'cancelled' });
    expect(await store.completeAttempt(report(mine!.order.id, 1, 'gw-a', now))).toMatchObject({ state: 'done' });
  });
});
