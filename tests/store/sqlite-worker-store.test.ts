import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { MeterlineError } from '../../src/errors.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { FORWARDED_METHODS, SqliteWorkerStore, type StoreThreadLog } from '../../src/store/sqlite-worker-store.js';
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

/** The store's thread now (to end it as a crash would). */
const threadOf = (store: SqliteWorkerStore): { terminate(): Promise<number> } => (store as unknown as { worker: { terminate(): Promise<number> } }).worker;

/** A logger that keeps what it is told. */
function captureLog(): StoreThreadLog & { lines: { level: 'error' | 'info'; obj: Record<string, unknown>; msg: string }[] } {
  const lines: { level: 'error' | 'info'; obj: Record<string, unknown>; msg: string }[] = [];
  return {
    lines,
    error: (obj, msg) => lines.push({ level: 'error', obj: obj as Record<string, unknown>, msg }),
    info: (obj, msg) => lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg }),
  };
}

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

  it('a crash of its thread fails the calls waiting on it with E_STORE_UNAVAILABLE (outcome unknown); a new thread answers the later ones and sees what was committed', async () => {
    const log = captureLog();
    const store = await openStore({ logger: log, restart: { firstMs: 20 } });
    try {
      await store.submitOrders([reconnect('M-2')], { now, reconnectLimitHours: 24, newOrderId: () => 'ord_c0', policy: openPolicy() });
      const waiting = [store.submitOrders([reconnect('M-1')], { now, reconnectLimitHours: 24, newOrderId: () => 'ord_c1', policy: openPolicy() }), store.listOrders({ limit: 10 })];
      // The thread dies under them (as an abort in native code or an out-of-memory would end it).
      await threadOf(store).terminate();
      for (const p of waiting) await expect(p).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE', status: 503, details: { committed: 'unknown' } });
      // /healthz says so until the new thread answers (the control loop retries its writes meanwhile).
      expect(store.writeHealth()).toMatchObject({ writable: false, detail: expect.stringContaining('its thread ended') });
      // A call made now waits for the new thread, which opens the same file: the order committed before the crash is there.
      expect(await store.getOrder('ord_c0')).toMatchObject({ id: 'ord_c0', meterId: 'M-2', state: 'queued' });
      expect(store.writeHealth()).toEqual({ writable: true, detail: null });
      expect(store.threadRestarts).toBe(1);
      // Writes go on, on the new thread; the admission the crash cut off may or may not have landed: retried with its
      // idempotency key, it is admitted once.
      const keyed = { ...reconnect('M-1'), idempotencyKey: 'k-crash' };
      const [first] = await store.submitOrders([keyed], { now, reconnectLimitHours: 24, newOrderId: () => 'ord_c2', policy: openPolicy() });
      const [again] = await store.submitOrders([keyed], { now, reconnectLimitHours: 24, newOrderId: () => 'ord_c3', policy: openPolicy() });
      expect(again!.order.id).toBe(first!.order.id);
      // The death, then the restart, in the log.
      expect(log.lines.map((l) => l.level)).toEqual(['error', 'info']);
      expect(log.lines[0]).toMatchObject({ obj: { cause: expect.stringContaining('exit code 1'), failedCalls: 2, restartInMs: 20 } });
      expect(log.lines[1]).toMatchObject({ obj: { restarts: 1 }, msg: expect.stringContaining('running again') });
    } finally {
      await store.close();
    }
  });

  it('a thread that dies again at once (it cannot open the file) is started again after longer and longer waits, not in a loop, and heals once it can', async () => {
    const log = captureLog();
    const store = await openStore({ logger: log, restart: { firstMs: 10, maxMs: 40 } });
    const dir = dirname(store.path);
    const aside = join(dir, 'aside');
    try {
      await store.submitOrders([reconnect('M-1')], { now, reconnectLimitHours: 24, newOrderId: () => 'ord_o1', policy: openPolicy() });
      await threadOf(store).terminate();
      // The file goes away and a directory takes its place: every new thread fails to open it.
      mkdirSync(aside);
      for (const f of ['gw.db', 'gw.db-wal', 'gw.db-shm']) if (existsSync(join(dir, f))) renameSync(join(dir, f), join(aside, f));
      mkdirSync(store.path);
      await vi.waitFor(() => expect(log.lines.length).toBeGreaterThanOrEqual(6), { timeout: 5000, interval: 5 });
      const deaths = log.lines.filter((l) => l.level === 'error');
      expect(deaths.slice(0, 5).map((l) => l.obj.restartInMs)).toEqual([10, 20, 40, 40, 40]);
      expect(deaths[1]!.obj.cause).toContain('could not open the file');
      expect(store.writeHealth().writable).toBe(false);
      // The file is back: the next thread opens it and the order is there.
      rmdirSync(store.path);
      for (const f of readdirSync(aside)) renameSync(join(aside, f), join(dir, f));
      await vi.waitFor(() => expect(log.lines.at(-1)!.level).toBe('info'), { timeout: 5000, interval: 5 });
      expect(await store.getOrder('ord_o1')).toMatchObject({ id: 'ord_o1' });
      expect(store.writeHealth().writable).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('a call made while the next thread is further off than the wait fails at once with E_STORE_UNAVAILABLE; one that waits longer than the wait fails then', async () => {
    const store = await openStore({ restart: { firstMs: 60_000, waitMs: 1000 } });
    try {
      await threadOf(store).terminate();
      const asked = performance.now();
      await expect(store.getOrder('ord_x')).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE', message: expect.stringContaining('retry in 5 s') });
      expect(performance.now() - asked).toBeLessThan(500);
    } finally {
      await store.close();
    }
    // A new thread that does not answer in time (it cannot open the file): the calls held for it fail after the wait.
    const slow = await openStore({ restart: { firstMs: 5, maxMs: 5, waitMs: 50 } });
    try {
      await threadOf(slow).terminate();
      rmSync(slow.path);
      mkdirSync(slow.path);
      const asked = performance.now();
      await expect(slow.getOrder('ord_x')).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' });
      expect(performance.now() - asked).toBeGreaterThanOrEqual(45);
    } finally {
      await slow.close();
    }
  });

  it('close() while its thread is being started again ends cleanly: the calls held fail, no thread is started after', async () => {
    // Closed while waiting to start the next thread.
    const waitingStore = await openStore({ restart: { firstMs: 50 } });
    await threadOf(waitingStore).terminate();
    const held = expect(waitingStore.getOrder('ord_x')).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' });
    await waitingStore.close();
    await held;
    await new Promise((r) => setTimeout(r, 100));
    expect(waitingStore.threadRestarts).toBe(0);
    await expect(waitingStore.getOrder('ord_x')).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' });
    // Closed while the next thread is starting (not answered yet).
    const startingStore = await openStore({ restart: { firstMs: 1 } });
    await threadOf(startingStore).terminate();
    await vi.waitFor(() => expect(startingStore.threadRestarts).toBe(1), { timeout: 2000, interval: 1 });
    const heldToo = expect(startingStore.getOrder('ord_x')).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' });
    await startingStore.close();
    await heldToo;
  });

  it('restart: false keeps the old behaviour: after a crash every call fails with E_STORE_UNAVAILABLE; none hangs', async () => {
    const store = await openStore({ restart: false });
    const waiting = store.listOrders({ limit: 10 });
    await threadOf(store).terminate();
    await expect(waiting).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE', status: 503 });
    await expect(store.getOrder('ord_c1')).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' });
    expect(store.writeHealth()).toMatchObject({ writable: false, detail: expect.stringContaining('its thread ended') });
    await store.close();
  });

  it('asked for its write health after a second with no call, answers it and stays up (a synchronous method once killed the thread)', async () => {
    const store = await openStore();
    try {
      // A second with no answer, as when the health check polls an idle gateway (or a stalled loop): the next
      // writeHealth() asks the worker in the background.
      const real = performance.now.bind(performance);
      const later = vi.spyOn(performance, 'now').mockImplementation(() => real() + 5_000);
      expect(store.writeHealth()).toMatchObject({ writable: true });
      later.mockRestore();
      // The thread is still there: calls after the background ask are answered, and health stays writable.
      await store.submitOrders([reconnect('M-1')], { now, reconnectLimitHours: 24, newOrderId: () => 'ord_h1', policy: openPolicy() });
      expect(await store.getOrder('ord_h1')).toMatchObject({ id: 'ord_h1', meterId: 'M-1' });
      expect(store.writeHealth()).toMatchObject({ writable: true });
    } finally {
      await store.close();
    }
  });

  it('a file it cannot open says so (E_STORE_OPEN) through ready() and every call, as SqliteStore says it at construction', async () => {
    const store = new SqliteWorkerStore(mkdtempSync(join(tmpdir(), 'ml-sqlite-worker-dir-'))); // a directory
    await expect(store.ready()).rejects.toMatchObject({ code: 'E_STORE_OPEN' });
    await expect(store.migrate()).rejects.toMatchObject({ code: 'E_STORE_OPEN' });
    await store.close();
  });

  it("answers the control loop's calls (sent compact across the thread) exactly as SqliteStore does: same keys, same order, same values", async () => {
    // The same calls against SqliteStore on this thread and against the worker store; their answers as JSON (key order counts).
    const run = async (store: SqliteStore | SqliteWorkerStore): Promise<string[]> => {
      await store.migrate();
      await store.upsertMeters([1, 2, 3].map((i) => ({ meterId: `M-${i}`, profileId: 'p', link: 'L1', region: 'north', ...(i === 2 ? { address: 'A-2', accountId: 'acct-2' } : {}) })), now);
      let n = 0;
      const ctx: SubmitContext = { now, reconnectLimitHours: 24, newOrderId: () => `ord_x${++n}`, policy: openPolicy() };
      const answers: unknown[] = [];
      answers.push(await store.submitOrders([reconnect('M-1'), reconnect('M-2'), reconnect('M-3')], ctx));
      answers.push(await store.dueOrders(now, 10, []), await store.dueOrders(now, 10, ['L1']));
      const lease = { owner: 'gw-a', until: now + 60_000 };
      answers.push(await store.beginAttempts(['ord_x1', 'ord_x2', 'ord_x3', 'ord_none'], now, lease), await store.beginAttempts([], now, lease));
      answers.push(await store.getMeter('M-1'), await store.getMeter('M-2'), await store.getMeter('M-none'));
      const rules = { relay: { remoteReconnect: 'closes' as const, operateTimeMs: 0, loadSideVoltageCheck: { checkedBy: 'none' as const, maxVoltageV: 0 } }, retry: { maxAttempts: 3, baseDelayMs: 1000, maxDelayMs: 5000 } };
      const report = (orderId: string, readBack: 'connected' | undefined) => ({
        orderId, attempt: 1, leaseOwner: 'gw-a', endedAt: now + 500, latencyMs: 120, commandEvidence: '{"result":"ok"}', readEvidence: null, observedRelay: readBack ?? null, detail: null,
        observation: readBack ? { relay: readBack, at: now + 500, source: 'read' as const, voltageV: 230, energyWh: 12 } : null,
        judgement: { rules, facts: { command: 'ok' as const, readBack }, now: now + 500, random: 0 },
      });
      answers.push(await store.completeAttempt(report('ord_x1', 'connected')), await store.completeAttempt(report('ord_x2', undefined)));
      answers.push(await store.releaseAttempt('ord_x3', 1, now + 600, now + 700, 'not sent: link L1 is down; waiting for it', 'gw-a'));
      answers.push(await store.energyReadings('M-1', 10), await store.energyReadings('M-1', 1), await store.energyReadings('M-3', 10));
      answers.push(await store.getMeter('M-1'), await store.getOrder('ord_x1'), await store.getOrder('ord_none'), await store.openOrdersForMeter('M-3'), await store.openOrdersForMeter('M-1'));
      // An admission replayed (the same idempotency key and body) and one created.
      const keyed = { ...reconnect('M-1'), idempotencyKey: 'k-1' };
      answers.push(await store.submitOrders([keyed], ctx), await store.submitOrders([keyed, reconnect('M-2')], ctx));
      // An attempt whose report carries the meter's flags and the escalation policy (compact across the thread too):
      // retries run out, so a field work order is raised with the priority the flags give.
      await store.beginAttempts(['ord_x3'], now + 800, lease);
      const flags = { vulnerable: false, medicalEquipment: true, priorityRegister: false, protectedMode: false, prepaymentMode: false, prepaymentAgreementRef: null, hasLoadLimiter: false, loadLimitedSince: null };
      const escalation = { fieldLeadMs: 4 * 3_600_000, dueMarginMs: 1_800_000, slowRetryMs: 600_000, escalateDisconnects: true };
      const last = report('ord_x3', undefined);
      answers.push(
        await store.completeAttempt({ ...last, observedRelay: null, judgement: { rules: { ...rules, retry: { maxAttempts: 1, baseDelayMs: 1000, maxDelayMs: 5000 } }, facts: { command: 'timeout', readBack: undefined }, now: now + 900, random: 0.5, flags, escalation } }),
      );
      // Work order ids are random: the rest of each must match.
      answers.push((await store.listWorkOrders({ limit: 10 })).map((w) => ({ ...w, id: 'wo' })));
      // A failure among successes in one batch: each caller gets its own answer.
      answers.push(await Promise.allSettled([store.getMeter('M-3'), store.completeAttempt(report('ord_x2', 'connected')), store.dueOrders(now + 10_000, 10, [])]).then((r) => r.map((x) => (x.status === 'fulfilled' ? x.value : String(x.reason)))));
      return answers.map((a) => JSON.stringify(a));
    };
    const here = new SqliteStore(newPath());
    const there = new SqliteWorkerStore(newPath());
    try {
      const expected = await run(here);
      expect(expected.join('')).toContain('"resultRelay":"connected"');
      expect(expected.join('')).toContain('"state":"escalated"');
      expect(expected.join('')).toContain('"priority":1');
      expect(await run(there)).toEqual(expected);
    } finally {
      await here.close();
      await there.close();
    }
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
