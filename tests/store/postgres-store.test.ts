import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { creditState } from '../../src/domain/prepayment/credit-ledger.js';
import { afterAll, describe, expect, it } from 'vitest';
import { POSTGRES_AUDIT_KEYED, POSTGRES_MIGRATIONS } from '../../src/store/postgres-migrations.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import type { AttemptReport, OrderRequest } from '../../src/store/store.js';
import { NO_LOAD_SIDE_CHECK } from '../../src/domain/firmware-profile.js';
import { openPolicy } from '../harness/test-policy.js';
import { describeStoreConformance, type StoreTamperKit } from './store-conformance.js';
import { fixedAuditKey } from '../../src/store/audit-key-source.js';
import { GENESIS_HASH, unkeyedEntryHash } from '../../src/store/audit-chain.js';
import { databaseHands } from '../harness/audit-tamper.js';
import type { GatewayStore } from '../../src/store/store.js';
import { startPrivatePostgres, type PrivatePostgres } from '../harness/private-postgres.js';
import { migratedOrClosed } from '../harness/small-disk.js';

/** A fresh schema as a release before migration `upTo` (0-based index) left it: the migrations before it applied and recorded. */
async function schemaAtRelease(client: pg.Client, schema: string, upTo: number): Promise<void> {
  await client.query(`CREATE SCHEMA ${schema}`);
  await client.query(`SET search_path TO ${schema}`);
  await client.query('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
  for (const [v, m] of POSTGRES_MIGRATIONS.slice(0, upTo).entries()) {
    await client.query(m);
    await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 1)', [v + 1]);
  }
}


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
    // A few schemas per statement: fewer commits than one per schema (about 80 of them), while each transaction's
    // locks (one per table and index dropped) stay well inside max_locks_per_transaction's shared table.
    for (let i = 0; i < schemas.length; i += 8) await client.query(`DROP SCHEMA IF EXISTS ${schemas.slice(i, i + 8).join(', ')} CASCADE`);
  } finally {
    await client.end();
  }
}, 120_000);

// The outage: the server goes away (a private cluster of the test's own, stopped and started again; the machine's
// shared server is left alone).
let outageServer: PrivatePostgres | undefined;
afterAll(async () => {
  await outageServer?.destroy();
});
/** One key for every store of this file: instances sharing a schema share the key, as a deployment's do. */
const auditKey = fixedAuditKey();
const schemaOf = new WeakMap<GatewayStore, string>();
const postgresTamper: StoreTamperKit = {
  async reopen(store, key) {
    const schema = schemaOf.get(store)!;
    const again = new PostgresStore({ connectionString: DATABASE_URL, schema, auditKey: key ?? auditKey });
    schemaOf.set(again, schema);
    return migratedOrClosed(again);
  },
  hands: (store) => databaseHands({ postgres: { url: DATABASE_URL, schema: schemaOf.get(store)! } }),
};

