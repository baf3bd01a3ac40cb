import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { fixedAuditKey } from '../../src/store/audit-key-source.js';
import { BEGIN_ATTEMPTS_SQL, COMPLETE_ATTEMPTS_SQL, PostgresStore } from '../../src/store/postgres-store.js';

/**
 * The control loop's two statements per batch, the lease (beginAttempts) and the completion write (completeBatch),
 * reach the batch's orders and meters by their keys, however the planner sizes the tables: in a fresh schema whose
 * statistics were taken while it was empty, with a backlog of 20,000 queued orders, under a generic plan (the
 * prepared statement after its first executions, array sizes unknown) and a custom one (the actual arrays). No
 * sequential scan of the meters (nor of the orders, but for the lease's own UPDATE joined to its batch), and no walk
 * of the queue's or the states' index: those read the whole backlog per batch (a 110-order lease took 67 ms,
 * filtering 14,000 queued orders against its id array).
 */
const METERS = 20_000;
const BATCH = 200;

describe('the lease and the completion write probe their rows by key, not the whole backlog', () => {
  const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `ml_leaseplan_${randomBytes(6).toString('hex')}`;
  afterAll(async () => {
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => client.end());
  });

  it('PostgreSQL: generic and custom plans of both statements use the primary keys, with no table scan', async () => {
    const store = new PostgresStore({ connectionString: DATABASE_URL, schema, auditKey: fixedAuditKey() });
    await store.migrate();
    await store.close();
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      await client.query(`SET search_path TO ${schema}`);
      // Statistics of the empty tables, kept while they fill (as in the first minute of a fresh schema).
      for (const t of ['orders', 'meters', 'attempts']) {
        await client.query(`ALTER TABLE ${t} SET (autovacuum_enabled = false)`);
        await client.query(`ANALYZE ${t}`);
      }
      await client.query(`INSERT INTO meters (meter_id, profile_id, link, region, created_at, updated_at)
        SELECT 'M-' || lpad(i::text, 5, '0'), 'p', 'L' || (i % 10), 'north', 0, 0 FROM generate_series(0, ${METERS - 1}) i`);
      await client.query(`INSERT INTO orders (id, meter_id, action, reason, requested_by, state, priority, urgent, link, created_at, updated_at, not_before, next_attempt_at)
        SELECT 'ord_' || lpad(i::text, 5, '0'), 'M-' || lpad(i::text, 5, '0'), 'reconnect', 'payment', 'ops', 'queued', 5, FALSE, 'L' || (i % 10), 0, 0, 0, 0
        FROM generate_series(0, ${METERS - 1}) i`);
      const ids = Array.from({ length: BATCH }, (_, i) => `ord_${String(i * 97).padStart(5, '0')}`);
      const meters = ids.map((id) => id.replace('ord_', 'M-'));
      const n = (v: unknown) => ids.map(() => v);
      const statements: Record<string, { sql: string; args: unknown[] }> = {
        lease: { sql: BEGIN_ATTEMPTS_SQL, args: [ids, 1, 'inst', 2] },
        completion: {
          sql: COMPLETE_ATTEMPTS_SQL,
          args: [ids, n(1), n(1), n('ok'), n(5), n('connected'), n('c'), n('r'), n(null), n('in_flight'), n('done'), n('verified'), n(true), n(null),
            meters, n('connected'), n(1), n('read'), n(230), n(1000)],
        },
      };
      // The arguments as literals (EXECUTE takes expressions): arrays as '{…}', text quoted.
      const literal = (v: unknown): string =>
        Array.isArray(v) ? `'{${v.map((x) => (x === null ? 'NULL' : String(x))).join(',')}}'` : typeof v === 'string' ? `'${v}'` : String(v);
      for (const [name, { sql }] of Object.entries(statements)) await client.query(`PREPARE ${name} AS ${sql}`);
      for (const mode of ['force_generic_plan', 'force_custom_plan']) {
        await client.query(`SET plan_cache_mode = ${mode}`);
        for (const [name, { args }] of Object.entries(statements)) {
          const plan = (await client.query(`EXPLAIN EXECUTE ${name}(${args.map(literal).join(', ')})`)).rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
          const what = `${name}, ${mode}`;
          // Never the queue's or the states' index (every queued order), never all the meters.
          expect(plan, what).not.toMatch(/Index Scan (on|using) (orders_queue|orders_state_seq)|Seq Scan on meters/);
          if (name === 'lease') {
            // The ids and their meters are probed by key; the lease's own UPDATE may hash the orders table against
            // the batch (one pass, as before), but what it reads and locks is chosen by key.
            const candidates = plan.slice(plan.indexOf('CTE candidates'), plan.indexOf('CTE taken'));
            const taken = plan.slice(plan.indexOf('CTE taken'), plan.indexOf('CTE leased'));
            expect(candidates, what).toMatch(/Index Scan using orders_pkey on orders\s+\(.*\n\s+Index Cond: \(id = k\.id\)/);
            expect(candidates, what).not.toMatch(/Seq Scan|Bitmap/);
            expect(taken, what).toMatch(/Index Scan using meters_pkey on meters/);
          } else {
            expect(plan, what).toMatch(/Index Scan using orders_pkey|Bitmap Index Scan on orders_pkey/);
            expect(plan, what).not.toMatch(/Seq Scan on orders/);
          }
        }
      }
    } finally {
      await client.end();
    }
  }, 300_000);
});
