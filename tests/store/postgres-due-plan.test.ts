import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { fixedAuditKey } from '../../src/store/audit-key-source.js';
import { DUE_ORDERS_SQL, PostgresStore, WALK_INDEXES } from '../../src/store/postgres-store.js';

/**
 * The due query (dueOrders) walks orders_queue in its order and stops at its LIMIT, and asks "is an order of this
 * meter on the wire" by a probe of that meter in orders_meter_in_flight, however stale the statistics: in a schema
 * never analysed (a fresh one that filled within autovacuum's minute), the planner read and sorted every queued order
 * per fetch (14 ms for 15,600); analysed while no order was in flight, it read the whole in-flight index for each
 * order walked (25 ms). Either ran on every fetch of every instance. And it still gives the due orders in their order
 * (priority, deadline with none last, age), skipping meters with an order in flight.
 */
const QUEUED = 15_600;
const IN_FLIGHT = 400;
const DONE = 4_000;

describe('the due query walks the queue index to its limit under any statistics', () => {
  const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schemas: string[] = [];
  afterAll(async () => {
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
    } finally {
      await client.end();
    }
  });

  for (const stats of ['never analysed', 'analysed before the queue filled'] as const) {
    it(`PostgreSQL, ${stats}: an index walk with a probe per meter, no sort, and the orders in their order`, async () => {
      const schema = `ml_dueplan_${randomBytes(6).toString('hex')}`;
      schemas.push(schema);
      const store = new PostgresStore({ connectionString: DATABASE_URL, schema, auditKey: fixedAuditKey() });
      const client = new pg.Client({ connectionString: DATABASE_URL });
      try {
        await store.migrate();
        await client.connect();
        await client.query(`SET search_path TO ${schema}`);
        for (const t of ['orders', 'meters']) await client.query(`ALTER TABLE ${t} SET (autovacuum_enabled = false)`);
        const total = DONE + IN_FLIGHT + QUEUED;
        await client.query(`INSERT INTO meters (meter_id, profile_id, link, region, created_at, updated_at)
          SELECT 'M-' || lpad(i::text, 5, '0'), 'p', 'L' || (i % 10), 'north', 0, 0 FROM generate_series(0, ${total - 1}) i`);
        // Orders 0..DONE-1 done, then IN_FLIGHT in flight, then the queue. A queued order's meter is the in-flight one
        // of an order below it for every 50th (its meter is busy: not due); priorities 5 and 7, every third with a
        // deadline, so the order is priority, then deadline (none last), then seq.
        const insert = (from: number, to: number, state: string) =>
          client.query(`INSERT INTO orders (id, meter_id, action, reason, requested_by, state, priority, urgent, link, created_at, updated_at, not_before, next_attempt_at, deadline)
            SELECT 'ord_' || lpad(i::text, 5, '0'),
              'M-' || lpad((CASE WHEN '${state}' = 'queued' AND i % 50 = 0 THEN ${DONE} + (i % ${IN_FLIGHT}) ELSE i END)::text, 5, '0'),
              'reconnect', 'payment', 'ops', '${state}', CASE WHEN i % 7 = 0 THEN 7 ELSE 5 END, FALSE, 'L' || (i % 10), 0, 0, 0, 0,
              CASE WHEN i % 3 = 0 THEN 1000000 - i ELSE NULL END
            FROM generate_series(${from}, ${to - 1}) i`);
        await insert(0, DONE, 'done');
        if (stats === 'analysed before the queue filled') await client.query('ANALYZE orders; ANALYZE meters');
        await insert(DONE, DONE + IN_FLIGHT, 'in_flight');
        await insert(DONE + IN_FLIGHT, total, 'queued');

        const excluded = ['L3', 'L4'];
        const literal = DUE_ORDERS_SQL.replaceAll('$1', '1000').replaceAll('$2', `'{${excluded.join(',')}}'`).replaceAll('$3', '500');
        await client.query('BEGIN');
        await client.query(WALK_INDEXES);
        const plan = (await client.query(`EXPLAIN ${literal}`)).rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
        await client.query('COMMIT');
        expect(plan).toMatch(/Limit[\s\S]*Index Scan using orders_queue on orders o/);
        expect(plan).not.toMatch(/Sort|Bitmap|Seq Scan|Join Filter/);
        expect(plan).toMatch(/Index Only Scan using orders_meter_in_flight on orders f[^\n]*\n\s+Index Cond: \(meter_id = o\.meter_id\)/);

        // The rows: what the query gives through the store is the expected first 500, in their order.
        const due = await store.dueOrders(1000, 500, excluded);
        const expected = Array.from({ length: QUEUED }, (_, k) => DONE + IN_FLIGHT + k)
          .filter((i) => i % 50 !== 0 && !excluded.includes(`L${i % 10}`))
          .map((i) => ({ i, priority: i % 7 === 0 ? 7 : 5, deadline: i % 3 === 0 ? 1_000_000 - i : Infinity }))
          .sort((a, b) => b.priority - a.priority || a.deadline - b.deadline || a.i - b.i)
          .slice(0, 500)
          .map((o) => `ord_${String(o.i).padStart(5, '0')}`);
        expect(due.map((o) => o.id)).toEqual(expected);
      } finally {
        await client.end().catch(() => undefined);
        await store.close();
      }
    }, 120_000);
  }
});
