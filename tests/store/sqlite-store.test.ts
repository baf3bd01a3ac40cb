import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { describeStoreConformance } from './store-conformance.js';
import { openPolicy } from '../harness/test-policy.js';

describeStoreConformance('SQLite', async () => new SqliteStore(join(mkdtempSync(join(tmpdir(), 'ml-sqlite-')), 'gw.db')));

describe('SQLite store specifics', () => {
  it('uses WAL, and what was committed survives reopening the file (a restart)', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ml-sqlite-')), 'gw.db');
    const a = new SqliteStore(path);
    await a.migrate();
    await a.upsertMeters([{ meterId: 'M-1', profileId: 'p', link: 'L', region: 'r' }], 1);
    const [o] = await a.submitOrders(
      [{ meterId: 'M-1', action: 'disconnect', reason: 'customer_request', reference: 'REQ-1', note: null, urgent: false, notBefore: null, paymentAt: null, requestedBy: 'ops', idempotencyKey: 'k', requestHash: 'h' }],
      { now: 2, reconnectLimitHours: 24, newOrderId: () => 'ord_a', policy: openPolicy() },
    );
    await a.beginAttempts([o!.order.id], 3, { owner: 'gw-a', until: 30_003 });
    await a.close();
    const b = new SqliteStore(path);
    await b.migrate();
    expect((await b.inFlightOrders()).map((x) => x.id)).toEqual(['ord_a']);
    expect((await b.listAttempts('ord_a')).map((x) => [x.attempt, x.endedAt])).toEqual([[1, null]]);
    await b.close();
  });
});
