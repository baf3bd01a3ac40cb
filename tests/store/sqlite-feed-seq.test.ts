import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StatementCounter } from '../../src/store/statement-counter.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { OrderRequest, SubmitContext } from '../../src/store/store.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * The SQLite store numbers each billing client's change feed 1, 2, 3, … (sqlite-billing.ts). Within one batch's
 * transaction it keeps each client's last number in memory (issue 19: no read of the feed's end per event), and
 * forgets it whenever that transaction or a write's savepoint rolls back, so a rolled-back event leaves no gap.
 */
describe('SQLite store: the change feed numbers kept for a batch', () => {
  const NEXT_SEQ = 'SELECT COALESCE(MAX(seq), 0) + 1';
  let counter: StatementCounter;
  let store: SqliteStore;
  const now = 1_764_000_000_000;
  let seq = 0;
  const ctx = (): SubmitContext => ({ now, reconnectLimitHours: 24, newOrderId: () => `ord_${String(++seq).padStart(6, '0')}`, policy: openPolicy() });
  const req = (o: Partial<OrderRequest> = {}): OrderRequest => ({
    meterId: 'M-1', action: 'disconnect', reason: 'customer_request', reference: 'REQ-1', note: null, urgent: false,
    notBefore: null, paymentAt: null, requestedBy: 'bill-a', idempotencyKey: null, requestHash: 'h', ...o,
  });
  // Refused at admission (arrears with no notice served): an event for its client.
  const refused = (client: string, meterId = 'M-1') => req({ meterId, reason: 'arrears', requestedBy: client });
  const feedReads = () => counter.snapshot().byStatement.filter((s) => s.statement.startsWith(NEXT_SEQ)).reduce((n, s) => n + s.count, 0);

  beforeEach(async () => {
    counter = new StatementCounter();
    store = new SqliteStore(':memory:', { countStatements: counter });
    await store.migrate();
    await store.upsertMeters(['M-1', 'M-2'].map((meterId) => ({ meterId, profileId: 'p', link: 'L1', region: 'north' })), now);
  });
  afterEach(async () => {
    await store.close();
  });

  it('reads a client\'s last number once per batch, not once per event, and numbers the batch\'s events on from it', async () => {
    expect((await store.submitOrders([refused('bill-a')], ctx()))[0]!.order.state).toBe('refused');
    counter.reset();
    // Ten writes in one event-loop turn: one batch, one transaction.
    const outs = await Promise.all(Array.from({ length: 10 }, (_, i) => store.submitOrders([refused(i % 2 === 0 ? 'bill-a' : 'bill-b')], ctx())));
    expect(outs.every(([o]) => o!.order.state === 'refused')).toBe(true);
    expect(feedReads()).toBe(2); // bill-a's and bill-b's, once each
    expect((await store.clientEvents('bill-a', 0, 100)).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await store.clientEvents('bill-b', 0, 100)).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    // The next batch reads the end again (the numbers are not kept past their transaction).
    await store.submitOrders([refused('bill-a')], ctx());
    expect(feedReads()).toBe(3);
    expect((await store.clientEvents('bill-a', 0, 100)).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('a write that rolls back in the batch after its event took a number gives that number back: the next event of the batch takes it', async () => {
    const writes = [
      store.submitOrders([refused('bill-a')], ctx()),
      // Its refusal's event is written, then the unknown meter fails the write: its savepoint rolls back.
      store.submitOrders([refused('bill-a', 'M-2'), req({ meterId: 'NOPE', requestedBy: 'bill-a' })], ctx()),
      store.submitOrders([refused('bill-a', 'M-2')], ctx()),
    ];
    const results = await Promise.allSettled(writes);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const ids = [results[0], results[2]].map((r) => (r as PromiseFulfilledResult<{ order: { id: string } }[]>).value[0]!.order.id);
    expect((await store.clientEvents('bill-a', 0, 100)).map((e) => [e.seq, e.orderId])).toEqual([[1, ids[0]], [2, ids[1]]]);
  });
});
