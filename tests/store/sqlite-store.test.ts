import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SQLITE_MIGRATIONS } from '../../src/store/sqlite-migrations.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { describeStoreConformance } from './store-conformance.js';
import { emptyWal, mountSmallDisk } from '../harness/small-disk.js';
import { openPolicy } from '../harness/test-policy.js';

// The outage: the disk under the file fills up (a tmpfs of the test's own, filled until ENOSPC), then is freed.
let outagePath = '';
describeStoreConformance('SQLite', async () => new SqliteStore(join(mkdtempSync(join(tmpdir(), 'ml-sqlite-')), 'gw.db')), {
  storeName: () => outagePath,
  cause: /disk is full/,
  async open() {
    const disk = mountSmallDisk(8);
    outagePath = join(disk.dir, 'gw.db');
    const store = new SqliteStore(outagePath);
    await store.migrate();
    return {
      store,
      breakWrites: async () => {
        await emptyWal(outagePath);
        disk.fill();
      },
      mendWrites: async () => disk.free(),
      cleanup: async () => {
        await store.close().catch(() => undefined);
        disk.unmount();
      },
    };
  },
});

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

  it('upgrading renumbers an existing change feed per client, 1..N in the old order, keeping delivery state; the next event follows on', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ml-sqlite-')), 'gw.db');
    // A database of the release before the per-client numbering, with a feed numbered across clients.
    const perClient = SQLITE_MIGRATIONS.findIndex((m) => m.includes('CREATE TABLE client_feed'));
    const old = new Database(path);
    old.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    SQLITE_MIGRATIONS.slice(0, perClient).forEach((m, v) => {
      old.exec(m);
      old.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, 1)').run(v + 1);
    });
    const insert = old.prepare("INSERT INTO client_events (client, meter_id, order_id, kind, payload, at, next_attempt_at, delivered_at) VALUES (?, 'M-1', ?, 'order.done', '{}', 1, 1, ?)");
    for (const [client, orderId, deliveredAt] of [['a', 'o1', 5], ['b', 'o2', 5], ['ops', 'o3', null], ['a', 'o4', null], ['b', 'o5', null], ['a', 'o6', null]] as const) insert.run(client, orderId, deliveredAt);
    old.prepare('DELETE FROM client_events WHERE order_id = ?').run('o3'); // a hole, as a rolled-back write left one
    old.close();

    const store = new SqliteStore(path);
    await store.migrate();
    const feed = async (client: string) => (await store.clientEvents(client, 0, 100)).map((e) => [e.seq, e.orderId, e.deliveredAt]);
    expect(await feed('a')).toEqual([[1, 'o1', 5], [2, 'o4', null], [3, 'o6', null]]);
    expect(await feed('b')).toEqual([[1, 'o2', 5], [2, 'o5', null]]);
    await store.upsertMeters([{ meterId: 'M-1', profileId: 'p', link: 'L', region: 'r' }], 1);
    const arrears = { meterId: 'M-1', action: 'disconnect', reason: 'arrears', note: null, urgent: false, notBefore: null, paymentAt: null, requestedBy: 'a', idempotencyKey: null, requestHash: 'h' } as const;
    await store.submitOrders([arrears], { now: 2, reconnectLimitHours: 24, newOrderId: () => 'ord_next', policy: openPolicy() }); // refused: an event for a
    expect((await feed('a')).map(([seq, orderId]) => [seq, orderId])).toEqual([[1, 'o1'], [2, 'o4'], [3, 'o6'], [4, 'ord_next']]);
    await store.close();
  });

  it('an older file keeps its work orders when inspections arrive (a migration rebuilds the table): they belong to switch orders', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ml-sqlite-')), 'gw.db');
    const old = new Database(path);
    old.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    for (let v = 0; v < 12; v++) {
      old.exec(SQLITE_MIGRATIONS[v]!);
      old.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(v + 1, 0);
    }
    old.prepare(`INSERT INTO meters (meter_id, profile_id, link, region, created_at, updated_at) VALUES ('M-1', 'p', 'L', 'r', 1, 1)`).run();
    old.prepare(
      `INSERT INTO orders (id, seq, meter_id, action, reason, requested_by, state, priority, urgent, link, created_at, updated_at, not_before, next_attempt_at)
       VALUES ('ord_a', 1, 'M-1', 'reconnect', 'payment', 'billing', 'escalated', 1, 0, 'L', 1, 1, 1, 1)`,
    ).run();
    old.prepare(`INSERT INTO work_orders (id, order_id, meter_id, region, action, reason, raised_at, due_at, priority, status, updated_at) VALUES ('wo_a', 'ord_a', 'M-1', 'r', 'reconnect', 'late', 2, 3, 1, 'open', 2)`).run();
    old.close();
    const store = new SqliteStore(path);
    await store.migrate();
    expect(await store.listWorkOrders({ limit: 10 })).toMatchObject([{ id: 'wo_a', kind: 'switch_order', orderId: 'ord_a', action: 'reconnect', status: 'open' }]);
    await store.close();
  });
});