describeStoreConformance(
  'PostgreSQL',
  async () => {
    const schema = freshSchema();
    const store = new PostgresStore({ connectionString: DATABASE_URL, schema, auditKey });
    schemaOf.set(store, schema);
    return store;
  },
  postgresTamper,
  {
    storeName: () => `PostgreSQL at 127.0.0.1:${outageServer!.port}/postgres`,
    cause: /ECONNREFUSED|terminat|shut ?down|Connection/i,
    async open() {
      outageServer ??= await startPrivatePostgres();
      const server = outageServer;
      const store = new PostgresStore({ connectionString: server.url, schema: 'outage', auditKey });
      await store.migrate();
      return {
        store,
        breakWrites: () => server.stop('fast'),
        mendWrites: () => server.start(),
        cleanup: () => store.close(),
      };
    },
  },
);

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
    const a = new PostgresStore({ connectionString: DATABASE_URL, auditKey, schema });
    const b = new PostgresStore({ connectionString: DATABASE_URL, auditKey, schema });
    schemaOf.set(a, schema);
    schemaOf.set(b, schema);
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

  it('reports arriving at once are recorded together, each answered alone: a lost lease, an unknown order, a write the database refuses and a second report fail only their own caller', async () => {
    const [a, b] = await twoInstances();
    const schema = schemaOf.get(a)!;
    try {
      const meters = Array.from({ length: 6 }, (_, i) => `MB-${i}`);
      await a.upsertMeters(meters.map((meterId) => ({ meterId, profileId: 'p', link: 'L1', region: 'north' })), now);
      let n = 0;
      const ids = (await a.submitOrders(meters.map(request), { now, reconnectLimitHours: 24, newOrderId: () => `ordb_${++n}`, policy: openPolicy() })).map((o) => o.order.id);
      expect(await a.beginAttempts(ids, now, { owner: 'gw-a', until: now + 30_000 })).toHaveLength(6);
      const profile = { relay: { remoteReconnect: 'closes' as const, operateTimeMs: 0, loadSideVoltageCheck: NO_LOAD_SIDE_CHECK }, retry: { maxAttempts: 2, baseDelayMs: 1000, maxDelayMs: 1000 } };
      const report = (orderId: string, owner = 'gw-a'): AttemptReport => ({
        orderId, attempt: 1, leaseOwner: owner, endedAt: now + 100, latencyMs: 10, commandEvidence: null, readEvidence: null, observedRelay: 'disconnected', detail: null,
        observation: { relay: 'disconnected', at: now + 100, source: 'read', energyWh: 1000 },
        judgement: { rules: profile, facts: { command: 'ok', readBack: 'disconnected' }, now: now + 100, random: 0 },
      });
      // The database refuses one order's verdict (a constraint a bug would break): the batch's set-based write fails,
      // and the reports are recorded one by one, so only that order's caller hears of it.
      const admin = new pg.Client({ connectionString: DATABASE_URL });
      await admin.connect();
      await admin.query(`CREATE FUNCTION ${schema}.refuse_verdict() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'verdict refused by the test trigger'; END $$`);
      await admin.query(`CREATE TRIGGER refuse_verdict BEFORE UPDATE ON ${schema}.orders FOR EACH ROW WHEN (NEW.id = '${ids[2]!}' AND NEW.state = 'done') EXECUTE FUNCTION ${schema}.refuse_verdict()`);
      // All in one turn of the event loop, so one batch (a second report for an order waits for the next).
      const settled = await Promise.allSettled([
        a.completeAttempt(report(ids[0]!)),
        a.completeAttempt(report(ids[1]!, 'gw-x')),
        a.completeAttempt(report('ordb_missing')),
        a.completeAttempt(report(ids[2]!)),
        a.completeAttempt(report(ids[3]!)),
        a.completeAttempt(report(ids[3]!)),
        a.completeAttempt(report(ids[4]!)),
      ]);
      const outcome = settled.map((r) => (r.status === 'fulfilled' ? r.value.state : ((r.reason as { code?: string }).code ?? (r.reason as Error).message)));
      expect(outcome).toEqual([
        'done',
        'E_LEASE_LOST',
        'E_ORDER_NOT_FOUND',
        'P0001', // the server's raise_exception, from the test trigger
        'done',
        `order ${ids[3]} is done at attempt 1, not in flight at attempt 1`,
        'done',
      ]);
      // What the store holds: the three done once each with their attempt closed and the read-back observed; the
      // refused ones still in flight, their attempt open; the other instance sees the same.
      for (const id of [ids[0]!, ids[3]!, ids[4]!]) {
        expect((await b.listOrderEvents(id)).filter((e) => e.to === 'done')).toHaveLength(1);
        expect((await b.listAttempts(id))[0]).toMatchObject({ outcome: 'ok', endedAt: now + 100 });
      }
      for (const id of [ids[1]!, ids[2]!, ids[5]!]) {
        expect((await b.getOrder(id))?.state).toBe('in_flight');
        expect((await b.listAttempts(id))[0]?.endedAt).toBeNull();
      }
      expect((await b.getMeter('MB-0'))?.observed).toMatchObject({ relay: 'disconnected', at: now + 100, energyWh: 1000 });
      expect((await b.getMeter('MB-1'))?.observed).toBeNull();
      expect(await b.energyReadings('MB-4', 10)).toEqual([{ at: now + 100, energyWh: 1000 }]);
      // The client's feed: one event per order done, numbered 1, 2, 3 with no gap.
      const feed = (await b.clientEvents('ops', 0, 100)).filter((e) => e.kind === 'order.done');
      expect(feed.map((e) => e.orderId).sort()).toEqual([ids[0]!, ids[3]!, ids[4]!].sort());
      expect((await b.clientEvents('ops', 0, 100)).map((e) => e.seq)).toEqual([1, 2, 3]);
      // The lease holder's own later report on the one whose verdict failed is recorded, once the database takes it.
      await admin.query(`DROP TRIGGER refuse_verdict ON ${schema}.orders`);
      await admin.end();
      expect((await a.completeAttempt(report(ids[2]!))).state).toBe('done');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('two instances reserving invocation counters at once never get overlapping blocks, and together cover every value once', async () => {
    const [a, b] = await twoInstances();
    try {
      const block = 100;
      // 2 instances × 60 reservations, all in flight at once, on one meter and key set (and a second key set beside it).
      const starts = await Promise.all(Array.from({ length: 120 }, (_, i) => (i % 2 === 0 ? a : b).reserveInvocationCounters('M-CTR', 'ks_1', block)));
      const other = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? b : a).reserveInvocationCounters('M-CTR', 'ks_2', block)));
      const sorted = [...starts].sort((x, y) => x - y);
      expect(sorted).toEqual(Array.from({ length: 120 }, (_, i) => 1 + i * block));
      expect([...other].sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => 1 + i * block));
      expect(await a.reserveInvocationCounters('M-CTR', 'ks_1', 1)).toBe(1 + 120 * block);
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
    const store = new PostgresStore({ connectionString: DATABASE_URL, auditKey, schema });
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
    const old = new PostgresStore({ connectionString: DATABASE_URL, auditKey, schema, maxConnections: 1 });
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
    const store = new PostgresStore({ connectionString: DATABASE_URL, auditKey, schema });
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

  it('upgrading to exact money converts stored amounts exactly: payments to whole minor units (as the ledger booked them), consumption costs to whole millionths; what cannot be held is kept without an amount and never reaches a balance', async () => {
    const schema = freshSchema();
    const exact = POSTGRES_MIGRATIONS.findIndex((m) => m.includes('ADD COLUMN amount_minor'));
    expect(exact).toBeGreaterThan(0);
    const majors = [12.5, 0.1, 0.29, 20, 12.345, 100_000, 1e300];
    const costs = [0.1, 2.45, 1 / 3, 24.57 * 0.007, 1e300];
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      await schemaAtRelease(client, schema, exact);
      // What the release before wrote (see the SQLite twin of this test).
      for (const [i, a] of majors.entries()) {
        await client.query(`INSERT INTO payments (id, client, idempotency_key, request_hash, meter_id, amount, kind, posted, received_at, recorded_at, effects) VALUES ($1, 'bill', $2, 'h', 'M-1', $3, 'top_up', true, 1, 1, '[]')`, [`pay_${i}`, `k${i}`, a]);
        await client.query(`INSERT INTO credit_events (meter_id, event, at) VALUES ('M-1', $1, 1)`, [JSON.stringify({ type: 'top_up', amount: Math.round(a * 100), at: 1, ref: `pay_${i}` })]);
      }
      for (const [i, cost] of costs.entries()) await client.query(`INSERT INTO credit_events (meter_id, event, at) VALUES ('M-1', $1, $2)`, [JSON.stringify({ type: 'consumption', cost, at: 2 + i, fromWh: i, toWh: i + 1 }), 2 + i]);
    } finally {
      await client.end();
    }
    const store = new PostgresStore({ connectionString: DATABASE_URL, schema, auditKey });
    try {
      await store.migrate();
      const paid = new Map((await store.listPayments({ limit: 100 })).map((p) => [p.id, p.amountMinor]));
      expect(majors.map((_, i) => paid.get(`pay_${i}`))).toEqual([1250, 10, 29, 2000, Math.round(12.345 * 100), 10_000_000, null]);
      const events = await store.creditEvents('M-1');
      const consumption = events.filter((e) => e.type === 'consumption') as { costMicro?: number }[];
      expect(consumption.map((e) => e.costMicro)).toEqual([...costs.slice(0, 4).map((c) => Math.round(c * 1_000_000)), undefined]);
      const st = creditState(events, { warnAtPercentOfLastTopUp: [], emergencyCredit: { amount: 0, offerWhenBelow: 0 } });
      const totalCostMicro = costs.slice(0, 4).reduce((s, c) => s + Math.round(c * 1_000_000), 0);
      expect(st).toMatchObject({ balance: 1250 + 10 + 29 + 2000 + Math.round(12.345 * 100) + 10_000_000 - Math.floor(totalCostMicro / 1_000_000), unchargedMicro: totalCostMicro % 1_000_000, ignored: 2 });
    } finally {
      await store.close();
    }
  });

  it('a schema of an older release: its unkeyed entries still verify, the chain is keyed from the next entry (audited, once), and the old entries are covered by the key', async () => {
    const schema = freshSchema();
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    const e1 = { seq: 1, at: 1, actor: 'ops', action: 'order.disconnect', target: 'M-1', details: '{"a":1}' };
    const e2 = { seq: 2, at: 2, actor: 'sup', action: 'plan.approve', target: 'plan_1', details: null };
    const h1 = unkeyedEntryHash(GENESIS_HASH, e1);
    try {
      await schemaAtRelease(client, schema, POSTGRES_AUDIT_KEYED);
      // As the release before the keying wrote them: SHA-256 links, no key.
      const insert = 'INSERT INTO audit (seq, at, actor, action, target, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)';
      await client.query(insert, [e1.seq, e1.at, e1.actor, e1.action, e1.target, e1.details, GENESIS_HASH, h1]);
      await client.query(insert, [e2.seq, e2.at, e2.actor, e2.action, e2.target, e2.details, h1, unkeyedEntryHash(h1, e2)]);
    } finally {
      await client.end();
    }
    const store = new PostgresStore({ connectionString: DATABASE_URL, auditKey, schema });
    schemaOf.set(store, schema);
    try {
      await store.migrate();
      expect(await store.verifyAudit()).toMatchObject({ ok: true, entries: 3, keyedFrom: 3, keyId: auditKey.load()!.id });
      expect((await store.listAudit({ newestFirst: true, limit: 1 }))[0]).toMatchObject({ seq: 3, actor: 'gateway', action: 'audit.chain_keyed', details: { unkeyedEntries: 2 } });
      await store.migrate(); // a later start keys nothing again
      await store.appendAudit({ at: 5, actor: 'ops', action: 'test', target: 'M-1', details: null });
      expect(await store.verifyAudit()).toMatchObject({ ok: true, entries: 4, keyedFrom: 3 });
      // An old entry rewritten, with the unkeyed links before the boundary recomputed: the keyed entry 3 no longer chains.
      await postgresTamper.hands(store).dropAuditGuards();
      const c1 = unkeyedEntryHash(GENESIS_HASH, { ...e1, actor: 'someone-else' });
      await postgresTamper.hands(store).sql('UPDATE audit SET actor = ?, hash = ? WHERE seq = 1', ['someone-else', c1]);
      await postgresTamper.hands(store).sql('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = 2', [c1, unkeyedEntryHash(c1, e2)]);
      expect(await store.verifyAudit()).toMatchObject({ ok: false, badSeq: 3, problem: 'entry 3 does not chain to entry 2' });
    } finally {
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
      await schemaAtRelease(client, schema, perClient);
      for (const [who, orderId, deliveredAt] of [['a', 'o1', 5], ['b', 'o2', 5], ['ops', 'o3', null], ['a', 'o4', null], ['b', 'o5', null], ['a', 'o6', null]] as const) {
        await client.query(`INSERT INTO client_events (client, meter_id, order_id, kind, payload, at, next_attempt_at, delivered_at) VALUES ($1, 'M-1', $2, 'order.done', '{}', 1, 1, $3)`, [who, orderId, deliveredAt]);
      }
      await client.query(`DELETE FROM client_events WHERE order_id = 'o3'`); // a hole, as a rolled-back write left one
    } finally {
      await client.end();
    }
    const store = new PostgresStore({ connectionString: DATABASE_URL, auditKey, schema });
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
  it('upgrading gives each key a client: keys that shared a name are one client under that name, their rows stay theirs; kept answers lose their secrets', async () => {
    const schema = freshSchema();
    const clients = POSTGRES_MIGRATIONS.findIndex((m) => m.includes('CREATE TABLE clients'));
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      await schemaAtRelease(client, schema, clients);
      for (const [id, name, role, hash, at] of [['key_1', 'erp', 'billing', 'a', 10], ['key_2', 'erp', 'supervisor', 'b', 20], ['key_3', 'ops', 'operator', 'c', 30]] as const) {
        await client.query('INSERT INTO api_keys (id, name, role, sha256, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [id, name, role, hash.repeat(64), 'admin', at]);
      }
      await client.query(`INSERT INTO callback_subscriptions (client, url, secret, updated_at) VALUES ('erp', 'https://erp.example/cb', 'a-long-shared-secret-0001', 1)`);
      const answer = 'INSERT INTO idempotent_responses (principal, key, request_hash, status, body, created_at) VALUES ($1, $2, $3, $4, $5, 1)';
      await client.query(answer, ['admin', 'k-key', 'h', 201, JSON.stringify({ id: 'key_3', name: 'ops', role: 'operator', createdBy: 'admin', createdAt: 'x', revokedAt: null, key: 'ope_THE-OLD-SECRET' })]);
      await client.query(answer, ['ops', 'k-breaker', 'h', 200, JSON.stringify({ id: 'brk_1', scope: 'link', key: 'dc-1', action: 'disconnect' })]);
    } finally {
      await client.end();
    }
    const store = new PostgresStore({ connectionString: DATABASE_URL, schema, auditKey });
    try {
      await store.migrate();
      expect((await store.findApiKey('a'.repeat(64)))?.clientId).toBe('erp');
      expect((await store.findApiKey('b'.repeat(64)))?.clientId).toBe('erp');
      expect((await store.findApiKey('c'.repeat(64)))?.clientId).toBe('ops');
      expect((await store.getCallback('erp'))?.url).toBe('https://erp.example/cb');
      const kept = await store.getIdempotentResponse('admin', 'k-key');
      expect(kept).toMatchObject({ state: 'done', status: 201, body: { id: 'key_3', role: 'operator' } });
      expect(kept?.state === 'done' && kept.body).not.toHaveProperty('key');
      expect(await store.getIdempotentResponse('ops', 'k-breaker')).toMatchObject({ body: { key: 'dc-1' } }); // not a secret: kept
      const lookalike = await store.createApiKey({ client: { name: 'erp' }, role: 'billing', sha256: 'd'.repeat(64) }, 'admin', 40);
      expect(lookalike.clientId).not.toBe('erp');
      expect((await store.createApiKey({ client: { id: 'erp' }, role: 'billing', sha256: 'e'.repeat(64) }, 'admin', 50)).clientId).toBe('erp');
    } finally {
      await store.close();
    }
  });
});
