import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SQLITE_AUDIT_KEYED, SQLITE_AUDIT_LINKED, SQLITE_MIGRATIONS } from '../../src/store/sqlite-migrations.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { creditState } from '../../src/domain/prepayment/credit-ledger.js';
import { unkeyedEntryHash, GENESIS_HASH } from '../../src/store/audit-chain.js';
import { describeStoreConformance } from './store-conformance.js';
import { sqliteDiskOutage, sqliteTamperKit } from '../harness/small-disk.js';
import { openPolicy } from '../harness/test-policy.js';
import { NO_LOAD_SIDE_CHECK } from '../../src/domain/firmware-profile.js';

const sqliteTamper = sqliteTamperKit((path, options) => new SqliteStore(path, options));

// The key: the default, `audit.key` made beside each database file on its first start.
// The outage: the disk under the file fills up (a tmpfs of the test's own, filled until ENOSPC), then is freed.
describeStoreConformance('SQLite', async () => new SqliteStore(join(mkdtempSync(join(tmpdir(), 'ml-sqlite-')), 'gw.db')), sqliteTamper, sqliteDiskOutage((path) => new SqliteStore(path)));

describe('SQLite store specifics', () => {
  it('the order each write answers with is the order as stored (read back), whatever its text and times: admission, lease, a verified and a failed attempt', async () => {
    const store = new SqliteStore(':memory:');
    await store.migrate();
    await store.upsertMeters(['M-1', 'M-2', 'M-3', 'M-4'].map((meterId) => ({ meterId, profileId: 'p', link: 'L', region: 'r' })), 1);
    const profile = { relay: { remoteReconnect: 'closes' as const, operateTimeMs: 0, loadSideVoltageCheck: NO_LOAD_SIDE_CHECK }, retry: { maxAttempts: 3, baseDelayMs: 1000, maxDelayMs: 5000 } };
    // Text SQLite cannot hold as written (a lone surrogate, a NUL) and a time that is not a whole millisecond.
    const cases = [
      { meterId: 'M-1', action: 'disconnect' as const, reason: 'customer_request' as const, note: 'plain', now: 10 },
      { meterId: 'M-2', action: 'reconnect' as const, reason: 'payment' as const, note: 'lone \uD800 surrogate', now: 20 },
      { meterId: 'M-3', action: 'disconnect' as const, reason: 'customer_request' as const, note: 'nul \0 inside', now: 30.5 },
      { meterId: 'M-4', action: 'reconnect' as const, reason: 'payment' as const, note: null, now: 40 },
    ];
    let n = 0;
    for (const c of cases) {
      const [created] = await store.submitOrders(
        [{ meterId: c.meterId, action: c.action, reason: c.reason, reference: 'REF', note: c.note, urgent: false, notBefore: null, paymentAt: c.action === 'reconnect' ? c.now : null, requestedBy: 'ops', idempotencyKey: null, requestHash: 'h' }],
        { now: c.now, reconnectLimitHours: 24, newOrderId: () => `ord_${++n}`, policy: openPolicy() },
      );
      const id = created!.order.id;
      expect(created!.order).toEqual(await store.getOrder(id));
      const [leased] = await store.beginAttempts([id], c.now + 1, { owner: 'gw-a', until: c.now + 30_000 });
      expect(leased).toEqual(await store.getOrder(id));
      // Odd cases fail (a retry at a jittered time), even ones are verified.
      const verified = n % 2 === 0;
      const relay = c.action === 'reconnect' ? 'connected' : 'disconnected';
      const after = await store.completeAttempt({
        orderId: id, attempt: 1, leaseOwner: 'gw-a', endedAt: c.now + 2, latencyMs: 5, commandEvidence: null, readEvidence: null,
        observedRelay: verified ? relay : null, detail: null, observation: null,
        judgement: { rules: profile, facts: verified ? { command: 'ok', readBack: relay } : { command: 'timeout', readBack: undefined }, now: c.now + 2, random: 0.37 },
      });
      expect(after.state).toBe(verified ? 'done' : 'queued');
      expect(after).toEqual(await store.getOrder(id));
    }
    await store.close();
  });

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

  it('a database of an older release: its unkeyed entries still verify, the chain is keyed from the next entry (audited, once), and the old entries are covered by the key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-sqlite-'));
    const path = join(dir, 'gw.db');
    // Version 2 wrote entries with no links; the releases from version 3 to the keying linked them without a key.
    const old = new Database(path);
    old.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    SQLITE_MIGRATIONS.slice(0, SQLITE_AUDIT_LINKED).forEach((m, v) => {
      old.exec(m);
      old.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, 1)').run(v + 1);
    });
    old.prepare(`INSERT INTO audit (at, actor, action, target, details) VALUES (1, 'ops', 'order.disconnect', 'M-1', '{"a":1}')`).run();
    SQLITE_MIGRATIONS.slice(SQLITE_AUDIT_LINKED, SQLITE_AUDIT_KEYED).forEach((m, i) => {
      old.exec(m);
      old.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, 1)').run(SQLITE_AUDIT_LINKED + i + 1);
    });
    // (the release of version 3 linked entry 1 at its start; as it did:)
    old.prepare('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = 1').run(GENESIS_HASH, unkeyedEntryHash(GENESIS_HASH, { seq: 1, at: 1, actor: 'ops', action: 'order.disconnect', target: 'M-1', details: '{"a":1}' }));
    const h1 = (old.prepare('SELECT hash FROM audit WHERE seq = 1').get() as { hash: string }).hash;
    const e2 = { seq: 2, at: 2, actor: 'sup', action: 'plan.approve', target: 'plan_1', details: null };
    old.prepare('INSERT INTO audit (seq, at, actor, action, target, details, prev_hash, hash) VALUES (2, 2, ?, ?, ?, NULL, ?, ?)').run(e2.actor, e2.action, e2.target, h1, unkeyedEntryHash(h1, e2));
    old.close();

    const store = new SqliteStore(path);
    await store.migrate();
    const v = await store.verifyAudit();
    expect(v).toMatchObject({ ok: true, entries: 3, keyedFrom: 3 });
    const [boundary] = await store.listAudit({ newestFirst: true, limit: 1 });
    expect(boundary).toMatchObject({ seq: 3, actor: 'gateway', action: 'audit.chain_keyed', details: { scheme: 'hmac-sha256', unkeyedEntries: 2, keyId: v.ok ? v.keyId : '' } });
    await store.appendAudit({ at: 5, actor: 'ops', action: 'test', target: 'M-1', details: null });
    await store.close();
    const again = new SqliteStore(path);
    await again.migrate(); // a later start keys nothing again
    expect(await again.verifyAudit()).toMatchObject({ ok: true, entries: 4, keyedFrom: 3 });
    await again.close();

    // Someone rewrites an old entry and recomputes the unkeyed links before the boundary: the keyed entry 3 no longer chains.
    const db = new Database(path);
    db.exec('DROP TRIGGER audit_no_update');
    const changed = { seq: 1, at: 1, actor: 'someone-else', action: 'order.disconnect', target: 'M-1', details: '{"a":1}' };
    const c1 = unkeyedEntryHash(GENESIS_HASH, changed);
    db.prepare('UPDATE audit SET actor = ?, hash = ? WHERE seq = 1').run(changed.actor, c1);
    db.prepare('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = 2').run(c1, unkeyedEntryHash(c1, e2));
    db.close();
    const third = new SqliteStore(path);
    await third.migrate();
    expect(await third.verifyAudit()).toMatchObject({ ok: false, badSeq: 3, problem: 'entry 3 does not chain to entry 2' });
    await third.close();
  });

  it('a database of version 2 (entries with no links): its entries are linked once, by the migration that added links, then keyed from the next entry', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ml-sqlite-')), 'gw.db');
    const old = new Database(path);
    old.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    SQLITE_MIGRATIONS.slice(0, SQLITE_AUDIT_LINKED).forEach((m, v) => {
      old.exec(m);
      old.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, 1)').run(v + 1);
    });
    for (const actor of ['a', 'b', 'c']) old.prepare(`INSERT INTO audit (at, actor, action, target, details) VALUES (1, ?, 'order.reconnect', 'M-1', NULL)`).run(actor);
    old.close();
    const store = new SqliteStore(path);
    await store.migrate();
    expect(await store.verifyAudit()).toMatchObject({ ok: true, entries: 4, keyedFrom: 4 });
    await store.close();
  });

  it('upgrading to exact money converts stored amounts exactly: payments to whole minor units (as the ledger booked them), consumption costs to whole millionths; what cannot be held is kept without an amount and never reaches a balance', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ml-sqlite-')), 'gw.db');
    const exact = SQLITE_MIGRATIONS.findIndex((m) => m.includes('ADD COLUMN amount_minor'));
    expect(exact).toBeGreaterThan(0);
    const old = new Database(path);
    old.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    SQLITE_MIGRATIONS.slice(0, exact).forEach((m, v) => {
      old.exec(m);
      old.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, 1)').run(v + 1);
    });
    // What the release before wrote: amounts in major units as REAL, top-ups in the ledger as Math.round(amount × 100),
    // consumption costs as float minor units, and the 1e300 top-ups it let through.
    const majors = [12.5, 0.1, 0.29, 20, 12.345, 100_000, 1e300];
    const pay = old.prepare(`INSERT INTO payments (id, client, idempotency_key, request_hash, meter_id, amount, kind, posted, received_at, recorded_at, effects) VALUES (?, 'bill', ?, 'h', 'M-1', ?, 'top_up', 1, 1, 1, '[]')`);
    majors.forEach((a, i) => pay.run(`pay_${i}`, `k${i}`, a));
    const ev = old.prepare(`INSERT INTO credit_events (meter_id, event, at) VALUES ('M-1', ?, 1)`);
    const costs = [0.1, 2.45, 1 / 3, 24.57 * 0.007, 1e300];
    for (const [i, a] of majors.entries()) ev.run(JSON.stringify({ type: 'top_up', amount: Math.round(a * 100), at: 1, ref: `pay_${i}` }));
    costs.forEach((cost, i) => ev.run(JSON.stringify({ type: 'consumption', cost, at: 2 + i, fromWh: i, toWh: i + 1 })));
    old.close();

    const store = new SqliteStore(path);
    await store.migrate();
    const paid = new Map((await store.listPayments({ limit: 100 })).map((p) => [p.id, p.amountMinor]));
    expect(majors.map((_, i) => paid.get(`pay_${i}`))).toEqual([1250, 10, 29, 2000, Math.round(12.345 * 100), 10_000_000, null]);
    const events = await store.creditEvents('M-1');
    const consumption = events.filter((e) => e.type === 'consumption') as { costMicro?: number }[];
    expect(consumption.map((e) => e.costMicro)).toEqual([...costs.slice(0, 4).map((c) => Math.round(c * 1_000_000)), undefined]);
    // The ledger: the six real top-ups in, the two costs that make whole pence out; the 1e300 rows ignored, never Infinity.
    const st = creditState(events, { warnAtPercentOfLastTopUp: [], emergencyCredit: { amount: 0, offerWhenBelow: 0 } });
    const totalCostMicro = costs.slice(0, 4).reduce((s, c) => s + Math.round(c * 1_000_000), 0);
    expect(st).toMatchObject({ balance: 1250 + 10 + 29 + 2000 + Math.round(12.345 * 100) + 10_000_000 - Math.floor(totalCostMicro / 1_000_000), unchargedMicro: totalCostMicro % 1_000_000, ignored: 2 });
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
  it('upgrading gives each key a client: keys that shared a name are one client under that name, their rows stay theirs; kept answers lose their secrets', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ml-sqlite-')), 'gw.db');
    const clients = SQLITE_MIGRATIONS.findIndex((m) => m.includes('CREATE TABLE clients'));
    const old = new Database(path);
    old.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    SQLITE_MIGRATIONS.slice(0, clients).forEach((m, v) => {
      old.exec(m);
      old.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, 1)').run(v + 1);
    });
    const key = old.prepare('INSERT INTO api_keys (id, name, role, sha256, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)');
    key.run('key_1', 'erp', 'billing', 'a'.repeat(64), 'admin', 10);
    key.run('key_2', 'erp', 'supervisor', 'b'.repeat(64), 'admin', 20);
    key.run('key_3', 'ops', 'operator', 'c'.repeat(64), 'admin', 30);
    old.prepare(`INSERT INTO callback_subscriptions (client, url, secret, updated_at) VALUES ('erp', 'https://erp.example/cb', 'a-long-shared-secret-0001', 1)`).run();
    const answer = old.prepare('INSERT INTO idempotent_responses (principal, key, request_hash, status, body, created_at) VALUES (?, ?, ?, ?, ?, 1)');
    answer.run('admin', 'k-key', 'h', 201, JSON.stringify({ id: 'key_3', name: 'ops', role: 'operator', createdBy: 'admin', createdAt: 'x', revokedAt: null, key: 'ope_THE-OLD-SECRET' }));
    answer.run('ops', 'k-breaker', 'h', 200, JSON.stringify({ id: 'brk_1', scope: 'link', key: 'dc-1', action: 'disconnect' }));
    old.close();

    const store = new SqliteStore(path);
    await store.migrate();
    expect((await store.findApiKey('a'.repeat(64)))?.clientId).toBe('erp');
    expect((await store.findApiKey('b'.repeat(64)))?.clientId).toBe('erp');
    expect((await store.findApiKey('c'.repeat(64)))?.clientId).toBe('ops');
    expect((await store.getCallback('erp'))?.url).toBe('https://erp.example/cb');
    const kept = await store.getIdempotentResponse('admin', 'k-key');
    expect(kept).toMatchObject({ state: 'done', status: 201, body: { id: 'key_3', role: 'operator' } });
    expect(kept?.state === 'done' && kept.body).not.toHaveProperty('key');
    expect(await store.getIdempotentResponse('ops', 'k-breaker')).toMatchObject({ body: { key: 'dc-1' } }); // not a secret: kept
    // From now on a key "named erp" is a new client; the old one gets more keys by its id.
    const lookalike = await store.createApiKey({ client: { name: 'erp' }, role: 'billing', sha256: 'd'.repeat(64) }, 'admin', 40);
    expect(lookalike.clientId).not.toBe('erp');
    expect((await store.createApiKey({ client: { id: 'erp' }, role: 'billing', sha256: 'e'.repeat(64) }, 'admin', 50)).clientId).toBe('erp');
    await store.close();
  });
});
