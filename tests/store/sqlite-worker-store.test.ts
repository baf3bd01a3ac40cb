import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MeterlineError } from '../../src/errors.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { FORWARDED_METHODS, SqliteWorkerStore } from '../../src/store/sqlite-worker-store.js';
import { StatementCounter } from '../../src/store/statement-counter.js';
import type { OrderRequest, SubmitContext } from '../../src/store/store.js';
import { sqliteDiskOutage, sqliteTamperKit } from '../harness/small-disk.js';
import { openPolicy } from '../harness/test-policy.js';
import { describeStoreConformance } from './store-conformance.js';

// The worker runs the compiled store (dist/): `npm run build` before these tests.

const workerTamper = sqliteTamperKit((path, options) => new SqliteWorkerStore(path, options));

const newPath = (): string => join(mkdtempSync(join(tmpdir(), 'ml-sqlite-worker-')), 'gw.db');

// The same suite as SqliteStore and PostgresStore pass, against the store on its worker thread.
describeStoreConformance('SQLite on a worker thread', async () => new SqliteWorkerStore(newPath()), workerTamper, sqliteDiskOutage((path) => new SqliteWorkerStore(path)));

const now = 1_764_000_000_000;
const reconnect = (meterId: string): OrderRequest => ({ meterId, action: 'reconnect', reason: 'payment', note: null, urgent: false, notBefore: null, paymentAt: now, requestedBy: 'billing', idempotencyKey: null, requestHash: meterId });

async function openStore(options: ConstructorParameters<typeof SqliteWorkerStore>[1] = {}): Promise<SqliteWorkerStore> {
  const store = new SqliteWorkerStore(newPath(), options);
  await store.migrate();
  await store.upsertMeters([1, 2, 3].map((i) => ({ meterId: `M-${i}`, profileId: 'p', link: 'L1', region: 'north' })), now);
  return store;
}

describe('SQLite store on a worker thread', () => {
  it('forwards every method SqliteStore has (a method added to the store and not forwarded fails here)', () => {
    const own = Object.getOwnPropertyNames(SqliteStore.prototype).filter((m) => m !== 'constructor' && typeof Object.getOwnPropertyDescriptor(SqliteStore.prototype, m)?.value === 'function');
    // SqliteStore's private helpers are no GatewayStore method: they are what is on SqliteStore only.
    const forwarded = new Set([...FORWARDED_METHODS, 'writeHealth', 'close']);
    const store = SqliteWorkerStore.prototype as unknown as Record<string, unknown>;
    for (const m of forwarded) expect(typeof store[m], m).toBe('function');
    // What SqliteStore has and the worker store does not forward must be SqliteStore's private helpers.
    const source = readFileSync(new URL('../../src/store/sqlite-store.ts', import.meta.url), 'utf8');
    const notForwarded = own.filter((m) => !forwarded.has(m));
    expect(notForwarded.filter((m) => !new RegExp(`\\n  private (async )?${m}[<(]`).test(source))).toEqual([]);
    expect([...forwarded].filter((m) => !own.includes(m))).toEqual([]);
  });

  it('keeps error codes across the thread: a MeterlineError comes back as one, with its code, status, message and details', async () => {
    const store = await openStore();
    try {
      const err = await store.cancelOrder('ord_nope', 'ops', 'test', now).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(MeterlineError);
      expect(err).toMatchObject({ code: 'E_ORDER_NOT_FOUND', status: 404, message: 'order ord_nope does not exist' });
      // A plain error (a bug, not the caller's mistake) stays a plain error with its message.
      const plain = await store.completeAttempt({
        orderId: 'ord_nope', attempt: 1, leaseOwner: 'gw-a', endedAt: now, latencyMs: null, commandEvidence: null, readEvidence: null, observedRelay: null, detail: null, observation: null,
        judgement: { rules: { relay: { remoteReconnect: 'closes', operateTimeMs: 0, loadSideVoltageCheck: { checkedBy: 'none', maxVoltageV: 0 } }, retry: { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 } }, facts: { command: 'ok', readBack: 'connected' }, now, random: 0 },
      }).then(() => undefined, (e: unknown) => e);
      expect(plain).toBeInstanceOf(Error);
      expect(plain).not.toBeInstanceOf(MeterlineError);
    } finally {
      await store.close();
    }
  });

  it('answers with what the main thread can use: Sets, Maps, undefined, order ids from the caller’s generator, in call order', async () => {
    const store = await openStore();
    try {
      let n = 0;
      const ctx: SubmitContext = { now, reconnectLimitHours: 24, newOrderId: () => `ord_w${++n}`, policy: openPolicy() };
      // Three calls in one turn: one message, one transaction, answers in order.
      const [outs, missing, ids] = await Promise.all([store.submitOrders([reconnect('M-1'), reconnect('M-2')], ctx), store.getOrder('ord_none'), store.existingMeterIds(['M-1', 'X'])]);
      expect(outs.map((o) => o.order.id)).toEqual(['ord_w1', 'ord_w2']);
      expect(missing).toBeUndefined();
      expect(ids).toEqual(new Set(['M-1']));
      const facts = await store.relayAuditFacts(['M-1', 'M-3']);
      expect(facts).toBeInstanceOf(Map);
      expect(facts.get('M-1')).toMatchObject({ hasOpenOrder: true });
      expect(store.writeHealth()).toEqual({ writable: true, detail: null });
    } finally {
      await store.close();
    }
  });

  it('a crash of its thread fails the calls waiting on it, and every later one, with E_STORE_UNAVAILABLE; none hangs', async () => {
    const store = await openStore();
    const waiting = [store.submitOrders([reconnect('M-1')], { now, reconnectLimitHours: 24, newOrderId: () => 'ord_c1', policy: openPolicy() }), store.listOrders({ limit: 10 })];
    // The thread dies under them (as an abort in native code or an out-of-memory would end it).
    await (store as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    for (const p of waiting) await expect(p).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE', status: 503 });
    await expect(store.getOrder('ord_c1')).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' });
    // /healthz says so (the control loop retries its writes while the store is unavailable).
    expect(store.writeHealth()).toMatchObject({ writable: false, detail: expect.stringContaining('its thread ended') });
    await store.close();
  });

  it('a file it cannot open says so (E_STORE_OPEN) through ready() and every call, as SqliteStore says it at construction', async () => {
    const store = new SqliteWorkerStore(mkdtempSync(join(tmpdir(), 'ml-sqlite-worker-dir-'))); // a directory
    await expect(store.ready()).rejects.toMatchObject({ code: 'E_STORE_OPEN' });
    await expect(store.migrate()).rejects.toMatchObject({ code: 'E_STORE_OPEN' });
    await store.close();
  });

  it('counts its statements on its thread and hands the counts to the counter it was given', async () => {
    const counter = new StatementCounter();
    const store = await openStore({ countStatements: counter });
    try {
      counter.reset();
      await store.submitOrders([reconnect('M-1')], { now, reconnectLimitHours: 24, newOrderId: () => 'ord_s1', policy: openPolicy() });
      await counter.pull();
      const snap = counter.snapshot();
      expect(snap.byStatement.some((s) => s.statement.startsWith('INSERT INTO orders'))).toBe(true);
      expect(snap.total).toBeGreaterThan(1);
    } finally {
      await store.close();
    }
  });
});
