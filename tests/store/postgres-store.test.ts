import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { POSTGRES_MIGRATIONS } from '../../src/store/postgres-migrations.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import type { OrderRequest } from '../../src/store/store.js';
import { openPolicy } from '../harness/test-policy.js';
import { describeStoreConformance } from './store-conformance.js';
import { startPrivatePostgres, type PrivatePostgres } from '../harness/private-postgres.js';

/**
 * The PostgreSQL store against a real server (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test):
 * the shared conformance suite, each test in a fresh schema, then what only a shared database has: several
 * gateway instances working on the same tables at once.
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schemas: string[] = [];
const freshSchema = (): string => {
  const s = `ml_test_${randomBytes(6).toString('hex')}`;
  schemas.push(s);
  return s;
};

afterAll(async () => {
  const client = new pg.Client({ connectionString: DATABASE_URL });
  await client.connect();
  try {
    for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
  } finally {
    await client.end();
  }
});

// The outage: the server goes away (a private cluster of the test's own, stopped and started again; the machine's
// shared server is left alone).
let outageServer: PrivatePostgres | undefined;
afterAll(async () => {
  await outageServer?.destroy();
});
describeStoreConformance('PostgreSQL', async () => new PostgresStore({ connectionString: DATABASE_URL, schema: freshSchema() }), {
  storeName: () => `PostgreSQL at 127.0.0.1:${outageServer!.port}/postgres`,
  cause: /ECONNREFUSED|terminat|shut ?down|Connection/i,
  async open() {
    outageServer ??= await startPrivatePostgres();
    const server = outageServer;
    const store = new PostgresStore({ connectionString: server.url, schema: 'outage' });
    await store.migrate();
    return {
      store,
      breakWrites: () => server.stop('fast'),
      mendWrites: () => server.start(),
      cleanup: () => store.close(),
    };
  },
});

describe('PostgreSQL store specifics: several gateway instances on one database', () => {
  const now = 1_764_000_000_000;
  const request = (meterId: string): OrderRequest => ({
    meterId,
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
  });
  const twoInstances = async (): Promise<[PostgresStore, PostgresStore]> => {
    const schema = freshSchema();
    const a = new PostgresStore({ connectionString: DATABASE_URL, schema });
    const b = new PostgresStore({ connectionString: DATABASE_URL, schema });
    await Promise.all([a.migrate(), b.migrate()]);
    return [a, b];
  };

  it('migrations run once when two instances migrate at the same time', async () => {
    const [a, b] = await twoInstances();
    try {
      // One of them applied every version; the other waited on the lock and found nothing left to do.
      expect([a.migrationsApplied, b.migrationsApplied].sort((x, y) => y.length - x.length)).toEqual([POSTGRES_MIGRATIONS.map((_, i) => i + 1), []]);
      const client = new pg.Client({ connectionString: DATABASE_URL });
      await client.connect();
      const { rows } = await client.query(`SELECT version FROM ${schemas.at(-1)!}.schema_migrations ORDER BY version`);
      await client.end();
      expect(rows.map((r: { version: number }) => r.version)).toEqual(POSTGRES_MIGRATIONS.map((_, i) => i + 1));
      // A later start changes nothing.
      await a.migrate();
      expect(a.migrationsApplied).toEqual([]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('two instances leasing the same 200 queued orders at once: every order is leased exactly once', async () => {
    const [a, b] = await twoInstances();
    try {
      const meters = Array.from({ length: 200 }, (_, i) => `M-${String(i).padStart(3, '0')}`);
      await a.upsertMeters(meters.map((meterId) => ({ meterId, profileId: 'p', link: `L${meterId.at(-1)!}`, region: 'north' })), now);
      let n = 0;
      const outcomes = await a.submitOrders(meters.map(request), { now, reconnectLimitHours: 24, newOrderId: () => `ord_${String(++n).padStart(4, '0')}`, policy: openPolicy() });
      const ids = outcomes.map((o) => o.order.id);
      expect(outcomes.every((o) => o.order.state === 'queued')).toBe(true);
      // Each instance asks for every order, in its own order, several times over, all at once.
      const reversed = [...ids].reverse();
      const batches = await Promise.all([
        a.beginAttempts(ids, now, { owner: 'gw-a', until: now + 30_000 }),
        b.beginAttempts(reversed, now, { owner: 'gw-b', until: now + 30_000 }),
        a.beginAttempts(reversed.slice(0, 100), now, { owner: 'gw-a', until: now + 30_000 }),
        b.beginAttempts(ids.slice(50, 150), now, { owner: 'gw-b', until: now + 30_000 }),
      ]);
      const leased = batches.flat().map((o) => o.id);
      expect(leased.length).toBe(200);
      expect(new Set(leased).size).toBe(200);
      expect(batches.flat().every((o) => o.state === 'in_flight' && o.attempts === 1)).toBe(true);
      expect((await b.inFlightOrders()).length).toBe(200);
      for (const id of [ids[0]!, ids[199]!]) expect((await a.listAttempts(id)).map((x) => x.attempt)).toEqual([1]);
      expect(await a.beginAttempts(ids, now, { owner: 'gw-a', until: now + 30_000 })).toEqual([]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('one command per meter across instances: while one instance has an order on the wire, the other cannot lease the meter’s next order', async () => {
    const [a, b] = await twoInstances();
    try {
      await a.upsertMeters([{ meterId: 'M-1', profileId: 'p', link: 'L1', region: 'north' }], now);
      let n = 0;
      const ctx = { now, reconnectLimitHours: 24, newOrderId: () => `ord_m1_${++n}`, policy: openPolicy() };
      const [first] = await a.submitOrders([request('M-1')], ctx);
      expect((await a.beginAttempts([first!.order.id], now, { owner: 'gw-a', until: now + 30_000 })).map((o) => o.state)).toEqual(['in_flight']);
      const [second] = await b.submitOrders([{ ...request('M-1'), action: 'reconnect', reason: 'payment' }], ctx);
      expect(second!.order.state).toBe('queued');
      expect(await b.beginAttempts([second!.order.id], now, { owner: 'gw-b', until: now + 30_000 })).toEqual([]);
      expect((await b.getOrder(second!.order.id))?.state).toBe('queued');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('the audit chain stays valid when two instances append at the same time', async () => {
    const [a, b] = await twoInstances();
    try {
      await a.upsertMeters([{ meterId: 'M-1', profileId: 'p', link: 'L', region: 'north' }, { meterId: 'M-2', profileId: 'p', link: 'L', region: 'north' }], now);
      let n = 0;
      const ctx = () => ({ now, reconnectLimitHours: 24, newOrderId: () => `ord_${++n}_${randomBytes(3).toString('hex')}`, policy: openPolicy() });
      const writes: Promise<unknown>[] = [];
      for (let i = 0; i < 50; i++) {
        writes.push(a.appendAudit({ at: now + i, actor: 'a', action: 'test', target: `t${i}`, details: { i } }));
        writes.push(b.appendAudit({ at: now + i, actor: 'b', action: 'test', target: `t${i}`, details: { i } }));
        if (i % 10 === 0) writes.push(a.submitOrders([request('M-1')], ctx()), b.submitOrders([request('M-2')], ctx()));
      }
      await Promise.all(writes);
      const v = await b.verifyAudit();
      expect(v).toMatchObject({ ok: true, entries: 110 });
      const seqs = (await a.listAudit({ limit: 1000 })).map((e) => e.seq);
      expect(seqs).toEqual(Array.from({ length: 110 }, (_, i) => i + 1));
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('the audit log refuses changes in the database', async () => {
    const schema = freshSchema();
    const store = new PostgresStore({ connectionString: DATABASE_URL, schema });
    await store.migrate();
    await store.appendAudit({ at: now, actor: 'x', action: 'test', target: 't', details: null });
    await store.close();
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      await expect(client.query(`UPDATE ${schema}.audit SET actor = 'y'`)).rejects.toThrow(/append-only/);
      await expect(client.query(`DELETE FROM ${schema}.audit`)).rejects.toThrow(/append-only/);
    } finally {
      await client.end();
    }
  });

  it('an instance keeps working when another instance migrates the schema under it (a rolling upgrade adds a column)', async () => {
    const schema = freshSchema();
    // One connection, so every statement runs on the connection that prepared the earlier ones.
    const old = new PostgresStore({ connectionString: DATABASE_URL, schema, maxConnections: 1 });
    await old.migrate();
    try {
      await old.upsertMeters([{ meterId: 'M-1', profileId: 'p', link: 'L1', region: 'north' }], now);
      const ctx = { now, reconnectLimitHours: 24, newOrderId: () => `ord_${randomBytes(4).toString('hex')}`, policy: openPolicy() };
      const [first] = await old.submitOrders([request('M-1')], ctx);
      expect((await old.getOrder(first!.order.id))?.state).toBe('queued'); // a whole-row read, now prepared
      // A newer release's migration, run by another instance.
      const client = new pg.Client({ connectionString: DATABASE_URL });
      await client.connect();
      try {
        await client.query(`ALTER TABLE ${schema}.orders ADD COLUMN added_by_a_newer_release TEXT`);
      } finally {
        await client.end();
      }
      // The same whole-row read and a whole-row write in a transaction still work on this instance.
      expect((await old.getOrder(first!.order.id))?.state).toBe('queued');
      const cancelled = await old.cancelOrder(first!.order.id, 'ops', 'test', now + 1);
      expect(cancelled.state).toBe('cancelled');
      const [second] = await old.submitOrders([request('M-1')], ctx);
      expect(second!.order.state).toBe('queued');
    } finally {
      await old.close();
    }
  });

  it('change feed: a client\'s next event waits for its earlier one to commit or roll back, so a reader never sees N + 1 before N and a rollback leaves no gap', async () => {
    const schema = freshSchema();
    const store = new PostgresStore({ connectionString: DATABASE_URL, schema });
    await store.migrate();
    const other = new pg.Client({ connectionString: DATABASE_URL });
    await other.connect();
    try {
      await store.upsertMeters([{ meterId: 'M-1', profileId: 'p', link: 'L1', region: 'north' }, { meterId: 'M-2', profileId: 'p', link: 'L1', region: 'north' }], now);
      let n = 0;
      const ctx = { now, reconnectLimitHours: 24, newOrderId: () => `ord_${++n}`, policy: openPolicy() };
      const refused = (meterId: string) => store.submitOrders([{ ...request(meterId), reason: 'arrears', requestedBy: 'bill-a' }], ctx); // an event for bill-a
      await refused('M-1');
      // Another transaction (another instance) has taken bill-a's number 2 and not committed yet.
      await other.query(`SET search_path TO ${schema}`);
      await other.query('BEGIN');
      const taken = await other.query(`INSERT INTO client_seq (client, last_seq) VALUES ('bill-a', 1) ON CONFLICT (client) DO UPDATE SET last_seq = client_seq.last_seq + 1 RETURNING last_seq`);
      expect(Number(taken.rows[0].last_seq)).toBe(2);
      await other.query(`INSERT INTO client_feed (client, seq, meter_id, order_id, kind, payload, at, next_attempt_at) VALUES ('bill-a', 2, 'M-1', 'ord_x', 'order.done', '{}', 1, 1)`);
      let settled = false;
      const next = refused('M-2').finally(() => (settled = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(settled).toBe(false); // waits on bill-a's counter, not committed as 3 ahead of 2
      expect((await store.clientEvents('bill-a', 0, 10)).map((e) => e.seq)).toEqual([1]);
      await other.query('ROLLBACK');
      const [second] = await next;
      expect((await store.clientEvents('bill-a', 0, 10)).map((e) => [e.seq, e.orderId])).toEqual([
        [1, 'ord_1'],
        [2, second!.order.id],
      ]);
    } finally {
      await other.end();
      await store.close();
    }
  });

  it('upgrading renumbers an existing change feed per client, 1..N in the old order, keeping delivery state; the next event follows on', async () => {
    const schema = freshSchema();
    // A schema of the release before the per-client numbering, with a feed numbered across clients.
    const perClient = POSTGRES_MIGRATIONS.findIndex((m) => m.includes('CREATE TABLE client_feed'));
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      await client.query(`CREATE SCHEMA ${schema}`);
      await client.query(`SET search_path TO ${schema}`);
      await client.query('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
      for (const [v, m] of POSTGRES_MIGRATIONS.slice(0, perClient).entries()) {
        await client.query(m);
        await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 1)', [v + 1]);
      }
      for (const [who, orderId, deliveredAt] of [['a', 'o1', 5], ['b', 'o2', 5], ['ops', 'o3', null], ['a', 'o4', null], ['b', 'o5', null], ['a', 'o6', null]] as const) {
        await client.query(`INSERT INTO client_events (client, meter_id, order_id, kind, payload, at, next_attempt_at, delivered_at) VALUES ($1, 'M-1', $2, 'order.done', '{}', 1, 1, $3)`, [who, orderId, deliveredAt]);
      }
      await client.query(`DELETE FROM client_events WHERE order_id = 'o3'`); // a hole, as a rolled-back write left one
    } finally {
      await client.end();
    }
    const store = new PostgresStore({ connectionString: DATABASE_URL, schema });
    try {
      await store.migrate();
      expect(store.migrationsApplied[0]).toBe(perClient + 1);
      const feed = async (c: string) => (await store.clientEvents(c, 0, 100)).map((e) => [e.seq, e.orderId, e.deliveredAt]);
      expect(await feed('a')).toEqual([[1, 'o1', 5], [2, 'o4', null], [3, 'o6', null]]);
      expect(await feed('b')).toEqual([[1, 'o2', 5], [2, 'o5', null]]);
      await store.upsertMeters([{ meterId: 'M-1', profileId: 'p', link: 'L', region: 'r' }], now);
      await store.submitOrders([{ ...request('M-1'), reason: 'arrears', requestedBy: 'a' }], { now, reconnectLimitHours: 24, newOrderId: () => 'ord_next', policy: openPolicy() });
      expect((await feed('a')).map(([seq, orderId]) => [seq, orderId])).toEqual([[1, 'o1'], [2, 'o4'], [3, 'o6'], [4, 'ord_next']]);
    } finally {
      await store.close();
    }
  });
});
