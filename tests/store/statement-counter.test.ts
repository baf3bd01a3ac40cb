import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { fixedAuditKey } from '../../src/store/audit-key-source.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { StatementCounter, statementLabel } from '../../src/store/statement-counter.js';
import type { GatewayStore, OrderRequest, SubmitContext } from '../../src/store/store.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * The bench's statements per order (issue 19): a store given a StatementCounter counts what it runs; the count
 * starts from reset(), so start-up work (migrations, seeding) stays out of it.
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `ml_test_${randomBytes(6).toString('hex')}`;
afterAll(async () => {
  const client = new pg.Client({ connectionString: DATABASE_URL });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await client.end();
});

const now = 1_764_000_000_000;
const ctx = (): SubmitContext => ({ now, reconnectLimitHours: 24, newOrderId: () => `ord_${randomBytes(4).toString('hex')}`, policy: openPolicy() });
const reconnect = (meterId: string): OrderRequest => ({
  meterId,
  action: 'reconnect',
  reason: 'payment',
  reference: null,
  note: null,
  urgent: false,
  notBefore: null,
  paymentAt: now,
  requestedBy: 'billing',
  idempotencyKey: null,
  requestHash: 'h',
});

async function admitTwo(store: GatewayStore, counter: StatementCounter): Promise<void> {
  await store.migrate();
  await store.upsertMeters(['M-1', 'M-2'].map((meterId) => ({ meterId, profileId: 'p', link: 'L1', region: 'north' })), now);
  counter.reset();
  const outs = await store.submitOrders([reconnect('M-1'), reconnect('M-2')], ctx());
  expect(outs.map((o) => o.order.state)).toEqual(['queued', 'queued']);
}

describe('counting a store’s statements', () => {
  it('SQLite: counts and times each statement run since reset, by its text, with each transaction’s BEGIN and COMMIT', async () => {
    const counter = new StatementCounter();
    const store = new SqliteStore(':memory:', { countStatements: counter });
    try {
      await admitTwo(store, counter);
      const snap = counter.snapshot();
      const count = (prefix: string) => snap.byStatement.find((s) => s.statement.startsWith(prefix))?.count ?? 0;
      expect(count('INSERT INTO orders')).toBeGreaterThanOrEqual(1); // one row each, or one multi-row statement
      expect(snap.byStatement.find((s) => s.statement.startsWith('INSERT INTO orders'))!.us).toBeGreaterThan(0); // timed
      expect(count('BEGIN')).toBeGreaterThanOrEqual(1);
      expect(count('BEGIN')).toBe(count('COMMIT'));
      expect(snap.byStatement.some((s) => s.statement.startsWith('CREATE TABLE'))).toBe(false); // migrations were before reset
      expect(snap.total).toBe(snap.byStatement.reduce((s, r) => s + r.count, 0));
      expect(snap.roundTrips).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('PostgreSQL: counts each query and each round trip, on every connection of the pool', async () => {
    const counter = new StatementCounter();
    const store = new PostgresStore({ connectionString: DATABASE_URL, schema, auditKey: fixedAuditKey(), countStatements: counter });
    try {
      await admitTwo(store, counter);
      const snap = counter.snapshot();
      expect(snap.byStatement.find((s) => s.statement === 'BEGIN')?.count).toBeGreaterThanOrEqual(1);
      expect(snap.byStatement.some((s) => s.statement.startsWith('INSERT INTO orders'))).toBe(true);
      // Each transaction's BEGIN travels with its first statement (the connections pipeline): one round trip fewer
      // per transaction than statements.
      const begins = snap.byStatement.find((s) => s.statement === 'BEGIN')!.count;
      expect(snap.roundTrips).toBe(snap.total - begins);
      // A read on the pool is counted too.
      const before = counter.snapshot().roundTrips;
      await store.getMeter('M-1');
      expect(counter.snapshot().roundTrips).toBe(before + 1);
    } finally {
      await store.close();
    }
  });

  it('labels a statement by its text on one line, cut short', () => {
    expect(statementLabel('SELECT *\n   FROM meters\n  WHERE meter_id = ?')).toBe('SELECT * FROM meters WHERE meter_id = ?');
    expect(statementLabel(`UPDATE orders SET ${'x = 1, '.repeat(20)}`)).toHaveLength(80);
  });
});
