import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NO_LOAD_SIDE_CHECK } from '../../src/domain/firmware-profile.js';
import { NO_REMOTE_ATTEMPT } from '../../src/domain/escalation.js';
import { MeterlineError } from '../../src/errors.js';
import type { CreditEvent } from '../../src/domain/prepayment/credit-ledger.js';
import type { EpisodeClaim, GatewayStore, Lease, OrderRequest, PaymentRequest, SubmitContext } from '../../src/store/store.js';
import { openPolicy } from '../harness/test-policy.js';
import { AuditKey, unkeyedEntryHash, type AuditAnchor } from '../../src/store/audit-chain.js';
import type { DatabaseHands } from '../harness/audit-tamper.js';
import { auditKeySource, fixedAuditKey, type AuditKeySource } from '../../src/store/audit-key-source.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeMeterKeysConformance } from './meter-keys-conformance.js';
import { describeOrderSeriesConformance } from './order-series-conformance.js';

/**
 * What someone with write access to a store's database (but not to the audit key) can do, per store: the audit
 * tests play that attacker with the store's own SQL, as a user with a database client would.
 */
export interface StoreTamperKit {
  /** Another store on the same database: a restart (migrate runs again), with the store's key unless another source is given. */
  reopen(store: GatewayStore, auditKey?: AuditKeySource): Promise<GatewayStore>;
  /** Plain SQL and the like on the store's database, on a connection of their own. */
  hands(store: GatewayStore): DatabaseHands;
}

/**
 * How a backend is made unable to take writes, for real: a SQLite file's disk filled up, a PostgreSQL server stopped.
 * `open` gives a migrated store and the means to break and mend it; `cause` is what its messages must say.
 */
export interface StoreOutage {
  open(): Promise<{ store: GatewayStore; breakWrites(): Promise<void>; mendWrites(): Promise<void>; cleanup(): Promise<void> }>;
  /** The store as messages name it (its file, or its server's address). */
  storeName: string | (() => string);
  cause: RegExp;
}

/**
 * One conformance suite for every GatewayStore implementation (SQLite now, PostgreSQL next), in the manner of
 * aedes-persistence's abstract tests: a backend is done when it passes this suite, not a copy of it.
 */
