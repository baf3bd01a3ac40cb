import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AttemptFacts } from '../../src/domain/attempt-verdict.js';
import { NO_LOAD_SIDE_CHECK } from '../../src/domain/firmware-profile.js';
import { DEFAULT_FLAGS } from '../../src/domain/policy/meter-facts.js';
import type { GatewayStore, OrderRequest } from '../../src/store/store.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * Orders over time (issue 17, the overview's charts), run by describeStoreConformance against every store: orders
 * finished per bucket, how many ended well remotely, and the queue depth at each bucket's end, from orders with
 * known created and finished times, including orders from before the range.
 */
export function describeOrderSeriesConformance(name: string, makeStore: () => Promise<GatewayStore>): void {
  describe(`GatewayStore conformance: ${name}: orders over time`, () => {
    let store: GatewayStore;
    const T0 = 1_764_000_000_000;
    const MIN = 60_000;
    let seq = 0;
    const profile = { relay: { remoteReconnect: 'closes' as const, operateTimeMs: 0, loadSideVoltageCheck: NO_LOAD_SIDE_CHECK }, retry: { maxAttempts: 1, baseDelayMs: 1000, maxDelayMs: 1000 } };
    const escalation = { fieldLeadMs: 8 * 3_600_000, dueMarginMs: 3_600_000, slowRetryMs: 30 * MIN, escalateDisconnects: false };

    beforeEach(async () => {
      store = await makeStore();
      await store.migrate();
      await store.upsertMeters([1, 2, 3, 4, 5, 6].map((i) => ({ meterId: `M-S${i}`, profileId: 'p', link: 'L1', region: 'north' })), T0 - 10 * MIN);
    });
    afterEach(async () => {
      await store.close();
    });

    const submit = async (meterId: string, action: 'reconnect' | 'disconnect', at: number) => {
      const request: OrderRequest =
        action === 'reconnect'
          ? { meterId, action, reason: 'payment', note: null, urgent: false, notBefore: null, paymentAt: at, requestedBy: 'billing', idempotencyKey: null, requestHash: meterId }
          : { meterId, action, reason: 'customer_request', reference: 'REQ-1', note: null, urgent: false, notBefore: null, paymentAt: null, requestedBy: 'ops', idempotencyKey: null, requestHash: meterId };
      const [out] = await store.submitOrders([request], { now: at, reconnectLimitHours: 24, newOrderId: () => `ord_s${String(++seq).padStart(5, '0')}`, policy: openPolicy() });
      expect(out!.order.state).toBe('queued');
      return out!.order.id;
    };
    /** One attempt at `at`: ok (the relay as asked) or a timeout; one attempt allowed, so a timeout ends the order. */
    const attempt = async (orderId: string, at: number, ok: boolean) => {
      await store.beginAttempts([orderId], at, { owner: 'gw-a', until: at + 30_000 });
      const order = (await store.getOrder(orderId))!;
      const facts: AttemptFacts = ok ? { command: 'ok', readBack: order.action === 'disconnect' ? 'disconnected' : 'connected' } : { command: 'timeout', readBack: undefined };
      return store.completeAttempt({
        orderId, attempt: 1, leaseOwner: 'gw-a', endedAt: at, latencyMs: 10, commandEvidence: null, readEvidence: null, observedRelay: facts.readBack ?? null, detail: null, observation: null,
        judgement: { rules: profile, facts, now: at, random: 0, flags: DEFAULT_FLAGS, escalation },
      });
    };

    it('counts finished, done and failed-or-escalated orders per bucket, and the orders open at each bucket’s end', async () => {
      // Before the range: one order still open (it counts in every bucket's depth), one done before the range starts.
      const early = await submit('M-S5', 'reconnect', T0 - 2 * MIN);
      const before = await submit('M-S6', 'reconnect', T0 - 2 * MIN);
      await attempt(before, T0 - 100_000, true);
      // Bucket 0: four orders; one done.
      const a = await submit('M-S1', 'reconnect', T0 + 1_000);
      const b = await submit('M-S2', 'disconnect', T0 + 2_000);
      const c = await submit('M-S3', 'reconnect', T0 + 3_000);
      const d = await submit('M-S4', 'disconnect', T0 + 4_000);
      expect((await attempt(a, T0 + 10_000, true)).state).toBe('done');
      // Bucket 1: a disconnect fails, a reconnect goes to the field.
      expect((await attempt(b, T0 + MIN + 10_000, false)).state).toBe('failed');
      expect((await attempt(c, T0 + MIN + 20_000, false)).state).toBe('escalated');
      // Bucket 2: a person cancels an order: it leaves the queue but did not finish.
      await store.cancelOrder(d, 'ops', 'wrong meter', T0 + 2 * MIN + 10_000);

      const series = await store.orderSeries(T0, T0 + 3 * MIN, MIN);
      expect(series).toEqual([
        { at: T0, finished: 1, done: 1, failedOrEscalated: 0, successRate: 1, queueDepth: 4 }, // early, b, c, d
        { at: T0 + MIN, finished: 2, done: 0, failedOrEscalated: 2, successRate: 0, queueDepth: 3 }, // early, c (escalated), d
        { at: T0 + 2 * MIN, finished: 0, done: 0, failedOrEscalated: 0, successRate: null, queueDepth: 2 }, // early, c
      ]);
      expect(early).toBeDefined();

      // A range that starts later: the depth at its start comes from orders created before it.
      const later = await store.orderSeries(T0 + MIN, T0 + 2 * MIN + 30_000, 30_000);
      expect(later.map((x) => [x.at - T0, x.finished, x.queueDepth])).toEqual([
        [60_000, 2, 3], // open at its start: early, b, c, d; b failed at +70 s, c escalated at +80 s (still open)
        [90_000, 0, 3],
        [120_000, 0, 2], // d cancelled at +130 s
      ]);
    });

    it('success-rate statistics count the distinct meters whose attempts and orders failed (a scope alert needs enough of them)', async () => {
      const orders = [];
      for (const [i, meterId] of ['M-S1', 'M-S2', 'M-S3'].entries()) orders.push(await submit(meterId, 'reconnect', T0 + i));
      await attempt(orders[0]!, T0 + 10_000, true);
      await attempt(orders[1]!, T0 + 10_000, false);
      await attempt(orders[2]!, T0 + 10_000, false);
      // Two more failed reconnects on a meter that failed already: still two meters.
      for (const at of [T0 + MIN, T0 + 2 * MIN]) await attempt(await submit('M-S2', 'reconnect', at), at + 1_000, false);
      expect(await store.attemptStats(T0)).toEqual([{ profileId: 'p', link: 'L1', region: 'north', action: 'reconnect', attempts: 5, ok: 1, firstAttempts: 5, firstOk: 1, failedMeters: 2 }]);
      // Each new reconnect supersedes the meter's escalated one, so three orders count as finished.
      expect(await store.orderOutcomeStats(T0)).toEqual([{ profileId: 'p', link: 'L1', region: 'north', action: 'reconnect', finished: 3, succeeded: 1, failedMeters: 2 }]);
    });

    it('an empty store and a range with no order: every bucket zero, success rate null', async () => {
      expect(await store.orderSeries(T0, T0 + 2 * MIN, MIN)).toEqual([
        { at: T0, finished: 0, done: 0, failedOrEscalated: 0, successRate: null, queueDepth: 0 },
        { at: T0 + MIN, finished: 0, done: 0, failedOrEscalated: 0, successRate: null, queueDepth: 0 },
      ]);
    });
  });
}
