import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { SQLITE_RATE_SQL } from '../../src/store/sqlite-work-orders.js';

/**
 * The success-rate statements sum per meter first and read index entries only (issue 19); they must report exactly
 * what the plain join over attempts, orders and meters reports (the statements as they were), for every window, on
 * a mix of every order state, attempt outcome (in flight, interrupted, failed, ok), first and later attempts,
 * escalated orders finished or not, and meters sharing a profile, link or region.
 */
const PLAIN_ATTEMPTS = `SELECT m.profile_id AS profileId, m.link AS link, m.region AS region, o.action AS action,
    COUNT(*) AS attempts, SUM(a.outcome = 'ok') AS ok, SUM(a.attempt = 1) AS firstAttempts, SUM(a.attempt = 1 AND a.outcome = 'ok') AS firstOk,
    COUNT(DISTINCT CASE WHEN a.outcome != 'ok' THEN o.meter_id END) AS failedMeters
  FROM attempts a JOIN orders o ON o.id = a.order_id JOIN meters m ON m.meter_id = o.meter_id
  WHERE a.ended_at >= ? AND a.outcome IS NOT NULL AND a.outcome != 'interrupted'
  GROUP BY m.profile_id, m.link, m.region, o.action`;
const PLAIN_ORDERS = `SELECT m.profile_id AS profileId, m.link AS link, m.region AS region, o.action AS action,
    COUNT(*) AS finished, SUM(o.state IN ('done', 'armed') AND o.escalated_at IS NULL) AS succeeded,
    COUNT(DISTINCT CASE WHEN NOT (o.state IN ('done', 'armed') AND o.escalated_at IS NULL) THEN o.meter_id END) AS failedMeters
  FROM orders o JOIN meters m ON m.meter_id = o.meter_id
  WHERE (o.completed_at >= ? AND o.state IN ('done', 'armed', 'failed', 'done_by_field')) OR (o.escalated_at >= ? AND o.state = 'escalated')
  GROUP BY m.profile_id, m.link, m.region, o.action`;

const STATES = ['done', 'armed', 'failed', 'done_by_field', 'escalated', 'queued', 'in_flight', 'cancelled', 'superseded'];
const OUTCOMES = [null, 'ok', 'ok', 'ok', 'no_response', 'relay_stuck', 'interrupted', 'rejected'];
const ORDERS = 3000;
const METERS = 60;
const T = 10_000_000;

/** A deterministic pseudo-random mix (no Math.random: a failure replays). */
function lcg(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
}

const sortRows = <R>(rows: R[]): R[] => [...rows].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));

describe('success-rate statements (SQLite)', () => {
  let dir: string;
  let path: string;
  let store: SqliteStore;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ml-rates-'));
    path = join(dir, 'gw.db');
    const s0 = new SqliteStore(path);
    await s0.migrate();
    await s0.close();
    const db = new Database(path);
    const rnd = lcg(19);
    const pick = <V>(xs: readonly V[]): V => xs[Math.floor(rnd() * xs.length)]!;
    const meter = db.prepare(`INSERT INTO meters (meter_id, profile_id, link, region, created_at, updated_at) VALUES (?, ?, ?, ?, 0, 0)`);
    for (let i = 0; i < METERS; i++) meter.run(`M-${i}`, `p${i % 3}`, `L${i % 4}`, `r${i % 2}`);
    const order = db.prepare(`INSERT INTO orders (id, seq, meter_id, action, reason, requested_by, state, priority, urgent, link, created_at, updated_at, not_before, next_attempt_at, completed_at, escalated_at)
                              VALUES (?, ?, ?, ?, 'payment', 'billing', ?, 3, 0, 'L', ?, ?, 0, 0, ?, ?)`);
    const attempt = db.prepare(`INSERT INTO attempts (order_id, attempt, started_at, ended_at, outcome) VALUES (?, ?, ?, ?, ?)`);
    db.transaction(() => {
      for (let i = 0; i < ORDERS; i++) {
        const at = Math.floor(rnd() * T);
        const state = pick(STATES);
        const finished = ['done', 'armed', 'failed', 'done_by_field', 'cancelled', 'superseded'].includes(state);
        // Some finished orders were escalated on the way (a reconnect done by the field, or remotely after all).
        const escalatedAt = state === 'escalated' || (finished && rnd() < 0.15) ? at + 10 : null;
        order.run(`o${i}`, i + 1, `M-${Math.floor(rnd() * METERS)}`, pick(['disconnect', 'reconnect', 'limit']), state, at, at, finished ? at + 100 : null, escalatedAt);
        const n = 1 + Math.floor(rnd() * 3);
        for (let k = 1; k <= n; k++) {
          const outcome = k === n ? pick(OUTCOMES) : pick(OUTCOMES.filter((o) => o !== null));
          attempt.run(`o${i}`, k, at + k, outcome === null ? null : at + k * 20, outcome);
        }
      }
    })();
    db.close();
    store = new SqliteStore(path);
    await store.migrate();
  });

  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('report the same rows as the plain join over attempts, orders and meters, for every window', async () => {
    const db = new Database(path, { readonly: true });
    try {
      for (const since of [0, 1, T / 10, T / 2, T - T / 20, T + 1_000]) {
        const attempts = (db.prepare(PLAIN_ATTEMPTS).all(since) as Record<string, number | null>[]).map((r) => ({ ...r, ok: r.ok ?? 0, firstAttempts: r.firstAttempts ?? 0, firstOk: r.firstOk ?? 0, failedMeters: r.failedMeters ?? 0 }));
        const orders = db.prepare(PLAIN_ORDERS).all(since, since);
        expect(sortRows(await store.attemptStats(since)), `attempts since ${since}`).toEqual(sortRows(attempts));
        expect(sortRows(await store.orderOutcomeStats(since)), `orders since ${since}`).toEqual(sortRows(orders));
        if (since === T / 2) {
          expect(attempts.length).toBeGreaterThan(20);
          expect(attempts.some((r) => (r.failedMeters ?? 0) > 1 && (r.ok ?? 0) > 0)).toBe(true);
          expect(orders.length).toBeGreaterThan(20);
        }
      }
    } finally {
      db.close();
    }
  });

  it('read the window from index entries only, never a table scan', () => {
    const db = new Database(path, { readonly: true });
    try {
      const plan = (sql: string, ...args: number[]) => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[]).map((r) => r.detail);
      const attempts = plan(SQLITE_RATE_SQL.attempts, T / 2);
      expect(attempts.join(' | ')).toMatch(/SEARCH a USING COVERING INDEX attempts_ended \(ended_at>\?\)/);
      const orders = plan(SQLITE_RATE_SQL.orders, T / 2, T / 2);
      expect(orders.join(' | ')).toMatch(/SEARCH o USING COVERING INDEX orders_completed \(completed_at>\?\)/);
      expect(orders.join(' | ')).toMatch(/SEARCH o USING COVERING INDEX orders_escalated \(escalated_at>\?\)/);
      for (const line of [...attempts, ...orders]) expect(line).not.toMatch(/^SCAN (a|o|m|attempts|orders|meters)\b/);
    } finally {
      db.close();
    }
  });
});