export function describeStoreConformance(name: string, makeStore: () => Promise<GatewayStore>, tamper: StoreTamperKit, outage: StoreOutage): void {
  describe(`GatewayStore conformance: ${name}: a store that cannot take writes`, () => {
    it('answers E_STORE_UNAVAILABLE (503) naming itself and the cause, says so in writeHealth, and takes writes again once mended', async () => {
      const o = await outage.open();
      const now = 1_764_000_000_000;
      let seq = 0;
      const ctx = (): SubmitContext => ({ now, reconnectLimitHours: 24, newOrderId: () => `ord_out_${++seq}`, policy: openPolicy() });
      const reconnect = (meterId: string): OrderRequest => ({ meterId, action: 'reconnect', reason: 'payment', note: null, urgent: false, notBefore: null, paymentAt: now, requestedBy: 'billing', idempotencyKey: null, requestHash: meterId });
      try {
        const { store } = o;
        await store.upsertMeters([1, 2, 3].map((i) => ({ meterId: `M-OUT-${i}`, profileId: 'p', link: 'L1', region: 'north' })), now);
        expect((await store.submitOrders([reconnect('M-OUT-1')], ctx()))[0]!.order.state).toBe('queued');

        await o.breakWrites();
        const storeName = typeof outage.storeName === 'string' ? outage.storeName : outage.storeName();
        const err = await store.submitOrders([reconnect('M-OUT-2')], ctx()).then(
          () => new Error('the write went through'),
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(MeterlineError);
        expect(err).toMatchObject({ code: 'E_STORE_UNAVAILABLE', status: 503 });
        expect((err as Error).message).toContain(storeName);
        expect((err as Error).message).toMatch(outage.cause);
        const broken = store.writeHealth();
        expect(broken.writable).toBe(false);
        expect(broken.detail).toContain(storeName);
        expect(broken.detail).toMatch(outage.cause);

        await o.mendWrites();
        // Writes go through again (PostgreSQL: once the pool has new connections), and health follows.
        const until = Date.now() + 30_000;
        let outs;
        for (;;) {
          try {
            outs = await store.submitOrders([reconnect('M-OUT-3')], ctx());
            break;
          } catch (e) {
            if (!(e instanceof MeterlineError && e.code === 'E_STORE_UNAVAILABLE') || Date.now() > until) throw e;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
        expect(outs[0]!.order.state).toBe('queued');
        expect(store.writeHealth()).toEqual({ writable: true, detail: null });
        expect((await store.getOrder('ord_out_1'))?.state).toBe('queued');
        // The refused write left nothing behind.
        expect((await store.listOrders({ meterId: 'M-OUT-2', limit: 10 })).length).toBe(0);
      } finally {
        await o.cleanup();
      }
    }, 90_000);
  });

  describe(`GatewayStore conformance: ${name}`, () => {
    let store: GatewayStore;
    let now = 1_764_000_000_000;
    let seq = 0;
    const ctx = (): SubmitContext => ({ now, reconnectLimitHours: 24, newOrderId: () => `ord_${String(++seq).padStart(6, '0')}`, policy: openPolicy() });
    const req = (o: Partial<OrderRequest> = {}): OrderRequest => ({
      meterId: 'M-1',
      action: 'disconnect',
      reason: 'customer_request',
      reference: 'REQ-1',
      note: null,
      urgent: false,
      notBefore: null,
      paymentAt: null,
      requestedBy: 'ops',
      idempotencyKey: null,
      requestHash: 'h',
      ...o,
    });
    /** A lease of instance gw-a (or `owner`) taken at `t`, good for 30 s. */
    const A = (t: number, owner = 'gw-a'): Lease => ({ owner, until: t + 30_000 });
    const profile = { relay: { remoteReconnect: 'closes' as const, operateTimeMs: 0, loadSideVoltageCheck: NO_LOAD_SIDE_CHECK }, retry: { maxAttempts: 2, baseDelayMs: 1000, maxDelayMs: 1000 } };

    beforeEach(async () => {
      store = await makeStore();
      await store.migrate();
      await store.upsertMeters(
        [
          { meterId: 'M-1', profileId: 'p', link: 'L1', region: 'north' },
          { meterId: 'M-2', profileId: 'p', link: 'L1', region: 'north' },
          { meterId: 'M-3', profileId: 'p', link: 'L2', region: 'south' },
        ],
        now,
      );
    });
    afterEach(async () => {
      await store.close();
    });

    it('admits an order as queued, records accepted → queued, sets the desired state and audits who asked', async () => {
      const [out] = await store.submitOrders([req({ meterId: 'M-1', action: 'reconnect', reason: 'payment', paymentAt: now - 1000 })], ctx());
      expect(out!.kind).toBe('created');
      expect(out!.order.state).toBe('queued');
      expect(out!.order.deadline).toBe(now - 1000 + 24 * 3_600_000);
      // The order handed back is the order as stored, every field (a store may build it from what it wrote).
      expect(out!.order).toEqual(await store.getOrder(out!.order.id));
      const events = await store.listOrderEvents(out!.order.id);
      expect(events.map((e) => [e.from, e.to])).toEqual([
        [null, 'accepted'],
        ['accepted', 'queued'],
      ]);
      const meter = await store.getMeter('M-1');
      expect(meter?.desiredRelay).toBe('connected');
      expect(meter?.desiredOrderId).toBe(out!.order.id);
      const audit = await store.listAudit({ target: 'M-1', newestFirst: true, limit: 10 });
      expect(audit[0]).toMatchObject({ actor: 'ops', action: 'order.reconnect' });
    });

    it('the same idempotency key and body returns the same order; another body is a conflict that changes nothing', async () => {
      const [a] = await store.submitOrders([req({ idempotencyKey: 'k1', requestHash: 'x' })], ctx());
      const [b] = await store.submitOrders([req({ idempotencyKey: 'k1', requestHash: 'x' })], ctx());
      expect(b!.kind).toBe('replayed');
      expect(b!.order.id).toBe(a!.order.id);
      await expect(store.submitOrders([req({ idempotencyKey: 'k1', requestHash: 'y' })], ctx())).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_CONFLICT' });
      expect((await store.listOrders({ limit: 100 })).length).toBe(1);
      // Keys are scoped per caller.
      const [c] = await store.submitOrders([req({ idempotencyKey: 'k1', requestHash: 'y', requestedBy: 'billing', meterId: 'M-2' })], ctx());
      expect(c!.kind).toBe('created');
    });

    it('a mixed batch is admitted in request order: plain reconnects, a meter twice, a reused key, a reconnect over an open disconnect', async () => {
      const [d] = await store.submitOrders([req({ meterId: 'M-3' })], ctx()); // an open disconnect on M-3
      const outs = await store.submitOrders(
        [
          req({ meterId: 'M-1', action: 'reconnect', reason: 'payment', idempotencyKey: 'b1', requestHash: 'h1' }),
          req({ meterId: 'M-2', action: 'reconnect', reason: 'payment' }),
          req({ meterId: 'M-1', action: 'reconnect', reason: 'payment' }), // M-1 again: latest intent wins
          req({ meterId: 'M-3', action: 'reconnect', reason: 'payment' }), // supersedes the disconnect
          req({ meterId: 'M-2', action: 'reconnect', reason: 'payment', idempotencyKey: 'b1', requestHash: 'h1' }), // the key of the first request
        ],
        ctx(),
      );
      expect(outs.map((o) => o.kind)).toEqual(['created', 'created', 'created', 'created', 'replayed']);
      const [m1a, m2, m1b, m3, replay] = outs.map((o) => o.order);
      expect(replay!.id).toBe(m1a!.id);
      expect((await store.getOrder(m1a!.id))?.state).toBe('superseded');
      expect((await store.getOrder(m1a!.id))?.supersededBy).toBe(m1b!.id);
      expect((await store.getOrder(d!.order.id))?.state).toBe('superseded');
      for (const o of [m2!, m1b!, m3!]) {
        expect(o.state).toBe('queued');
        expect(o).toEqual(await store.getOrder(o.id));
        expect((await store.listOrderEvents(o.id)).map((e) => [e.from, e.to])).toEqual([
          [null, 'accepted'],
          ['accepted', 'queued'],
        ]);
      }
      expect((await store.listOrderEvents(m1a!.id)).map((e) => e.to)).toEqual(['accepted', 'queued', 'superseded']);
      expect((await store.getMeter('M-1'))?.desiredOrderId).toBe(m1b!.id);
      expect((await store.getMeter('M-2'))?.desiredOrderId).toBe(m2!.id);
      expect((await store.getMeter('M-3'))?.desiredRelay).toBe('connected');
      // One audit entry per created order, in request order, and the chain holds.
      const audit = await store.listAudit({ limit: 100 });
      expect(audit.filter((a) => a.action === 'order.reconnect').map((a) => (a.details as { orderId: string }).orderId)).toEqual([m1a!.id, m2!.id, m1b!.id, m3!.id]);
      expect((await store.verifyAudit()).ok).toBe(true);
      // The ids come out in the order they were given: admission order.
      expect((await store.dueOrders(now, 10, [])).map((o) => o.id)).toEqual([m2!.id, m1b!.id, m3!.id]);
    });

    it('energy readings: the last N with an energy register, oldest first; readings without one are left out', async () => {
      await store.recordObservation('M-1', { relay: 'connected', at: now + 3000, source: 'read', energyWh: 130 });
      await store.recordObservation('M-1', { relay: 'connected', at: now + 1000, source: 'read', energyWh: 110 });
      await store.recordObservation('M-1', { relay: 'connected', at: now + 2000, source: 'status' }); // no register
      await store.recordObservation('M-1', { relay: 'connected', at: now + 4000, source: 'read', energyWh: 140 });
      await store.recordObservation('M-2', { relay: 'connected', at: now + 5000, source: 'read', energyWh: 999 });
      expect(await store.energyReadings('M-1', 10)).toEqual([
        { at: now + 1000, energyWh: 110 },
        { at: now + 3000, energyWh: 130 },
        { at: now + 4000, energyWh: 140 },
      ]);
      expect(await store.energyReadings('M-1', 2)).toEqual([
        { at: now + 3000, energyWh: 130 },
        { at: now + 4000, energyWh: 140 },
      ]);
      expect(await store.energyReadings('M-3', 10)).toEqual([]);
    });

    it('writes made at the same moment stand or fall alone: a refused one changes nothing, the others are kept', async () => {
      // Issued in one turn of the event loop, so a store that commits writes together commits these together.
      const results = await Promise.allSettled([
        store.submitOrders([req({ meterId: 'M-1', action: 'reconnect', reason: 'payment' })], ctx()),
        store.submitOrders([req({ meterId: 'M-2', action: 'reconnect', reason: 'payment' }), req({ meterId: 'NOPE' })], ctx()),
        store.recordObservation('M-3', { relay: 'connected', at: now, source: 'read', energyWh: 5 }),
        store.submitOrders([req({ meterId: 'M-3', action: 'reconnect', reason: 'payment' })], ctx()),
      ]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      expect(((results[1] as PromiseRejectedResult).reason as MeterlineError).code).toBe('E_METER_NOT_FOUND');
      const orders = await store.listOrders({ limit: 100 });
      expect(orders.map((o) => o.meterId).sort()).toEqual(['M-1', 'M-3']);
      expect((await store.getMeter('M-2'))?.desiredRelay).toBeNull();
      expect(await store.energyReadings('M-3', 10)).toEqual([{ at: now, energyWh: 5 }]);
      expect((await store.verifyAudit()).ok).toBe(true);
    });

    it('a batch with an unknown meter creates nothing', async () => {
      const err = await store.submitOrders([req({ meterId: 'M-1' }), req({ meterId: 'NOPE' })], ctx()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MeterlineError);
      expect((err as MeterlineError).code).toBe('E_METER_NOT_FOUND');
      expect(await store.listOrders({ limit: 100 })).toEqual([]);
      expect((await store.getMeter('M-1'))?.desiredRelay).toBeNull();
    });

    it('latest intent wins: a reconnect supersedes a queued disconnect; a disconnect is refused while a reconnect is open', async () => {
      const [d] = await store.submitOrders([req()], ctx());
      const [r] = await store.submitOrders([req({ action: 'reconnect', reason: 'payment' })], ctx());
      expect((await store.getOrder(d!.order.id))?.state).toBe('superseded');
      expect((await store.getOrder(d!.order.id))?.supersededBy).toBe(r!.order.id);
      const [d2] = await store.submitOrders([req()], ctx());
      expect(d2!.order.state).toBe('refused');
      expect(d2!.order.stateReason).toContain('E_RECONNECT_PENDING');
      expect((await store.getMeter('M-1'))?.desiredRelay).toBe('connected');
    });

    it('due orders: reconnects first, one per meter on the wire, none before their time, none on excluded links', async () => {
      await store.submitOrders([req({ meterId: 'M-2' }), req({ meterId: 'M-3', action: 'reconnect', reason: 'payment' }), req({ meterId: 'M-1', notBefore: now + 60_000 })], ctx());
      const due = await store.dueOrders(now, 10, []);
      expect(due.map((o) => o.meterId)).toEqual(['M-3', 'M-2']);
      expect((await store.dueOrders(now, 10, ['L2'])).map((o) => o.meterId)).toEqual(['M-2']);
      expect((await store.dueOrders(now + 60_000, 10, [])).map((o) => o.meterId)).toEqual(['M-3', 'M-2', 'M-1']);
    });

    it('an order is leased once: begin takes only queued orders, and a meter with an attempt on the wire has nothing else due', async () => {
      const [d] = await store.submitOrders([req()], ctx());
      const taken = await store.beginAttempts([d!.order.id], now, A(now));
      expect(taken.map((o) => [o.state, o.attempts])).toEqual([['in_flight', 1]]);
      expect(taken).toEqual([await store.getOrder(d!.order.id)]);
      expect(await store.beginAttempts([d!.order.id], now, A(now))).toEqual([]);
      await store.submitOrders([req({ action: 'reconnect', reason: 'payment' })], ctx());
      expect(await store.dueOrders(now, 10, [])).toEqual([]);
      expect((await store.inFlightOrders()).map((o) => o.id)).toEqual([d!.order.id]);
    });

    it('completing an attempt records outcome, latency, evidence and the observed relay, and moves the order', async () => {
      const [d] = await store.submitOrders([req()], ctx());
      await store.beginAttempts([d!.order.id], now, A(now));
      now += 500;
      const after = await store.completeAttempt({
        orderId: d!.order.id,
        attempt: 1,
        leaseOwner: 'gw-a',
        endedAt: now,
        latencyMs: 120,
        commandEvidence: '{"result":"ok"}',
        readEvidence: '{"relay":"disconnected"}',
        observedRelay: 'disconnected',
        detail: null,
        observation: { relay: 'disconnected', at: now, source: 'read', voltageV: 0 },
        judgement: { rules: profile, facts: { command: 'ok', readBack: 'disconnected' }, now, random: 0 },
      });
      expect(after.state).toBe('done');
      expect(after.completedAt).toBe(now);
      expect(after.resultRelay).toBe('disconnected');
      expect(after).toEqual(await store.getOrder(d!.order.id));
      const [attempt] = await store.listAttempts(d!.order.id);
      expect(attempt).toMatchObject({ attempt: 1, outcome: 'ok', latencyMs: 120, commandEvidence: '{"result":"ok"}', readEvidence: '{"relay":"disconnected"}' });
      const meter = await store.getMeter('M-1');
      expect(meter?.observed).toMatchObject({ relay: 'disconnected', source: 'read', at: now, voltageV: 0 });
    });

    const verifyLimit = async (orderId: string, attempt: number, readBackLimitW: number | null) => {
      await store.beginAttempts([orderId], now, A(now));
      const after = await store.completeAttempt({
        orderId, attempt, leaseOwner: 'gw-a', endedAt: now, latencyMs: 10, commandEvidence: null, readEvidence: null, observedRelay: 'connected', detail: null, observation: null,
        judgement: { rules: profile, facts: { command: 'ok', readBack: 'connected', readBackLimitW }, now, random: 0 },
      });
      expect(after).toEqual(await store.getOrder(orderId));
      return after;
    };

    it('a limit order keeps its watts (limit_w), supersedes an earlier unfinished limit order but no relay order, and sets no desired relay', async () => {
      const [cut] = await store.submitOrders([req({ meterId: 'M-1', notBefore: now + 3_600_000 })], ctx());
      const [first] = await store.submitOrders([req({ meterId: 'M-1', action: 'limit', limitW: 1500, reason: 'arrears', reference: null })], ctx());
      expect(first!.order).toMatchObject({ action: 'limit', limitW: 1500, state: 'queued' });
      expect((await store.getOrder(cut!.order.id))!.state).toBe('queued');
      expect((await store.getMeter('M-1'))!.desiredOrderId).toBe(cut!.order.id);
      const [second] = await store.submitOrders([req({ meterId: 'M-1', action: 'limit', limitW: null, reason: 'operator', reference: null })], ctx());
      expect(second!.order).toMatchObject({ action: 'limit', limitW: null, state: 'queued' });
      expect((await store.getOrder(first!.order.id))!).toMatchObject({ state: 'superseded', supersededBy: second!.order.id, limitW: 1500 });
      expect((await store.getOrder(cut!.order.id))!.state).toBe('queued');
      expect((await store.listOrders({ meterId: 'M-1', limit: 10 })).map((o) => [o.action, o.limitW])).toEqual([
        ['disconnect', null],
        ['limit', 1500],
        ['limit', null],
      ]);
    });

    it('a verified limit starts the rule 10 period and marks the limiter; a mismatch does not; a verified removal ends the period', async () => {
      const [set] = await store.submitOrders([req({ meterId: 'M-2', action: 'limit', limitW: 900, reason: 'arrears', reference: null })], ctx());
      const wrong = await verifyLimit(set!.order.id, 1, null);
      expect(wrong.state).toBe('queued');
      expect((await store.getMeter('M-2'))!.flags).toMatchObject({ hasLoadLimiter: false, loadLimitedSince: null });
      now += 5000;
      const started = now;
      const ok = await verifyLimit(set!.order.id, 2, 900);
      expect(ok.state).toBe('done');
      expect((await store.getMeter('M-2'))!.flags).toMatchObject({ hasLoadLimiter: true, loadLimitedSince: started });
      expect((await store.lastCompletedOrder('M-2', 'limit'))!.limitW).toBe(900);
      now += 60_000;
      const [lift] = await store.submitOrders([req({ meterId: 'M-2', action: 'limit', limitW: null, reason: 'operator', reference: null })], ctx());
      expect((await verifyLimit(lift!.order.id, 1, null)).state).toBe('done');
      expect((await store.getMeter('M-2'))!.flags).toMatchObject({ hasLoadLimiter: true, loadLimitedSince: null });
    });

    it('a payment lifts a limit set for arrears (a removal order beside the effects), not one the customer asked for', async () => {
      const pay = (meterId: string, key: string) =>
        store.recordPayments([{ client: 'bill', idempotencyKey: key, requestHash: key, meterId, accountId: null, amountMinor: 10, kind: 'payment', posted: true, reference: null, receivedAt: now }], ctx(), { maxCreditBalanceMinor: 100_000_000 });
      const [arrears] = await store.submitOrders([req({ meterId: 'M-1', action: 'limit', limitW: 1000, reason: 'arrears', reference: null })], ctx());
      await verifyLimit(arrears!.order.id, 1, 1000);
      const [asked] = await store.submitOrders([req({ meterId: 'M-3', action: 'limit', limitW: 1000, reason: 'customer_request' })], ctx());
      await verifyLimit(asked!.order.id, 1, 1000);
      const [paid] = await pay('M-1', 'p-1');
      const removalId = paid!.payment.effects[0]!.limitRemovalOrderId;
      expect(removalId).toBeTruthy();
      expect(await store.getOrder(removalId!)).toMatchObject({ action: 'limit', limitW: null, reason: 'payment', state: 'queued' });
      expect(paid!.payment.effects[0]!.reconnectOrderId).toBeNull();
      const [other] = await pay('M-3', 'p-2');
      expect(other!.payment.effects[0]!.limitRemovalOrderId).toBeNull();
      // Paid again while the removal is still open: the latest limit order is a removal, nothing more to lift.
      const [again] = await pay('M-1', 'p-3');
      expect(again!.payment.effects[0]!.limitRemovalOrderId).toBeNull();
    });

    it('a failed attempt is retried later, and after the last one the order fails', async () => {
      const [d] = await store.submitOrders([req()], ctx());
      const id = d!.order.id;
      const fail = (n: number) =>
        store.completeAttempt({
          orderId: id, attempt: n, leaseOwner: 'gw-a', endedAt: now, latencyMs: null, commandEvidence: null, readEvidence: null, observedRelay: null, detail: 'no answer', observation: null,
          judgement: { rules: profile, facts: { command: 'timeout', readBack: undefined }, now, random: 0 },
        });
      await store.beginAttempts([id], now, A(now));
      const first = await fail(1);
      expect(first.state).toBe('queued');
      expect(first.nextAttemptAt).toBe(now + 500);
      expect(first).toEqual(await store.getOrder(id));
      expect(await store.dueOrders(now, 10, [])).toEqual([]);
      await store.beginAttempts([id], now + 500, A(now + 500));
      const second = await fail(2);
      expect(second.state).toBe('failed');
      expect((await store.listAttempts(id)).map((a) => a.outcome)).toEqual(['timeout', 'timeout']);
    });

    it('an order superseded while on the wire ends superseded after its attempt, and the later order becomes due', async () => {
      const [d] = await store.submitOrders([req()], ctx());
      await store.beginAttempts([d!.order.id], now, A(now));
      const [r] = await store.submitOrders([req({ action: 'reconnect', reason: 'payment' })], ctx());
      expect(r!.order.state).toBe('queued');
      const after = await store.completeAttempt({
        orderId: d!.order.id, attempt: 1, leaseOwner: 'gw-a', endedAt: now, latencyMs: 10, commandEvidence: null, readEvidence: null, observedRelay: 'connected', detail: null, observation: null,
        judgement: { rules: profile, facts: { command: 'nack', readBack: 'connected' }, now, random: 0 },
      });
      expect(after.state).toBe('superseded');
      expect((await store.dueOrders(now, 10, [])).map((o) => o.id)).toEqual([r!.order.id]);
    });

    it('a lease given back (link down, nothing sent) spends no attempt and leaves no attempt row', async () => {
      const [d] = await store.submitOrders([req()], ctx());
      await store.beginAttempts([d!.order.id], now, A(now));
      const back = await store.releaseAttempt(d!.order.id, 1, now, now + 250, 'not sent: link L1 is down', 'gw-a');
      expect(back).toMatchObject({ state: 'queued', attempts: 0, nextAttemptAt: now + 250, stateReason: 'not sent: link L1 is down' });
      expect(await store.listAttempts(d!.order.id)).toEqual([]);
      await expect(store.releaseAttempt(d!.order.id, 1, now, now, 'again', 'gw-a')).rejects.toThrow();
      const [again] = await store.beginAttempts([d!.order.id], now + 250, A(now + 250));
      expect(again!.attempts).toBe(1);
    });

    it('an attempt cannot be completed twice', async () => {
      const [d] = await store.submitOrders([req()], ctx());
      await store.beginAttempts([d!.order.id], now, A(now));
      const report = {
        orderId: d!.order.id, attempt: 1, leaseOwner: 'gw-a', endedAt: now, latencyMs: 10, commandEvidence: null, readEvidence: null, observedRelay: 'disconnected' as const, detail: null, observation: null,
        judgement: { rules: profile, facts: { command: 'ok' as const, readBack: 'disconnected' as const }, now, random: 0 },
      };
      await store.completeAttempt(report);
      await expect(store.completeAttempt(report)).rejects.toThrow();
      expect((await store.listOrderEvents(d!.order.id)).filter((e) => e.to === 'done')).toHaveLength(1);
    });

    it('leases: an instance takes over only orders whose lease ran out, and the old holder can then neither complete nor release them', async () => {
      const [d1, d2] = await store.submitOrders([req(), req({ meterId: 'M-2' })], ctx());
      await store.beginAttempts([d1!.order.id, d2!.order.id], now, A(now));
      // gw-a is alive: its leases hold, gw-b finds nothing to take.
      expect(await store.claimOrphans(A(now, 'gw-b'), now + 29_000, 10, false)).toEqual([]);
      // gw-a renews one of them; after 30 s only the other has run out.
      expect(await store.renewLeases(A(now + 20_000), [d1!.order.id])).toBe(1);
      expect(await store.renewLeases(A(now + 20_000, 'gw-b'), [d2!.order.id])).toBe(0);
      const taken = await store.claimOrphans(A(now + 31_000, 'gw-b'), now + 31_000, 10, false);
      expect(taken.map((o) => [o.id, o.state, o.attempts])).toEqual([[d2!.order.id, 'in_flight', 1]]);
      expect(await store.claimOrphans(A(now + 31_000, 'gw-c'), now + 31_000, 10, false)).toEqual([]);
      expect((await store.listOrderEvents(d2!.order.id)).at(-1)).toMatchObject({ from: 'in_flight', to: 'in_flight', reason: expect.stringContaining('lease of gw-a ran out') });
      // gw-a's late report is refused; gw-b's (after its verifying read) is recorded once.
      const report = (owner: string) => ({
        orderId: d2!.order.id, attempt: 1, leaseOwner: owner, endedAt: now + 32_000, latencyMs: 10, commandEvidence: null, readEvidence: null, observedRelay: 'disconnected' as const, detail: null, observation: null,
        judgement: { rules: profile, facts: { command: 'ok' as const, readBack: 'disconnected' as const }, now: now + 32_000, random: 0 },
      });
      await expect(store.completeAttempt(report('gw-a'))).rejects.toMatchObject({ code: 'E_LEASE_LOST' });
      await expect(store.releaseAttempt(d2!.order.id, 1, now, now, 'link down', 'gw-a')).rejects.toThrow();
      expect((await store.completeAttempt(report('gw-b'))).state).toBe('done');
      expect((await store.getOrder(d1!.order.id))?.state).toBe('in_flight');
    });

    it('leases: a restarted instance takes back its own live leases at start, and no other instance can', async () => {
      const [d] = await store.submitOrders([req()], ctx());
      await store.beginAttempts([d!.order.id], now, A(now));
      expect(await store.claimOrphans(A(now + 1, 'gw-b'), now + 1, 10, true)).toEqual([]);
      expect(await store.claimOrphans(A(now + 1), now + 1, 10, false)).toEqual([]);
      const back = await store.claimOrphans(A(now + 1), now + 1, 10, true);
      expect(back.map((o) => o.id)).toEqual([d!.order.id]);
      expect((await store.listOrderEvents(d!.order.id)).at(-1)?.reason).toContain('gw-a restarted');
    });

    it('duties: one instance holds a duty at a time; another takes it once the lease ran out or it was given up', async () => {
      expect(await store.holdDuty('singletons', A(now), now)).toBe(true);
      expect(await store.holdDuty('singletons', A(now + 1000, 'gw-b'), now + 1000)).toBe(false);
      expect(await store.holdDuty('singletons', A(now + 20_000), now + 20_000)).toBe(true); // renewed to now + 50 s
      expect(await store.holdDuty('singletons', A(now + 40_000, 'gw-b'), now + 40_000)).toBe(false);
      expect(await store.holdDuty('singletons', A(now + 51_000, 'gw-b'), now + 51_000)).toBe(true);
      expect(await store.holdDuty('singletons', A(now + 52_000), now + 52_000)).toBe(false);
      expect(await store.holdDuty('other', A(now + 52_000), now + 52_000)).toBe(true);
      await store.releaseDuty('singletons', 'gw-a'); // not gw-a's to give up: nothing changes
      expect(await store.holdDuty('singletons', A(now + 53_000), now + 53_000)).toBe(false);
      await store.releaseDuty('singletons', 'gw-b');
      expect(await store.holdDuty('singletons', A(now + 53_000), now + 53_000)).toBe(true);
    });

    it('an older observation never overwrites a newer one', async () => {
      await store.recordObservation('M-1', { relay: 'connected', at: now, source: 'read' });
      await store.recordObservation('M-1', { relay: 'disconnected', at: now - 10, source: 'status' });
      expect((await store.getMeter('M-1'))?.observed?.relay).toBe('connected');
    });

    it('a disconnect for arrears outside a plan is refused at admission, naming the rule, and supersedes nothing', async () => {
      const [r] = await store.submitOrders([req({ action: 'reconnect', reason: 'payment', meterId: 'M-2', notBefore: now + 3_600_000 })], ctx());
      const [d] = await store.submitOrders([req({ meterId: 'M-1', reason: 'arrears' })], ctx());
      expect(d!.order.state).toBe('refused');
      expect(d!.order.stateReason).toMatch(/^E_PLAN_REQUIRED: .*rule 7/);
      expect((await store.getOrder(r!.order.id))?.state).toBe('queued');
      expect((await store.getMeter('M-1'))?.desiredRelay).toBeNull();
    });

    it('plans: drafted, not approvable by the author, approved into orders that wait for their second notice, reserve one cap slot, then lease', async () => {
      await store.addNotice({ meterId: 'M-1', channel: 'letter', servedAt: now - 4 * 86_400_000, delivery: 'delivered', receiptRef: 'r1', recordedBy: 'billing' }, now);
      const plan = await store.createPlan({ reason: 'arrears', note: null, windowFrom: now - 1000, windowTo: now + 86_400_000, meterIds: ['M-1', 'M-2'] }, 'ops', now);
      expect(plan.status).toBe('draft');
      await expect(store.decidePlan(plan.id, 'approve', 'ops', ctx())).rejects.toMatchObject({ code: 'E_SELF_APPROVAL' });
      const approved = await store.decidePlan(plan.id, 'approve', 'sup', ctx());
      expect(approved.items.map((i) => i.state)).toEqual(['queued', 'refused']); // M-2 has no notice
      const id = approved.items[0]!.orderId!;
      const policy = openPolicy();
      const first = await store.gateDisconnect(id, now, policy);
      expect(first.decision?.verdict).toBe('second_notice');
      expect(first.order.state).toBe('held');
      const notes = await store.listNotifications('M-1');
      expect(notes.map((n) => n.kind)).toEqual(['pre_disconnect_notice']);
      await store.markNotification(notes[0]!.id, now, { delivered: true });
      expect((await store.leaseDisconnect(id, now + 29 * 60_000, policy, A(now))).leased).toBeNull();
      const lease = await store.leaseDisconnect(id, now + 30 * 60_000, policy, A(now));
      expect(lease.leased?.state).toBe('in_flight');
      expect(lease.leased?.capDay).toBe(new Date(now).toISOString().slice(0, 10));
      expect((await store.listAudit({ target: plan.id, limit: 10 })).map((a) => [a.action, a.actor])).toEqual([
        ['plan.draft', 'ops'],
        ['plan.approve', 'sup'],
      ]);
    });

    it('the daily cap is reserved atomically: the slot after the last is held for the next day', async () => {
      const policy = openPolicy({ dailyCap: { overall: 1000, perRegion: { north: 1 }, defaultPerRegion: 1000 } });
      for (const m of ['M-1', 'M-2']) await store.addNotice({ meterId: m, channel: 'phone_call', servedAt: now - 4 * 86_400_000, delivery: 'delivered', receiptRef: `CALL-${m}`, recordedBy: 'b' }, now);
      const plan = await store.createPlan({ reason: 'arrears', note: null, windowFrom: now - 1000, windowTo: now + 86_400_000, meterIds: ['M-1', 'M-2'] }, 'ops', now);
      const ids = (await store.decidePlan(plan.id, 'approve', 'sup', { ...ctx(), policy })).items.map((i) => i.orderId!);
      const later = now + 31 * 60_000;
      for (const id of ids) await store.gateDisconnect(id, now, policy);
      for (const m of ['M-1', 'M-2']) for (const n of await store.listNotifications(m)) await store.markNotification(n.id, now, { delivered: true });
      const a = await store.leaseDisconnect(ids[0]!, later, policy, A(now));
      const b = await store.leaseDisconnect(ids[1]!, later, policy, A(now));
      expect(a.leased).not.toBeNull();
      expect(b.leased).toBeNull();
      expect(b.leased === null && b.decision?.verdict === 'hold' && b.decision.code).toBe('E_DAILY_CAP');
    });

    it('rule 2: a pre-disconnect notification never delivered holds the disconnect; its delivery wakes it and the minutes run from the delivery', async () => {
      await store.addNotice({ meterId: 'M-1', channel: 'letter', servedAt: now - 4 * 86_400_000, delivery: 'delivered', receiptRef: 'r1', recordedBy: 'billing' }, now);
      const plan = await store.createPlan({ reason: 'arrears', note: null, windowFrom: now - 1000, windowTo: now + 7 * 86_400_000, meterIds: ['M-1'] }, 'ops', now);
      const id = (await store.decidePlan(plan.id, 'approve', 'sup', ctx())).items[0]!.orderId!;
      const policy = openPolicy();
      expect((await store.gateDisconnect(id, now, policy)).decision?.verdict).toBe('second_notice');
      const [note] = await store.listNotifications('M-1');
      for (let i = 1; i <= 7; i++) await store.markNotification(note!.id, now + i * 60_000, { delivered: false, error: 'HTTP 500', retryAt: now + (i + 1) * 60_000 });
      // Two hours later, seven failed deliveries: still held, never let through, and it says why.
      const held = await store.leaseDisconnect(id, now + 2 * 3_600_000, policy, A(now + 2 * 3_600_000));
      expect(held.leased).toBeNull();
      expect(held.leased === null && held.order.state).toBe('held');
      expect(held.leased === null && held.order.stateReason).toMatch(/^E_SECOND_NOTICE_UNDELIVERED: /);
      const [failing] = await store.listNotifications('M-1');
      expect(failing).toMatchObject({ attempts: 7, deliveredAt: null, lastError: 'HTTP 500' });
      // Delivered at +3 h: the order is due at once, and waits 30 minutes from the delivery.
      const t = now + 3 * 3_600_000;
      await store.markNotification(note!.id, t, { delivered: true });
      expect((await store.dueOrders(t, 10, [])).map((o) => o.id)).toEqual([id]);
      const pending = await store.leaseDisconnect(id, t + 29 * 60_000, policy, A(t));
      expect(pending.leased === null && pending.order.stateReason).toMatch(/^E_SECOND_NOTICE_PENDING: /);
      expect((await store.leaseDisconnect(id, t + 30 * 60_000, policy, A(t + 30 * 60_000))).leased?.state).toBe('in_flight');
    });

    it('rule 1: a notice recorded as delivered without its reference is refused at input and changes nothing', async () => {
      for (const channel of ['sms', 'email', 'letter', 'hand_delivered', 'phone_call'] as const) {
        await expect(store.addNotice({ meterId: 'M-1', channel, servedAt: now - 4 * 86_400_000, delivery: 'delivered', receiptRef: null, recordedBy: 'billing' }, now)).rejects.toMatchObject({ code: 'E_NOTICE_NO_EVIDENCE' });
        await expect(store.addNotice({ meterId: 'M-1', channel, servedAt: now - 4 * 86_400_000, delivery: 'delivered', receiptRef: '  ', recordedBy: 'billing' }, now)).rejects.toMatchObject({ code: 'E_NOTICE_NO_EVIDENCE' });
      }
      await expect(store.importMeterFacts([{ meterId: 'M-2', notice: { channel: 'sms', servedAt: now, delivery: 'delivered', receiptRef: null } }], 'billing', now)).rejects.toMatchObject({ code: 'E_NOTICE_NO_EVIDENCE' });
      expect(await store.listNotices('M-1')).toEqual([]);
      expect(await store.listNotices('M-2')).toEqual([]);
      // Not delivered (yet): recorded, as a fact that is not evidence.
      expect((await store.addNotice({ meterId: 'M-1', channel: 'sms', servedAt: now, delivery: 'unknown', receiptRef: null, recordedBy: 'billing' }, now)).delivery).toBe('unknown');
    });

    it('rule 8: a credit cut-off is admitted only from credit control, and only while the ledger shows no credit; a top-up before the attempt cancels it', async () => {
      await store.setMeterFlags('M-1', { prepaymentMode: true, prepaymentAgreementRef: 'PPA-1' }, 'billing', now);
      await store.setMeterFlags('M-2', { prepaymentMode: true, prepaymentAgreementRef: 'PPA-2' }, 'billing', now);
      await store.appendCreditEvent('M-2', { type: 'top_up', amount: 5000, at: now - 1000, ref: 'T-1' }, 'billing');
      const policy = openPolicy();
      const cut = (meterId: string, origin: OrderRequest['origin']) => req({ meterId, reason: 'credit_exhausted', reference: null, requestedBy: 'credit-control', origin });
      const [byApi, byPlan, inCredit, byControl] = await store.submitOrders([cut('M-1', 'api'), cut('M-1', 'plan'), cut('M-2', 'credit_control'), cut('M-1', 'credit_control')], ctx());
      expect(byApi!.order).toMatchObject({ state: 'refused', origin: 'api' });
      expect(byApi!.order.stateReason).toMatch(/^E_CREDIT_CUTOFF_RESERVED: /);
      expect(byPlan!.order.stateReason).toMatch(/^E_CREDIT_CUTOFF_RESERVED: /);
      expect(inCredit!.order.stateReason).toMatch(/^E_CREDIT_AVAILABLE: /);
      expect(byControl!.order).toMatchObject({ state: 'queued', origin: 'credit_control' });
      // A top-up lands between admission and the attempt: the gate reads the ledger again and cancels the cut-off.
      await store.appendCreditEvent('M-1', { type: 'top_up', amount: 1000, at: now + 500, ref: 'T-2' }, 'billing');
      const gated = await store.leaseDisconnect(byControl!.order.id, now + 1000, policy, A(now + 1000));
      expect(gated.leased).toBeNull();
      expect(gated.leased === null && gated.order.state).toBe('cancelled');
      expect(gated.leased === null && gated.order.stateReason).toMatch(/^E_CREDIT_AVAILABLE: /);
      expect((await store.getMeter('M-1'))?.desiredRelay).toBeNull();
    });

    it('a policy change wakes the disconnects it held, within one tick: weather lifted, breaker reset, flags changed, approval given', async () => {
      const policy = openPolicy();
      // Held by a freeze declared for the north until tomorrow.
      const wx = await store.declareWeather({ kind: 'freeze', from: now - 1000, to: now + 86_400_000, regions: ['north'] }, 'sup', now);
      const [byWeather] = await store.submitOrders([req({ meterId: 'M-1' })], ctx());
      expect(byWeather!.order).toMatchObject({ state: 'held' });
      expect(byWeather!.order.stateReason).toMatch(/^E_OUTSIDE_WINDOW: /);
      // Held by a breaker for the south.
      const breaker = await store.openBreaker('region', 'south', 'disconnect', 'first-attempt success 10% < 50%', now);
      const [byBreaker] = await store.submitOrders([req({ meterId: 'M-3' })], ctx());
      expect(byBreaker!.order.stateReason).toMatch(/^E_CIRCUIT_OPEN: /);
      // Held for approval: a vulnerable customer's own request.
      await store.setMeterFlags('M-2', { vulnerable: true }, 'billing', now);
      const [byApproval] = await store.submitOrders([req({ meterId: 'M-2' })], ctx());
      expect(byApproval!.order.stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
      const t = now + 30_000; // before the breaker's own one-minute look
      expect(await store.dueOrders(t, 10, [])).toEqual([]);

      await store.liftWeather(wx.id, 'sup', t);
      expect((await store.dueOrders(t, 10, [])).map((o) => o.id)).toEqual([byWeather!.order.id]);
      await store.resetBreaker(breaker!.id, 'sup', t);
      expect((await store.dueOrders(t, 10, [])).map((o) => o.id).sort()).toEqual([byWeather!.order.id, byBreaker!.order.id].sort());
      await expect(store.approveOrder(byApproval!.order.id, 'ops', t)).rejects.toMatchObject({ code: 'E_SELF_APPROVAL' });
      const approved = await store.approveOrder(byApproval!.order.id, 'sup', t);
      expect(approved).toMatchObject({ approvedBy: 'sup', approvedAt: t });
      expect((await store.dueOrders(t, 10, [])).map((o) => o.id)).toContain(byApproval!.order.id);
      await expect(store.approveOrder(byApproval!.order.id, 'sup-2', t)).rejects.toMatchObject({ code: 'E_NOT_AWAITING_APPROVAL' });
      for (const o of [byWeather, byBreaker, byApproval]) expect((await store.leaseDisconnect(o!.order.id, t, policy, A(t))).leased?.state).toBe('in_flight');
      expect((await store.listAudit({ target: 'M-2', actor: 'sup', limit: 10 })).map((a) => a.action)).toContain('order.approve');
    });

    it('rule 9: a meter put in protected mode holds its admitted disconnect; releasing the mode wakes it', async () => {
      const policy = openPolicy();
      const [o] = await store.submitOrders([req({ meterId: 'M-1', notBefore: now + 10_000 })], ctx());
      await store.setMeterFlags('M-1', { protectedMode: true }, 'field', now + 1000);
      const held = await store.leaseDisconnect(o!.order.id, now + 10_000, policy, A(now + 10_000));
      expect(held.leased).toBeNull();
      expect(held.leased === null && held.order).toMatchObject({ state: 'held' });
      expect(held.leased === null && held.order.stateReason).toMatch(/^E_PROTECTED_MODE: /);
      const [again] = await store.submitOrders([req({ meterId: 'M-2' }), req({ meterId: 'M-1', idempotencyKey: 'x' })].slice(1), ctx());
      expect(again!.order.state).toBe('refused'); // a new order while in protected mode is refused outright
      expect(await store.dueOrders(now + 20_000, 10, [])).toEqual([]);
      await store.setMeterFlags('M-1', { protectedMode: false }, 'field', now + 20_000);
      expect((await store.dueOrders(now + 20_000, 10, [])).map((x) => x.id)).toEqual([o!.order.id]);
    });

    it('a paid account cancels the disconnect; an unreachable billing hook holds it', async () => {
      const [a] = await store.submitOrders([req({ meterId: 'M-1' })], ctx());
      const [b] = await store.submitOrders([req({ meterId: 'M-2' })], ctx());
      const paid = await store.recordPaymentCheck(a!.order.id, now, 'paid', 'paid at the counter', now + 1000);
      expect(paid.state).toBe('cancelled');
      expect(paid.stateReason).toMatch(/^E_PAID/);
      const held = await store.recordPaymentCheck(b!.order.id, now, 'unreachable', 'HTTP 500', now + 1000);
      expect(held).toMatchObject({ state: 'held', nextAttemptAt: now + 1000 });
      expect(await store.dueOrders(now, 10, [])).toEqual([]);
      expect((await store.dueOrders(now + 1000, 10, [])).map((o) => o.id)).toEqual([b!.order.id]);
    });

    it('flags: a change is audited with before and after; prepayment mode needs an agreement; an import is all or nothing', async () => {
      await expect(store.setMeterFlags('M-1', { prepaymentMode: true }, 'billing', now)).rejects.toMatchObject({ code: 'E_NO_PREPAYMENT_AGREEMENT' });
      const flags = await store.setMeterFlags('M-1', { medicalEquipment: true }, 'billing', now);
      expect(flags.medicalEquipment).toBe(true);
      expect((await store.getMeter('M-1'))?.flags.medicalEquipment).toBe(true);
      const [entry] = await store.listAudit({ target: 'M-1', newestFirst: true, limit: 1 });
      expect(entry).toMatchObject({ actor: 'billing', action: 'meter.flags', details: { before: { medicalEquipment: false }, after: { medicalEquipment: true } } });
      await expect(store.importMeterFacts([{ meterId: 'M-2', flags: { vulnerable: true } }, { meterId: 'NOPE', flags: {} }], 'billing', now)).rejects.toMatchObject({ code: 'E_IMPORT_INVALID' });
      expect((await store.getMeter('M-2'))?.flags.vulnerable).toBe(false);
    });

    it('api keys: found by hash, rotated, revoked', async () => {
      const k = await store.createApiKey({ client: { name: 'ops' }, role: 'operator', sha256: 'a'.repeat(64) }, 'admin', now);
      expect((await store.findApiKey('a'.repeat(64)))?.id).toBe(k.id);
      await store.rotateApiKey(k.id, 'b'.repeat(64), 'admin', now);
      expect(await store.findApiKey('a'.repeat(64))).toBeUndefined();
      await store.revokeApiKey(k.id, 'admin', now);
      expect((await store.findApiKey('b'.repeat(64)))?.revokedAt).toBe(now);
    });

    it('api keys: the last use is kept to the minute (a use within a minute of the recorded one writes nothing)', async () => {
      const k = await store.createApiKey({ client: { name: 'ops' }, role: 'operator', sha256: 'c'.repeat(64) }, 'admin', now);
      expect(k.lastUsedAt).toBeNull();
      await store.touchApiKey(k.id, now + 1_000);
      await store.touchApiKey(k.id, now + 30_000);
      const lastUsed = async () => (await store.listApiKeys()).find((x) => x.id === k.id)!.lastUsedAt;
      expect(await lastUsed()).toBe(now + 1_000);
      await store.touchApiKey(k.id, now + 61_000);
      expect(await lastUsed()).toBe(now + 61_000);
      expect((await store.findApiKey('c'.repeat(64)))?.lastUsedAt).toBe(now + 61_000);
    });

    it('clients: a key is made for an existing client by id or for a new client; a label already taken makes another client; rotation keeps the client', async () => {
      const first = await store.createApiKey({ client: { name: 'erp' }, role: 'billing', sha256: 'c'.repeat(64) }, 'admin', now);
      expect(first.clientId).toMatch(/^cli_[0-9a-f]{16}$/);
      expect(first.name).toBe('erp');
      // The same person or system, a second key (another role): the same client.
      const second = await store.createApiKey({ client: { id: first.clientId }, role: 'supervisor', sha256: 'd'.repeat(64) }, 'admin', now);
      expect(second).toMatchObject({ clientId: first.clientId, name: 'erp', role: 'supervisor' });
      // Someone else who happens to carry the same label: another client.
      const lookalike = await store.createApiKey({ client: { name: 'erp' }, role: 'billing', sha256: 'e'.repeat(64) }, 'admin', now);
      expect(lookalike.clientId).not.toBe(first.clientId);
      expect((await store.findApiKey('e'.repeat(64)))?.clientId).toBe(lookalike.clientId);
      await store.rotateApiKey(first.id, 'f'.repeat(64), 'admin', now);
      expect((await store.findApiKey('f'.repeat(64)))?.clientId).toBe(first.clientId);
      // An unknown client id is refused and makes nothing.
      await expect(store.createApiKey({ client: { id: 'cli_0000000000000000' }, role: 'billing', sha256: '1'.repeat(64) }, 'admin', now)).rejects.toMatchObject({ code: 'E_CLIENT_NOT_FOUND' });
      expect(await store.findApiKey('1'.repeat(64))).toBeUndefined();
      // Configured clients are registered under their configured id, and keys can then be issued to them.
      await store.registerClients([{ id: 'billing-main', name: 'billing-main' }], now);
      await store.registerClients([{ id: 'billing-main', name: 'billing-main' }], now + 1); // every start: no duplicate
      const issued = await store.createApiKey({ client: { id: 'billing-main' }, role: 'billing', sha256: '2'.repeat(64) }, 'admin', now);
      expect(issued).toMatchObject({ clientId: 'billing-main', name: 'billing-main' });
      expect((await store.listApiKeys()).map((k) => k.clientId).sort()).toEqual([first.clientId, first.clientId, lookalike.clientId, 'billing-main'].sort());
      const audit = await store.listAudit({ limit: 100 });
      expect(audit.filter((e) => e.action === 'client.create').map((e) => e.target)).toEqual([first.clientId, lookalike.clientId]);
    });

    it('idempotency keys: reserved by one atomic insert, so of many requests at once exactly one acts; the others see it pending, then its answer', async () => {
      const tries = await Promise.all(Array.from({ length: 40 }, () => store.reserveIdempotentWrite('cli_a', 'k-1', 'h1', now)));
      expect(tries.filter((t) => t.reserved).length).toBe(1);
      for (const t of tries) if (!t.reserved) expect(t.prior).toEqual({ state: 'pending', requestHash: 'h1', since: now });
      // The same key with another body is told apart by the hash; another client's key of the same text is its own.
      expect(await store.reserveIdempotentWrite('cli_a', 'k-1', 'h2', now)).toMatchObject({ reserved: false, prior: { requestHash: 'h1' } });
      expect(await store.reserveIdempotentWrite('cli_b', 'k-1', 'h2', now)).toEqual({ reserved: true });
      await store.saveIdempotentResponse('cli_a', 'k-1', 'h1', 201, { id: 'x' });
      expect(await store.reserveIdempotentWrite('cli_a', 'k-1', 'h1', now + 5)).toEqual({ reserved: false, prior: { state: 'done', requestHash: 'h1', status: 201, body: { id: 'x' } } });
      expect(await store.getIdempotentResponse('cli_a', 'k-1')).toEqual({ state: 'done', requestHash: 'h1', status: 201, body: { id: 'x' } });
      // A write that failed gives its key back: a retry reserves it again. An answer is never given back.
      await store.releaseIdempotentWrite('cli_b', 'k-1', 'h2');
      expect(await store.getIdempotentResponse('cli_b', 'k-1')).toBeUndefined();
      expect(await store.reserveIdempotentWrite('cli_b', 'k-1', 'h2', now)).toEqual({ reserved: true });
      await store.releaseIdempotentWrite('cli_a', 'k-1', 'h1');
      expect(await store.getIdempotentResponse('cli_a', 'k-1')).toMatchObject({ state: 'done', status: 201 });
    });

    it('the audit chain verifies, entry by entry', async () => {
      await store.submitOrders([req()], ctx());
      await store.appendAudit({ at: now, actor: 'x', action: 'test', target: 'M-1', details: { a: 1 } });
      const v = await store.verifyAudit();
      expect(v.ok).toBe(true);
      expect(v.entries).toBe(2);
    });

    it('the audit chain: writes at once, some rolled back after their entry was written, leave one chain, numbered 1..N, that verifies', async () => {
      // Every third write fails whole after its admission's entry was written: that entry, and its number, go with it.
      const writes = Array.from({ length: 30 }, (_, i) =>
        i % 3 === 2
          ? store.submitOrders([req({ meterId: 'M-1' }), req({ meterId: 'NOPE' })], ctx())
          : store.appendAudit({ at: now + i, actor: 'ops', action: 'test', target: 'M-1', details: { i } }),
      );
      const results = await Promise.allSettled(writes);
      expect(results.filter((r) => r.status === 'rejected')).toHaveLength(10);
      await store.appendAudit({ at: now + 99, actor: 'ops', action: 'test', target: 'M-1', details: { i: 99 } });
      expect(await store.verifyAudit()).toMatchObject({ ok: true, entries: 21 });
      const entries = await store.listAudit({ limit: 100 });
      expect(entries.map((e) => e.seq)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
      // The entries of the writes that committed (PostgreSQL may commit concurrent writes in another order than made).
      expect(entries.map((e) => (e.details as { i: number }).i).sort((a, b) => a - b)).toEqual([...Array.from({ length: 30 }, (_, i) => i).filter((i) => i % 3 !== 2), 99]);
    });

    // Issue 14: the chain is keyed (HMAC under a key outside the database) and anchored outside it.
    describe('audit chain: what someone with the database but not the key can do is seen', () => {
      const db = (s: GatewayStore = store) => tamper.hands(s);
      const someEntries = async (n: number) => {
        await store.submitOrders([req()], ctx());
        for (let i = 2; i <= n; i++) await store.appendAudit({ at: now + i, actor: 'ops', action: 'test', target: 'M-1', details: { i } });
      };
      const anchorOf = async (s: GatewayStore): Promise<AuditAnchor> => ({ anchor: 'meterline-audit', at: new Date(now).toISOString(), instance: 'test', ...(await s.auditHead()) });

      it('a row written into the audit table with plain SQL is refused; written after dropping the guards it is reported with its seq, also after a restart (never chained)', async () => {
        await someEntries(2);
        const intruder = 'INSERT INTO audit (seq, at, actor, action, target, details, prev_hash, hash) VALUES (3, ?, ?, ?, ?, NULL, NULL, NULL)';
        await expect(db().sql(intruder, [now, 'intruder', 'order.approve', 'M-1'])).rejects.toThrow(/chain link|null/i);
        await db().dropAuditGuards();
        await db().sql(intruder, [now, 'intruder', 'order.approve', 'M-1']);
        expect(await store.verifyAudit()).toMatchObject({ ok: false, badSeq: 3, problem: expect.stringMatching(/entry 3 has no chain link/) });
        // A restart runs the migrations again: formerly that linked the row into the chain and the log read "intact".
        const again = await tamper.reopen(store);
        try {
          expect(await again.verifyAudit()).toMatchObject({ ok: false, badSeq: 3 });
          expect((await db(again).sql('SELECT hash FROM audit WHERE seq = 3'))[0]!.hash).toBeNull();
        } finally {
          await again.close();
        }
      });

      it('a row added with a link someone without the key computed is reported with its seq', async () => {
        await someEntries(3);
        const [head] = await db().sql('SELECT hash FROM audit WHERE seq = 3');
        const forged = { seq: 4, at: now + 9, actor: 'sup', action: 'order.approve', target: 'M-2', details: null };
        await db().sql('INSERT INTO audit (seq, at, actor, action, target, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, NULL, ?, ?)', [
          forged.seq, forged.at, forged.actor, forged.action, forged.target, head!.hash, unkeyedEntryHash(String(head!.hash), forged),
        ]);
        expect(await store.verifyAudit()).toMatchObject({ ok: false, badSeq: 4, problem: expect.stringMatching(/does not verify under the audit key/) });
      });

      it('the whole chain recomputed without the key (the old unkeyed links, or another key) is reported from entry 1', async () => {
        await someEntries(4);
        expect(await store.verifyAudit()).toMatchObject({ ok: true, entries: 4 });
        await db().dropAuditGuards();
        await db().sql('UPDATE audit SET actor = ? WHERE seq = 2', ['someone-else']);
        await db().relink(unkeyedEntryHash);
        expect(await store.verifyAudit()).toMatchObject({ ok: false, badSeq: 1, problem: expect.stringMatching(/entry 1 does not verify under the audit key/) });
        const wrong = AuditKey.random();
        await db().relink((prev, e) => wrong.entryHash(prev, e));
        expect(await store.verifyAudit()).toMatchObject({ ok: false, badSeq: 1 });
        const again = await tamper.reopen(store);
        try {
          expect(await again.verifyAudit()).toMatchObject({ ok: false, badSeq: 1 });
        } finally {
          await again.close();
        }
      });

      it('a cut-off tail is not seen by the chain alone, and is against an anchor taken before; anchors are points in history', async () => {
        await someEntries(3);
        const early = await anchorOf(store);
        await someEntries(3);
        const anchor = await anchorOf(store);
        expect(anchor.entries).toBe(6);
        expect(await store.verifyAudit({ anchors: [early, anchor] })).toMatchObject({ ok: true, entries: 6, anchorsChecked: 2 });
        await db().dropAuditGuards();
        await db().sql('DELETE FROM audit WHERE seq > 4');
        // The limit, plainly: without an anchor a shorter chain is still a chain.
        expect(await store.verifyAudit()).toMatchObject({ ok: true, entries: 4 });
        expect(await store.verifyAudit({ anchors: [early, anchor] })).toMatchObject({ ok: false, badSeq: 5, problem: expect.stringMatching(/entries 5 to 6 are missing.*tail was cut off/) });
        // The gateway writes on over the cut: the anchored entry 6 is now another entry.
        await store.appendAudit({ at: now + 50, actor: 'ops', action: 'test', target: 'M-1', details: null });
        await store.appendAudit({ at: now + 51, actor: 'ops', action: 'test', target: 'M-1', details: null });
        expect(await store.verifyAudit()).toMatchObject({ ok: true, entries: 6 });
        expect(await store.verifyAudit({ anchors: [early, anchor] })).toMatchObject({ ok: false, badSeq: 6, problem: expect.stringMatching(/not the entry the anchor taken at .* saw/) });
      });

      it('the keying record (where the keyed chain starts) cannot be deleted or moved unnoticed', async () => {
        await someEntries(2);
        await db().dropAuditGuards();
        await db().sql('UPDATE audit_keying SET keyed_from = 100');
        expect(await store.verifyAudit()).toMatchObject({ ok: false, problem: expect.stringMatching(/was changed: its HMAC does not verify/) });
        await db().sql('DELETE FROM audit_keying');
        expect(await store.verifyAudit()).toMatchObject({ ok: false, problem: expect.stringMatching(/is missing/) });
      });

      it('a keyed log opens only with its key: another key, no key or a malformed key file is refused at start, with its own code', async () => {
        await someEntries(2);
        const dir = mkdtempSync(join(tmpdir(), 'ml-key-'));
        await expect(tamper.reopen(store, fixedAuditKey(AuditKey.random()))).rejects.toMatchObject({ code: 'E_AUDIT_KEY_MISMATCH' });
        await expect(tamper.reopen(store, auditKeySource({ file: join(dir, 'absent.key'), mayCreate: false }))).rejects.toMatchObject({ code: 'E_AUDIT_KEY_MISSING' });
        writeFileSync(join(dir, 'bad.key'), 'not-a-key\n');
        await expect(tamper.reopen(store, auditKeySource({ file: join(dir, 'bad.key'), mayCreate: false }))).rejects.toMatchObject({ code: 'E_AUDIT_KEY_INVALID', message: expect.not.stringContaining('not-a-key') });
        // Nor does a key that exists elsewhere get made in its place: the log still opens with its own key.
        const again = await tamper.reopen(store);
        try {
          expect(await again.verifyAudit()).toMatchObject({ ok: true, entries: 2 });
        } finally {
          await again.close();
        }
      });
    });

    // The billing change feed (issue 20): what a billing receiver checks is that its own events are numbered 1, 2, 3, …
    // with nothing missing and nothing twice, whatever the other clients' orders do.
    const oneTo = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);
    const feedOf = async (client: string) => (await store.clientEvents(client, 0, 1000)).map((e) => [e.seq, e.kind, e.orderId]);
    const refusedArrears = (client: string, meterId: string) => req({ meterId, reason: 'arrears', requestedBy: client }); // refused at admission: an event

    it('change feed: each client numbers its own events 1, 2, 3, … with no gaps, with clients, payments and a rolled-back write interleaved', async () => {
      const [a1] = await store.submitOrders([refusedArrears('bill-a', 'M-1')], ctx());
      const [b1] = await store.submitOrders([refusedArrears('bill-b', 'M-1')], ctx());
      // bill-b's disconnect superseded by bill-a's reconnect: an event for bill-b.
      const [b2] = await store.submitOrders([req({ meterId: 'M-2', requestedBy: 'bill-b' })], ctx());
      const [aReconnect] = await store.submitOrders([req({ meterId: 'M-2', action: 'reconnect', reason: 'payment', requestedBy: 'bill-a' })], ctx());
      // credit control's cut-off, cancelled by bill-b's payment: an event for credit-control.
      await store.setMeterFlags('M-3', { prepaymentMode: true, prepaymentAgreementRef: 'PPA-3' }, 'billing', now);
      const [c1] = await store.submitOrders([req({ meterId: 'M-3', reason: 'credit_exhausted', reference: null, requestedBy: 'credit-control', origin: 'credit_control', notBefore: now + 3_600_000 })], ctx());
      const [paid] = await store.recordPayments(
        [{ client: 'bill-b', idempotencyKey: 'pay-1', requestHash: 'h', meterId: 'M-3', accountId: null, amountMinor: 10, kind: 'payment', posted: true, reference: null, receivedAt: now }],
        ctx(),
        { maxCreditBalanceMinor: 100_000_000 },
      );
      expect(paid!.payment.effects[0]!.cancelledOrders).toEqual([c1!.order.id]);
      // A write that rolls back (its second order names an unknown meter) takes its refusal's number back with it.
      await expect(store.submitOrders([refusedArrears('bill-a', 'M-3'), req({ meterId: 'NOPE', requestedBy: 'bill-a' })], ctx())).rejects.toMatchObject({ code: 'E_METER_NOT_FOUND' });
      const [a2] = await store.submitOrders([refusedArrears('bill-a', 'M-3')], ctx());
      await store.beginAttempts([aReconnect!.order.id], now, A(now));
      await store.completeAttempt({
        orderId: aReconnect!.order.id, attempt: 1, leaseOwner: 'gw-a', endedAt: now, latencyMs: 10, commandEvidence: null, readEvidence: null, observedRelay: 'connected', detail: null, observation: null,
        judgement: { rules: profile, facts: { command: 'ok', readBack: 'connected' }, now, random: 0 },
      });
      const [b3] = await store.submitOrders([req({ meterId: 'M-1', requestedBy: 'bill-b', notBefore: now + 3_600_000 })], ctx());
      await store.cancelOrder(b3!.order.id, 'ops', 'customer asked', now);

      expect(await feedOf('bill-a')).toEqual([
        [1, 'order.refused', a1!.order.id],
        [2, 'order.refused', a2!.order.id],
        [3, 'order.done', aReconnect!.order.id],
      ]);
      expect(await feedOf('bill-b')).toEqual([
        [1, 'order.refused', b1!.order.id],
        [2, 'order.superseded', b2!.order.id],
        [3, 'order.cancelled', b3!.order.id],
      ]);
      expect(await feedOf('credit-control')).toEqual([[1, 'order.cancelled', c1!.order.id]]);
      // Paging by cursor, and the delivery state of one client's event leaves the other's with the same number alone.
      expect((await store.clientEvents('bill-a', 1, 1)).map((e) => e.seq)).toEqual([2]);
      // One order's events (the order page): only that order's, and only in the asking client's own feed.
      expect((await store.clientEvents('bill-a', 0, 100, a2!.order.id)).map((e) => [e.seq, e.orderId])).toEqual([[2, a2!.order.id]]);
      expect(await store.clientEvents('bill-b', 0, 100, a2!.order.id)).toEqual([]);
      await store.markClientEvent('bill-a', 1, now, { delivered: true });
      await store.markClientEvent('bill-b', 2, now, { delivered: false, error: 'HTTP 503', retryAt: now + 1000 });
      expect((await store.pendingClientEvents('bill-a', 100)).map((e) => e.seq)).toEqual([2, 3]);
      expect((await store.pendingClientEvents('bill-b', 100)).map((e) => [e.seq, e.attempts, e.lastError])).toEqual([
        [1, 0, null],
        [2, 1, 'HTTP 503'],
        [3, 0, null],
      ]);
    });

    it('change feed: writes for several clients at once, some of them rolled back, still number each client 1..N with no gaps or repeats', async () => {
      const clients = ['bill-a', 'bill-b', 'bill-c'];
      const meters = ['M-1', 'M-2', 'M-3'];
      const writes = Array.from({ length: 60 }, (_, i) => {
        const client = clients[i % clients.length]!;
        const first = refusedArrears(client, meters[Math.floor(i / 3) % meters.length]!);
        // Every fifth write fails whole after its refusal was written: its event must not take a number.
        return store.submitOrders(i % 5 === 4 ? [first, req({ meterId: 'NOPE', requestedBy: client })] : [first], ctx());
      });
      const results = await Promise.allSettled(writes);
      expect(results.filter((r) => r.status === 'rejected')).toHaveLength(12);
      for (const client of clients) {
        const admitted = results.flatMap((r, i) => (r.status === 'fulfilled' && i % clients.length === clients.indexOf(client) ? [r.value[0]!.order.id] : []));
        const feed = await store.clientEvents(client, 0, 1000);
        expect(feed.map((e) => e.seq)).toEqual(oneTo(admitted.length));
        expect(feed.map((e) => e.orderId).sort()).toEqual([...admitted].sort());
      }
    });

    it('lists orders with cursor pagination and counts them by state', async () => {
      await store.submitOrders([req({ meterId: 'M-1' }), req({ meterId: 'M-2' }), req({ meterId: 'M-3' })], ctx());
      const page1 = await store.listOrders({ limit: 2 });
      const page2 = await store.listOrders({ limit: 2, after: page1[1]!.id });
      expect([...page1, ...page2].map((o) => o.meterId)).toEqual(['M-1', 'M-2', 'M-3']);
      expect(await store.countOrdersByState()).toEqual({ queued: 3 });
      expect(await store.existingMeterIds(['M-1', 'X', 'M-3'])).toEqual(new Set(['M-1', 'M-3']));
    });

    it('counts open orders by state for the queue depth: a finished order is not in the queue', async () => {
      const [a, b] = await store.submitOrders([req({ meterId: 'M-1' }), req({ meterId: 'M-2' })], ctx());
      await store.cancelOrder(a!.order.id, 'ops', 'customer asked', now);
      expect(await store.countOrdersByState()).toEqual({ queued: 1, cancelled: 1 });
      expect(await store.countOpenOrdersByState()).toEqual({ queued: 1 });
      await store.cancelOrder(b!.order.id, 'ops', 'customer asked', now);
      expect(await store.countOpenOrdersByState()).toEqual({});
    });

    it('lists orders newest first page by page; an order created while a user pages neither repeats nor is skipped on later pages', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await store.submitOrders([req({ meterId: `M-${(i % 3) + 1}` })], ctx()))[0]!.order.id);
      const page1 = await store.listOrders({ order: 'desc', limit: 2 });
      expect(page1.map((o) => o.id)).toEqual([ids[4], ids[3]]);
      now += 1000;
      const late = (await store.submitOrders([req({ meterId: 'M-1' })], ctx()))[0]!.order.id;
      const page2 = await store.listOrders({ order: 'desc', limit: 2, after: page1[1]!.id });
      const page3 = await store.listOrders({ order: 'desc', limit: 2, after: page2[1]!.id });
      expect([...page2, ...page3].map((o) => o.id)).toEqual([ids[2], ids[1], ids[0]]);
      expect((await store.listOrders({ order: 'desc', limit: 1 }))[0]!.id).toBe(late);
      // Oldest first is the same walk the other way.
      expect((await store.listOrders({ order: 'asc', limit: 10 })).map((o) => o.id)).toEqual([...ids, late]);
      await expect(store.listOrders({ order: 'desc', limit: 2, after: 'ord_no_such' })).rejects.toMatchObject({ code: 'E_VALIDATION', message: expect.stringContaining('after') });
    });

    it('filters orders by state (one or several), action, meter, requester, reason, note, creation time and id prefix, alike in every store', async () => {
      const t0 = now;
      const [a] = await store.submitOrders([req({ meterId: 'M-1', note: 'Gate code 4411, dog' })], ctx());
      now += 60_000;
      const [b] = await store.submitOrders([req({ meterId: 'M-2', action: 'reconnect', reason: 'payment', paymentAt: now, reference: null, requestedBy: 'billing', note: 'paid at kiosk' })], ctx());
      now += 60_000;
      const [c] = await store.submitOrders([req({ meterId: 'M-3', reason: 'safety', reference: 'INC-9', note: '=HYPERLINK("x")' })], ctx());
      await store.cancelOrder(a!.order.id, 'ops', 'wrong meter', now);
      const ids = async (q: Omit<Parameters<GatewayStore['listOrders']>[0], 'limit'>) => (await store.listOrders({ order: 'desc', limit: 100, ...q })).map((o) => o.id);
      const [A, B, C] = [a!.order.id, b!.order.id, c!.order.id];
      expect(await ids({})).toEqual([C, B, A]);
      expect(await ids({ states: ['cancelled'] })).toEqual([A]);
      expect(await ids({ states: ['queued', 'cancelled'] })).toEqual([C, B, A]);
      expect(await ids({ states: ['queued'], meterId: 'M-3' })).toEqual([C]);
      expect(await ids({ meterId: 'M-1' })).toEqual([A]);
      expect(await ids({ action: 'reconnect' })).toEqual([B]);
      expect(await ids({ requestedBy: 'billing' })).toEqual([B]);
      expect(await ids({ reason: 'safety' })).toEqual([C]);
      expect(await ids({ noteContains: 'code 44' })).toEqual([A]);
      expect(await ids({ noteContains: 'CODE 44' })).toEqual([]);
      expect(await ids({ noteContains: '=HYPERLINK' })).toEqual([C]);
      expect(await ids({ createdFrom: t0 + 60_000 })).toEqual([C, B]);
      expect(await ids({ createdFrom: t0, createdBefore: t0 + 60_000 })).toEqual([A]);
      expect(await ids({ idPrefix: B })).toEqual([B]);
      const shared = A.slice(0, [...A].findIndex((ch, i) => ch !== B[i] || ch !== C[i]));
      expect(await ids({ idPrefix: shared })).toEqual([C, B, A]);
      expect(await ids({ idPrefix: shared.toUpperCase() })).toEqual([]);
      expect(await ids({ idPrefix: 'ord_%' })).toEqual([]);
      // A filtered walk pages like the whole list.
      const first = await store.listOrders({ order: 'desc', limit: 1, states: ['queued', 'cancelled'], action: 'disconnect' });
      expect(first.map((o) => o.id)).toEqual([C]);
      expect((await store.listOrders({ order: 'desc', limit: 5, states: ['queued', 'cancelled'], action: 'disconnect', after: C })).map((o) => o.id)).toEqual([A]);
    });

    const H = 3_600_000;
    const sighting = (o: Partial<EpisodeClaim> = {}): EpisodeClaim => ({
      meterId: 'M-1',
      kind: 'relay_audit_open_without_order',
      from: now,
      to: now,
      whPerHour: null,
      message: 'Meter M-1 is open but no order of ours ever switched it.',
      details: { exception: 'open_without_order' },
      continues: 'while_open',
      alert: { kind: 'alert.relay_audit', payload: { meterId: o.meterId ?? 'M-1', exception: 'open_without_order' } },
      ...o,
    });

    it('alert episodes: one sighting claimed by several callers at once opens one episode and one alert; later sightings continue it; a run that no longer sees it ends it', async () => {
      const claims = await Promise.all(Array.from({ length: 6 }, () => store.claimEpisode(sighting(), now)));
      expect(claims.filter((c) => c.opened)).toHaveLength(1);
      expect(new Set(claims.map((c) => c.episode.id)).size).toBe(1);
      const first = claims.find((c) => c.opened)!.episode;
      expect(first).toMatchObject({ meterId: 'M-1', kind: 'relay_audit_open_without_order', openedAt: now, from: now, to: now, endedAt: null, workOrderId: null, details: { exception: 'open_without_order' } });
      const alerts = (await store.listAlerts(100)).filter((a) => a.kind === 'alert.relay_audit');
      expect(alerts).toHaveLength(1);
      expect(alerts[0]).toMatchObject({ meterId: 'M-1', payload: { episodeId: first.id, exception: 'open_without_order' } });

      const later = await store.claimEpisode(sighting({ from: now + H, to: now + H }), now + H);
      expect(later).toMatchObject({ opened: false, episode: { id: first.id, from: now, to: now + H } });
      expect((await store.claimEpisode(sighting({ meterId: 'M-2' }), now + H)).opened).toBe(true); // another meter: its own episode

      const ended = await store.endEpisodes('relay_audit_', [{ meterId: 'M-2', kind: 'relay_audit_open_without_order' }], now + 2 * H);
      expect(ended.map((e) => e.id)).toEqual([first.id]);
      expect((await store.listEpisodes({ meterId: 'M-1', limit: 10 }))[0]).toMatchObject({ id: first.id, endedAt: now + 2 * H });
      const again = await store.claimEpisode(sighting({ from: now + 3 * H, to: now + 3 * H }), now + 3 * H);
      expect(again.opened).toBe(true);
      expect(again.episode.id).not.toBe(first.id);
      expect((await store.listEpisodes({ kindPrefix: 'relay_audit_', openOnly: true, limit: 10 })).map((e) => e.meterId).sort()).toEqual(['M-1', 'M-2']);
      expect(await store.listEpisodes({ kindPrefix: 'consumption_', limit: 10 })).toEqual([]);
      expect((await store.listAlerts(100)).filter((a) => a.kind === 'alert.relay_audit')).toHaveLength(3);
    });

    it('alerts: acknowledged then cleared, each audited with its note; acknowledging twice changes nothing; a cleared alert is refused; an unknown id is E_ALERT_NOT_FOUND; the list filters by state', async () => {
      await store.recordAlert('alert.success_rate', { scope: 'link', key: 'L1', action: 'disconnect', rate: 0.4 }, now);
      await store.recordAlert('alert.circuit_open', { scope: 'profile', key: 'p', action: 'disconnect' }, now + 1);
      const [breaker, rate] = await store.listAlerts(10);
      expect(breaker).toMatchObject({ kind: 'alert.circuit_open', state: 'open', acknowledgedAt: null, acknowledgedBy: null, clearedAt: null, clearedBy: null });
      expect(rate).toMatchObject({ kind: 'alert.success_rate', meterId: '-', state: 'open' });

      const acked = await store.actOnAlert(rate!.id, 'acknowledge', 'looking at L1', 'sup', now + 10);
      expect(acked).toMatchObject({ id: rate!.id, state: 'acknowledged', acknowledgedAt: now + 10, acknowledgedBy: 'sup', clearedAt: null });
      expect(await store.actOnAlert(rate!.id, 'acknowledge', null, 'op', now + 20)).toMatchObject({ state: 'acknowledged', acknowledgedAt: now + 10, acknowledgedBy: 'sup' });
      expect((await store.listAlerts(10, 'acknowledged')).map((a) => a.id)).toEqual([rate!.id]);
      expect((await store.listAlerts(10, 'open')).map((a) => a.id)).toEqual([breaker!.id]);

      const cleared = await store.actOnAlert(rate!.id, 'clear', 'L1 back', 'op', now + 30);
      expect(cleared).toMatchObject({ state: 'cleared', acknowledgedBy: 'sup', clearedAt: now + 30, clearedBy: 'op' });
      expect(await store.actOnAlert(breaker!.id, 'clear', null, 'op', now + 40)).toMatchObject({ state: 'cleared', acknowledgedAt: null, clearedBy: 'op' }); // clearing an open one is fine too
      for (const act of ['acknowledge', 'clear'] as const) {
        await expect(store.actOnAlert(rate!.id, act, null, 'op', now + 50)).rejects.toMatchObject({ code: 'E_ALERT_CLEARED' });
      }
      await expect(store.actOnAlert('ntf_nope', 'acknowledge', null, 'op', now)).rejects.toMatchObject({ code: 'E_ALERT_NOT_FOUND' });
      expect((await store.listAlerts(10, 'cleared')).map((a) => a.id)).toEqual([breaker!.id, rate!.id]);
      expect(await store.listAlerts(10, 'open')).toEqual([]);

      const audit = await store.listAudit({ action: 'alert.', limit: 10 });
      expect(audit.map((e) => [e.action, e.actor, e.target, (e.details as { note: string | null }).note])).toEqual([
        ['alert.acknowledge', 'sup', rate!.id, 'looking at L1'],
        ['alert.clear', 'op', rate!.id, 'L1 back'],
        ['alert.clear', 'op', breaker!.id, null],
      ]);
      expect((await store.listAudit({ action: 'alert.clear', newestFirst: true, limit: 10 })).map((e) => e.target)).toEqual([breaker!.id, rate!.id]);
      const newest = (await store.listAudit({ newestFirst: true, limit: 1 }))[0]!;
      expect((await store.listAudit({ newestFirst: true, beforeSeq: newest.seq, limit: 2 })).map((e) => e.seq)).toEqual([newest.seq - 1, newest.seq - 2]);
      expect((await store.verifyAudit()).ok).toBe(true);
    });

    it('alert episodes from reading history: a finding overlapping the open episode continues it (its end and rate from the latest), an older one changes nothing, a later separate one opens a new episode', async () => {
      const finding = (from: number, to: number, whPerHour: number) =>
        sighting({ kind: 'consumption_excessive', continues: 'overlapping', from, to, whPerHour, alert: { kind: 'alert.abnormal_consumption', payload: { meterId: 'M-1', kind: 'excessive' } } });
      expect((await store.claimEpisode(finding(now, now + H, 20_000), now + H)).opened).toBe(true);
      expect(await store.claimEpisode(finding(now, now + 2 * H, 25_000), now + 2 * H)).toMatchObject({ opened: false, episode: { from: now, to: now + 2 * H, whPerHour: 25_000 } });
      expect(await store.claimEpisode(finding(now, now + H, 20_000), now + 2 * H)).toMatchObject({ opened: false, episode: { to: now + 2 * H, whPerHour: 25_000 } });
      const next = await store.claimEpisode(finding(now + 5 * H, now + 6 * H, 18_000), now + 6 * H);
      expect(next.opened).toBe(true);
      const list = await store.listEpisodes({ meterId: 'M-1', kindPrefix: 'consumption_', limit: 10 });
      expect(list.map((e) => [e.from, e.to, e.whPerHour, e.endedAt])).toEqual([
        [now + 5 * H, now + 6 * H, 18_000, null],
        [now, now + 2 * H, 25_000, now + 6 * H],
      ]);
      expect((await store.listAlerts(100)).filter((a) => a.kind === 'alert.abnormal_consumption')).toHaveLength(2);
    });

    it('an inspection work order is raised once with its episode, listed beside switch work orders, told to the field, and completed with an outcome and no switch order', async () => {
      await store.setMeterFlags('M-1', { medicalEquipment: true }, 'billing', now);
      const inspection = { reason: 'relay audit: open with no order', dueAt: now + 24 * H, priority: 1, region: 'north' };
      const claims = await Promise.all([store.claimEpisode(sighting({ inspection }), now), store.claimEpisode(sighting({ inspection }), now)]);
      const woId = claims.find((c) => c.opened)!.episode.workOrderId!;
      expect(claims.map((c) => c.episode.workOrderId)).toEqual([woId, woId]);
      const [o] = await store.submitOrders([req({ meterId: 'M-2', action: 'reconnect', reason: 'payment', paymentAt: now })], ctx());
      const escalated = await store.escalateOrder(o!.order.id, now, { reason: 'remote attempts exhausted', dueAt: now + 20 * H, priority: 2 }, now + H);
      expect(escalated!.workOrder).toMatchObject({ kind: 'switch_order', orderId: o!.order.id, action: 'reconnect' });

      const open = await store.listWorkOrders({ status: 'open', limit: 10 });
      expect(open.map((w) => [w.kind, w.meterId, w.orderId, w.action, w.priority])).toEqual([
        ['inspection', 'M-1', null, 'inspect', 1],
        ['switch_order', 'M-2', o!.order.id, 'reconnect', 2],
      ]);
      const told = (await store.pendingNotifications(now, 10, ['work_order.'])).filter((x) => x.kind === 'work_order.created');
      expect(told.map((x) => (x.payload as { kind: string }).kind).sort()).toEqual(['inspection', 'switch_order']);

      const done = await store.completeWorkOrder(woId, 'disconnected', 'relay opened again and sealed', 'crew-1', now + 1);
      expect(done.order).toBeNull();
      expect(done.workOrder).toMatchObject({ status: 'done', outcome: 'disconnected', kind: 'inspection' });
      expect((await store.getMeter('M-1'))!.observed).toMatchObject({ relay: 'disconnected', source: 'field' });
      await expect(store.completeWorkOrder(woId, 'reconnected', null, 'crew-1', now + 2)).rejects.toMatchObject({ code: 'E_WORK_ORDER_STATE' });
      const audit = (await store.listAudit({ target: 'M-1', limit: 50 })).map((a) => a.action);
      expect(audit).toEqual(expect.arrayContaining(['work_order.raise', 'work_order.complete']));
      expect((await store.verifyAudit()).ok).toBe(true);
    });

    it('a close refused for voltage on the load side after the order went to the field: its open work order is revised (kind, reason, priority 1), told to the field and audited; no second one, no remote attempt after', async () => {
      const [o] = await store.submitOrders([req({ meterId: 'M-2', action: 'reconnect', reason: 'payment', paymentAt: now })], ctx());
      const id = o!.order.id;
      const raised = await store.escalateOrder(id, now, { reason: 'cannot finish remotely in time', dueAt: now + 19 * H, priority: 3 }, now + H);
      expect(raised!.workOrder).toMatchObject({ kind: 'switch_order', priority: 3 });
      const t = now + H;
      expect((await store.beginAttempts([id], t, A(t))).map((x) => x.state)).toEqual(['in_flight']);
      const checks = { ...profile, relay: { ...profile.relay, loadSideVoltageCheck: { checkedBy: 'meter' as const, maxVoltageV: 50 } } };
      const policy = { fieldLeadMs: 8 * H, dueMarginMs: H, slowRetryMs: 30 * 60_000, escalateDisconnects: false };
      const none = { medicalEquipment: false, vulnerable: false, priorityRegister: false };
      const after = await store.completeAttempt({
        orderId: id,
        attempt: 1,
        leaseOwner: 'gw-a',
        endedAt: t,
        latencyMs: 90,
        commandEvidence: '{"result":"nack","reason":"LOAD_SIDE_LIVE"}',
        readEvidence: null,
        observedRelay: 'disconnected',
        detail: 'command: load_side_voltage (meter refused to close: 231 V on the load side)',
        observation: null,
        judgement: { rules: checks, facts: { command: 'load_side_voltage', readBack: 'disconnected', loadSideVoltageV: 231 }, now: t, random: 0, flags: none, escalation: policy },
      });
      expect(after).toMatchObject({ state: 'escalated', nextAttemptAt: NO_REMOTE_ATTEMPT });
      const mine = (await store.listWorkOrders({ limit: 10 })).filter((w) => w.orderId === id);
      expect(mine).toHaveLength(1);
      // Found by its switch order (the order page).
      expect((await store.listWorkOrders({ orderId: id, limit: 10 })).map((w) => w.id)).toEqual([raised!.workOrder.id]);
      expect(await store.listWorkOrders({ orderId: 'no-such-order', limit: 10 })).toEqual([]);
      expect(mine[0]).toMatchObject({ id: raised!.workOrder.id, kind: 'load_side_voltage', priority: 1, status: 'open', dueAt: now + 19 * H });
      expect(mine[0]!.reason).toMatch(/^voltage on the load side: do not close from afar.*close refused: 231 V on the load side/);
      const told = (await store.pendingNotifications(t, 10, ['work_order.'])).filter((x) => x.kind === 'work_order.updated');
      expect(told.map((x) => (x.payload as { kind: string; priority: number }).kind)).toEqual(['load_side_voltage']);
      expect((await store.listAudit({ target: 'M-2', limit: 50 })).map((a) => a.action)).toContain('work_order.revise');
      expect((await store.verifyAudit()).ok).toBe(true);
    });

    // Money (issue 14): exact whole minor units in and out, bounded in the ledger and by the balance limit.
    const payment = (o: Partial<PaymentRequest> & { idempotencyKey: string }): PaymentRequest => ({
      client: 'bill-m',
      requestHash: `h-${o.idempotencyKey}`,
      meterId: 'M-1',
      accountId: null,
      amountMinor: 100,
      kind: 'top_up',
      posted: true,
      reference: null,
      receivedAt: now,
      ...o,
    });

    it('money: payments are stored and read back as exact whole minor units; the ledger takes no event with an invalid or unbounded amount', async () => {
      await store.setMeterFlags('M-1', { prepaymentMode: true, prepaymentAgreementRef: 'PPA-1' }, 'billing', now);
      const limits = { maxCreditBalanceMinor: 1_000_000_000 };
      const out = await store.recordPayments([payment({ idempotencyKey: 'big', amountMinor: 999_999_999 }), payment({ idempotencyKey: 'dime', amountMinor: 10, kind: 'payment' })], ctx(), limits);
      expect(out.map((o) => [o.kind, o.payment.amountMinor])).toEqual([['created', 999_999_999], ['created', 10]]);
      expect((await store.listPayments({ client: 'bill-m', limit: 10 })).map((p) => p.amountMinor).sort((a, b) => a! - b!)).toEqual([10, 999_999_999]);
      expect(await store.creditEvents('M-1')).toEqual([{ type: 'top_up', amount: 999_999_999, at: now, ref: out[0]!.payment.id }]);
      for (const bad of [
        { type: 'top_up', amount: 1e302, at: now, ref: 'huge' },
        { type: 'top_up', amount: 12.5, at: now, ref: 'fraction' },
        { type: 'consumption', costMicro: Number.POSITIVE_INFINITY, at: now, fromWh: 0, toWh: 1 },
        { type: 'consumption', cost: 0.25, at: now, fromWh: 0, toWh: 1 },
        { type: 'adjustment', amount: Number.NaN, at: now, reason: 'x' },
      ]) {
        await expect(store.appendCreditEvent('M-1', bad as unknown as CreditEvent, 'ops')).rejects.toThrow(/not valid/);
      }
      expect(await store.creditEvents('M-1')).toHaveLength(1);
    });

    it('money: a top-up that would take a prepayment balance over the limit is refused and records nothing, in recordPayments and in checkPayments; debt is repaid first', async () => {
      await store.setMeterFlags('M-1', { prepaymentMode: true, prepaymentAgreementRef: 'PPA-1' }, 'billing', now);
      const limits = { maxCreditBalanceMinor: 10_000 };
      // A file's top-ups count together: 6,000 then 5,000 make 11,000.
      const file = [payment({ idempotencyKey: 'f-1', amountMinor: 6000 }), payment({ idempotencyKey: 'f-2', amountMinor: 5000 })];
      expect((await store.checkPayments(file, limits)).overLimit).toEqual([{ index: 1, meterId: 'M-1', balanceAfterMinor: 11_000 }]);
      await expect(store.recordPayments(file, ctx(), limits)).rejects.toMatchObject({ code: 'E_CREDIT_BALANCE_LIMIT' });
      expect(await store.listPayments({ client: 'bill-m', limit: 10 })).toEqual([]);
      expect(await store.creditEvents('M-1')).toEqual([]);
      // Up to the limit exactly is accepted; one minor unit more is not. A payment (not a top-up) and a meter not in prepayment are not bounded by it.
      await store.recordPayments([payment({ idempotencyKey: 'a', amountMinor: 6000 }), payment({ idempotencyKey: 'b', amountMinor: 4000 })], ctx(), limits);
      await expect(store.recordPayments([payment({ idempotencyKey: 'c', amountMinor: 1 })], ctx(), limits)).rejects.toMatchObject({ code: 'E_CREDIT_BALANCE_LIMIT', details: { overLimit: [{ meterId: 'M-1', balanceAfterMinor: 10_001 }] } });
      expect((await store.checkPayments([payment({ idempotencyKey: 'c', amountMinor: 1 })], limits)).overLimit).toHaveLength(1);
      await store.recordPayments([payment({ idempotencyKey: 'd', amountMinor: 50_000, kind: 'payment' }), payment({ idempotencyKey: 'e', meterId: 'M-2', amountMinor: 50_000 })], ctx(), limits);
      // A replayed top-up adds nothing, so it is never over the limit.
      expect((await store.checkPayments([payment({ idempotencyKey: 'b', amountMinor: 4000 })], limits)).overLimit).toEqual([]);
      // Spent down to 0 with 3,000 owed: a top-up of 13,000 repays the 3,000 first and leaves exactly 10,000.
      await store.appendCreditEvent('M-1', { type: 'adjustment', amount: -13_000, at: now, reason: 'test: spent' }, 'ops');
      const repay = [payment({ idempotencyKey: 'g', amountMinor: 13_000 })];
      expect((await store.checkPayments(repay, limits)).overLimit).toEqual([]);
      await store.recordPayments(repay, ctx(), limits);
      expect(await store.listPayments({ client: 'bill-m', limit: 10 })).toHaveLength(5);
    });

    it('meter swaps: recorded and audited, listed oldest first; an unknown meter is refused', async () => {
      const s1 = await store.recordMeterSwap({ meterId: 'M-1', at: now - 2 * H, oldFinalWh: 18_402_310, newFirstWh: 12, newSerial: 'EM340-1', reference: 'job 1', recordedBy: 'ops' }, now);
      const s2 = await store.recordMeterSwap({ meterId: 'M-1', at: now - H, oldFinalWh: 400, newFirstWh: 0.5, newSerial: null, reference: null, recordedBy: 'ops' }, now);
      expect(s1).toMatchObject({ meterId: 'M-1', at: now - 2 * H, oldFinalWh: 18_402_310, newFirstWh: 12, newSerial: 'EM340-1', reference: 'job 1', recordedBy: 'ops', recordedAt: now });
      expect((await store.listMeterSwaps('M-1', 10)).map((s) => s.id)).toEqual([s1.id, s2.id]);
      expect((await store.listMeterSwaps('M-1', 1)).map((s) => [s.id, s.newFirstWh])).toEqual([[s2.id, 0.5]]);
      expect(await store.listMeterSwaps('M-2', 10)).toEqual([]);
      await expect(store.recordMeterSwap({ meterId: 'M-404', at: now, oldFinalWh: 1, newFirstWh: 0, newSerial: null, reference: null, recordedBy: 'ops' }, now)).rejects.toMatchObject({ code: 'E_METER_NOT_FOUND' });
      expect((await store.listAudit({ target: 'M-1', limit: 50 })).filter((a) => a.action === 'meter.swap')).toHaveLength(2);
    });
  });

  describeMeterKeysConformance(name, makeStore, tamper);
  describeOrderSeriesConformance(name, makeStore);
}
