import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { fixedAuditKey } from '../../src/store/audit-key-source.js';
import { seriesSql, type SeriesParam } from '../../src/store/order-series.js';
import { PostgresStore } from '../../src/store/postgres-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';

/**
 * The overview's charts at fleet scale: with a million orders over four months, a week by the 7-minute bucket (1,440
 * buckets) reads only the week's index entries: every statement of the series is an index search, never a scan
 * of the orders table. (The plan, not a timing: a loaded machine makes timings lie.)
 */
const ORDERS = 1_000_000;
const SPACING_MS = 10_000;
const STEP = 7 * 60_000;
const TO = ORDERS * SPACING_MS;
const FROM = TO - 1440 * STEP;

/** Every NOT NULL column filled by the database itself; 1 in 50 queued (open), 1 in 100 escalated, the rest done or failed 5 s after creation. */
const fillSql = (series: string, n: string) => `
  INSERT INTO orders (id, seq, meter_id, action, reason, requested_by, state, priority, urgent, link, created_at, updated_at, not_before, next_attempt_at, completed_at, escalated_at)
  SELECT 'ord_' || ${n}, ${n}, 'M-1', 'reconnect', 'payment', 'billing',
         CASE WHEN ${n} % 50 = 0 THEN 'queued' WHEN ${n} % 100 = 1 THEN 'escalated' WHEN ${n} % 7 = 0 THEN 'failed' ELSE 'done' END,
         3, FALSE, 'L1', ${n} * ${SPACING_MS}, ${n} * ${SPACING_MS}, 0, 0,
         CASE WHEN ${n} % 50 = 0 OR ${n} % 100 = 1 THEN NULL ELSE ${n} * ${SPACING_MS} + 5000 END,
         CASE WHEN ${n} % 100 = 1 THEN ${n} * ${SPACING_MS} + 5000 ELSE NULL END
  FROM ${series}`;

const statements = (param: (args: number[]) => SeriesParam) =>
  Object.entries({
    'queue depth at the start': (p: SeriesParam) => seriesSql.openAtStart(p, FROM),
    'created per bucket': (p: SeriesParam) => seriesSql.created(p, FROM, TO, STEP),
    'finished per bucket': (p: SeriesParam) => seriesSql.completed(p, FROM, TO, STEP),
    'escalated per bucket': (p: SeriesParam) => seriesSql.escalated(p, FROM, TO, STEP),
  }).map(([name, build]) => {
    const args: number[] = [];
    return { name, sql: build(param(args)), args };
  });

describe('orders over time at a million orders search indexes, never scan the table', () => {
  it('SQLite: every statement searches an index; the week’s series has 1,440 buckets', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ml-series-plan-')), 'gw.db');
    const store = new SqliteStore(path);
    await store.migrate();
    await store.close();
    const db = new Database(path);
    try {
      db.exec(`INSERT INTO meters (meter_id, profile_id, link, region, created_at, updated_at) VALUES ('M-1', 'p', 'L1', 'north', 0, 0)`);
      db.exec(fillSql(`(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ${ORDERS}) SELECT i FROM s)`, 'i'));
      db.exec('ANALYZE');
      for (const { name, sql, args } of statements((args) => (v) => (args.push(v), 'CAST(? AS INTEGER)'))) {
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[]).map((r) => r.detail);
        const onOrders = plan.filter((l) => /\borders\b/.test(l));
        expect(onOrders.length, name).toBeGreaterThan(0);
        for (const line of onOrders) expect(line, `${name}: ${plan.join(' | ')}`).toMatch(/^SEARCH orders USING (COVERING )?INDEX (orders_created|orders_completed|orders_escalated|orders_state_seq)/);
      }
    } finally {
      db.close();
    }
    const again = new SqliteStore(path);
    try {
      const series = await again.orderSeries(FROM, TO, STEP);
      expect(series).toHaveLength(1440);
      // The queue holds the 1 in 50 queued and the 1 in 100 escalated, but for the last order, created at TO itself.
      expect(series.at(-1)!.queueDepth).toBe(ORDERS / 50 + ORDERS / 100 - 1);
      expect(series.reduce((n, b) => n + b.finished, 0)).toBeGreaterThan(50_000);
    } finally {
      await again.close();
    }
  }, 300_000);

  const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `ml_series_${randomBytes(6).toString('hex')}`;
  afterAll(async () => {
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => client.end());
  });

  it('PostgreSQL: every statement is an index scan, with no sequential scan', async () => {
    const store = new PostgresStore({ connectionString: DATABASE_URL, schema, auditKey: fixedAuditKey() });
    await store.migrate();
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      await client.query(`SET search_path TO ${schema}`);
      await client.query(`INSERT INTO meters (meter_id, profile_id, link, region, created_at, updated_at) VALUES ('M-1', 'p', 'L1', 'north', 0, 0)`);
      await client.query(fillSql(`generate_series(1, ${ORDERS}::bigint) i`, 'i'));
      await client.query('VACUUM ANALYZE orders');
      for (const { name, sql, args } of statements((args) => (v) => (args.push(v), `$${args.length}::bigint`))) {
        const plan = (await client.query(`EXPLAIN ${sql}`, args)).rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
        expect(plan, name).toMatch(/Index (Only )?Scan using (orders_created|orders_completed|orders_escalated|orders_state_seq)/);
        expect(plan, name).not.toMatch(/Seq Scan/);
      }
      const series = await store.orderSeries(FROM, TO, STEP);
      expect(series).toHaveLength(1440);
      expect(series.at(-1)!.queueDepth).toBe(ORDERS / 50 + ORDERS / 100 - 1);
    } finally {
      await client.end();
      await store.close();
    }
  }, 300_000);
});
