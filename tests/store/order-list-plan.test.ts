import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { fixedAuditKey } from '../../src/store/audit-key-source.js';
import { orderListSql } from '../../src/store/order-list-query.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { OrderQuery } from '../../src/store/store.js';

/**
 * A page of the order list at fleet scale: with a million orders in the table, the database walks an index in the
 * list's order and stops at the page's end. No full scan and no sort of the table, for the default page (newest
 * first) nor for one meter's or one state's orders.
 */
const ORDERS = 1_000_000;
const METERS = 5_000;
const PAGES: Record<string, OrderQuery> = {
  'the default page': { order: 'desc', limit: 101 },
  'the next page': { order: 'desc', limit: 101 },
  "one meter's orders": { order: 'desc', meterId: 'M-00042', limit: 101 },
  'orders in a state': { order: 'desc', states: ['queued'], limit: 101 },
};
const AFTER_SEQ: Record<string, number | undefined> = { 'the next page': ORDERS / 2 };

/** Rows that fill every NOT NULL column, made by the database itself (a million INSERTs from here would take minutes). */
const fillSql = (series: string, n: string, meterId: string) => `
  INSERT INTO orders (id, seq, meter_id, action, reason, requested_by, state, priority, urgent, link, created_at, updated_at, not_before, next_attempt_at)
  SELECT 'ord_' || ${n}, ${n}, ${meterId}, 'disconnect', 'arrears', 'ops',
         CASE WHEN ${n} % 50 = 0 THEN 'queued' ELSE 'done' END, 3, FALSE, 'L1', ${n} * 1000, ${n} * 1000, 0, 0
  FROM ${series}`;

describe('the order list at a million orders walks an index, never the table', () => {
  it('SQLite: every page is an index walk in the list order with no sort step', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ml-plan-')), 'gw.db');
    const store = new SqliteStore(path);
    await store.migrate();
    await store.close();
    const db = new Database(path);
    try {
      db.exec(`WITH RECURSIVE m(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM m WHERE i < ${METERS - 1})
        INSERT INTO meters (meter_id, profile_id, link, region, created_at, updated_at) SELECT 'M-' || substr('0000' || i, -5, 5), 'p', 'L1', 'north', 0, 0 FROM m`);
      db.exec(fillSql(`(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ${ORDERS}) SELECT i FROM s)`, 'i', `'M-' || substr('0000' || (i % ${METERS}), -5, 5)`));
      for (const [name, q] of Object.entries(PAGES)) {
        const args: unknown[] = [];
        const sql = orderListSql(q, AFTER_SEQ[name], { param: (v) => (args.push(v), '?'), contains: () => 'unused', anyOf: () => 'unused' });
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[]).map((r) => r.detail).join('\n');
        expect(plan, name).toMatch(/USING (COVERING )?INDEX (sqlite_autoindex_orders_2|orders_meter_seq|orders_state_seq)/);
        expect(plan, name).not.toMatch(/TEMP B-TREE|^SCAN orders$/m);
        expect(db.prepare(sql).all(...args), name).toHaveLength(101);
      }
    } finally {
      db.close();
    }
  }, 300_000);

  const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `ml_plan_${randomBytes(6).toString('hex')}`;
  afterAll(async () => {
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => client.end());
  });

  it('PostgreSQL: every page is an index scan in the list order with no sort step and no sequential scan', async () => {
    const store = new PostgresStore({ connectionString: DATABASE_URL, schema, auditKey: fixedAuditKey() });
    await store.migrate();
    await store.close();
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      await client.query(`SET search_path TO ${schema}`);
      await client.query(`INSERT INTO meters (meter_id, profile_id, link, region, created_at, updated_at)
        SELECT 'M-' || lpad(i::text, 5, '0'), 'p', 'L1', 'north', 0, 0 FROM generate_series(0, ${METERS - 1}) i`);
      await client.query(fillSql(`generate_series(1, ${ORDERS}) i`, 'i', `'M-' || lpad((i % ${METERS})::text, 5, '0')`));
      await client.query('ANALYZE orders');
      for (const [name, q] of Object.entries(PAGES)) {
        const args: unknown[] = [];
        const sql = orderListSql(q, AFTER_SEQ[name], { param: (v) => (args.push(v), `$${args.length}`), contains: () => 'unused', anyOf: () => 'unused' });
        const plan = (await client.query(`EXPLAIN ${sql}`, args)).rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
        expect(plan, name).toMatch(/Index Scan (Backward )?using (orders_seq_key|orders_meter_seq|orders_state_seq)/);
        expect(plan, name).not.toMatch(/Seq Scan|Sort/);
        expect((await client.query(sql, args)).rows, name).toHaveLength(101);
      }
    } finally {
      await client.end();
    }
  }, 300_000);
});
