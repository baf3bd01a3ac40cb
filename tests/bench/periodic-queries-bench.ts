/**
 * What each periodic store query of a busy gateway costs per run (issue 19): a SQLite store holding
 * BENCH_RECENT (100,000) attempts over the last hour and as many older ones, on BENCH_METERS meters over 4 profiles,
 * 10 links and 5 regions. Each query runs BENCH_RUNS times through the store's own API; the median and the
 * SQLite plan of the success-rate statements are printed.
 *
 *   npx tsc -p tsconfig.json && node dist/tests/bench/periodic-queries-bench.js
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import * as workOrders from '../../src/store/sqlite-work-orders.js';

/** The statements, for their plans (absent before they were exported: then no plans are printed). */
const rateSql = (workOrders as { SQLITE_RATE_SQL?: { attempts: string; orders: string } }).SQLITE_RATE_SQL;

const RECENT = Number(process.env.BENCH_RECENT ?? 100_000);
const OLDER = Number(process.env.BENCH_OLDER ?? RECENT);
const METERS = Number(process.env.BENCH_METERS ?? 20_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const HOUR = 3_600_000;

/** Orders 1..RECENT+OLDER, the last RECENT in the hour before `now`; 1 in 20 failed (its first attempt failed, a second too), 1 in 200 escalated. */
function fill(db: Database.Database, now: number): void {
  const total = RECENT + OLDER;
  const series = (n: number) => `(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ${n}) SELECT i FROM s)`;
  db.exec(`INSERT INTO meters (meter_id, profile_id, link, region, created_at, updated_at)
           SELECT 'M-' || i, 'p' || (i % 4), 'L' || (i % 10), 'r' || (i % 5), 0, 0 FROM ${series(METERS)}`);
  // Order i ends at t(i): the last RECENT spread evenly over the last hour, the older ones over the hours before.
  const t = `(${now} - (${total} - i) * ${Math.floor(HOUR / RECENT)})`;
  db.exec(`INSERT INTO orders (id, seq, meter_id, action, reason, requested_by, state, priority, urgent, link, created_at, updated_at, not_before, next_attempt_at, attempts, completed_at, escalated_at)
           SELECT 'ord_' || i, i, 'M-' || (i % ${METERS} + 1), CASE WHEN i % 3 = 0 THEN 'disconnect' ELSE 'reconnect' END, 'payment', 'billing',
                  CASE WHEN i % 200 = 7 THEN 'escalated' WHEN i % 20 = 3 THEN 'failed' ELSE 'done' END,
                  3, FALSE, 'L' || (i % 10), ${t} - 5000, ${t}, 0, 0, CASE WHEN i % 20 = 3 THEN 2 ELSE 1 END,
                  CASE WHEN i % 200 = 7 THEN NULL ELSE ${t} END, CASE WHEN i % 200 = 7 THEN ${t} ELSE NULL END
           FROM ${series(total)}`);
  db.exec(`INSERT INTO attempts (order_id, attempt, started_at, ended_at, outcome, latency_ms)
           SELECT 'ord_' || i, 1, ${t} - 4000, ${t} - 3000, CASE WHEN i % 20 = 3 OR i % 200 = 7 THEN 'no_response' ELSE 'ok' END, 1000 FROM ${series(total)}`);
  db.exec(`INSERT INTO attempts (order_id, attempt, started_at, ended_at, outcome, latency_ms)
           SELECT 'ord_' || i, 2, ${t} - 2000, ${t} - 1000, 'no_response', 1000 FROM ${series(total)} WHERE i % 20 = 3`);
}

async function time(name: string, run: () => Promise<unknown>): Promise<void> {
  const ms: number[] = [];
  let rows = 0;
  for (let i = 0; i < RUNS; i++) {
    const t0 = process.hrtime.bigint();
    const r = await run();
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    rows = Array.isArray(r) ? r.length : typeof r === 'object' && r !== null ? Object.keys(r).length : 1;
  }
  ms.sort((a, b) => a - b);
  console.log(`${name.padEnd(48)} median ${ms[Math.floor(ms.length / 2)]!.toFixed(2).padStart(8)} ms  min ${ms[0]!.toFixed(2).padStart(8)} ms  (${rows} rows)`);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ml-periodic-'));
  const path = join(dir, 'gw.db');
  const now = Date.now();
  try {
    const s0 = new SqliteStore(path);
    await s0.migrate();
    await s0.close();
    const db = new Database(path);
    fill(db, now);
    for (const [name, since] of [['15 min', now - 15 * 60_000], ['60 min', now - 60 * 60_000]] as const) {
      for (const { sql, args } of rateSql ? [{ sql: rateSql.attempts, args: [since] }, { sql: rateSql.orders, args: [since, since] }] : []) {
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[]).map((r) => r.detail);
        console.log(`plan (${name}) ${sql.slice(0, 40).replace(/\s+/g, ' ')}…: ${plan.join(' | ')}`);
      }
    }
    db.close();
    const store = new SqliteStore(path);
    await store.migrate();
    try {
      console.log(`${RECENT} attempts in the last hour (+${OLDER} older, ${RECENT / 20} second attempts each), ${METERS} meters; ${RUNS} runs each`);
      console.log(`rows: ${JSON.stringify(await store.countOpenOrdersByState())}`);
      for (const minutes of [15, 60]) {
        const since = now - minutes * 60_000;
        await time(`attemptStats(${minutes} min)`, () => store.attemptStats(since));
        await time(`orderOutcomeStats(${minutes} min)`, () => store.orderOutcomeStats(since));
      }
      await time('reconnectsNearDeadline(now + 1 h, 1000)', () => store.reconnectsNearDeadline(now + HOUR, 1000));
      await time('countOpenOrdersByState', () => store.countOpenOrdersByState());
      await time('mostUrgentReconnectDeadline', () => store.mostUrgentReconnectDeadline());
      await time('countWorkOrdersByStatus', () => store.countWorkOrdersByStatus());
      await time('listBreakers(false)', () => store.listBreakers(false));
      await time('listAlerts(1000)', () => store.listAlerts(1000));
      await time('pendingNotifications(now, 100, [alert.])', () => store.pendingNotifications(now, 100, ['alert.']));
      await time('pendingClientEvents(billing, 5000)', () => store.pendingClientEvents('billing', 5000));
    } finally {
      await store.close();
    }
  } finally {
    if (process.env.BENCH_KEEP) console.log(`kept ${path} (now = ${now})`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

await main();
