/**
 * PostgreSQL scale-out (issue 19, item 4): the same 20,000 reconnects through one gateway instance, then through two
 * instances (two processes, the built program `dist/src/main.js`, each its own instanceId) sharing one PostgreSQL
 * schema, one mosquitto and one simulated fleet. Each run has a fresh schema and a fresh fleet (its own meter ids),
 * the orders go in as bulk requests to the first instance, and the run ends when the database has every order in a
 * final state. Prints both wall times, verified orders/s, which instance finished how many orders, and two ÷ one.
 * Then the same 20,000 through one instance on SQLite (the shipped default: its journal on a worker thread), the
 * same harness and processes, for PostgreSQL ÷ SQLite (issue 19's bar: at least 0.7).
 *
 * Each run first sends a warm-up of BENCH_SCALE_WARMUP reconnects (default 4,000, on meters of their own) through the
 * same instances and waits for them to finish, and only then starts the clock: a gateway process spends its first
 * one to two CPU-seconds compiling its hot code (V8's optimising compiler, measured with perf in issue 19's third
 * round), which a gateway that has run for a minute has behind it. Without it, two fresh processes pay that twice in
 * the timed run and one fresh process once, and a 20,000-order run measures start-up rather than throughput. Every
 * figure printed (wall time, orders/s, CPU per order, final states, lease holders) is for the timed orders only.
 *
 * `BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test node dist/tests/bench/postgres-scale-bench.js`
 * (default URL as shown); BENCH_SCALE_ORDERS (default 20000), BENCH_SCALE_WARMUP (default 4000; 0 for none). The
 * schemas are dropped at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { newApiKey, sha256Hex } from '../../src/api/auth.js';
import { BULK_LIMIT } from '../../src/api/schemas.js';
import { projectRoot } from '../../src/config/project-root.js';
import { freePort, startMosquitto } from '../harness/mosquitto.js';
import { waitHealthy } from '../harness/fault-run.js';
import { BENCH_PROFILE, fmt, isMain, LINK_CONCURRENCY, LINKS, machineLine, MAX_IN_FLIGHT, meterIds, postJson, startSimulator, stopChild, track, writeBenchProfiles } from './bench-common.js';

const MAIN = join(projectRoot(), 'dist', 'src', 'main.js');
const FINAL = `('done', 'armed', 'failed', 'done_by_field', 'cancelled', 'superseded', 'refused')`;

export interface ScaleResult {
  store: 'postgres' | 'sqlite';
  instances: number;
  orders: number;
  wallMs: number;
  ordersPerS: number;
  states: Record<string, number>;
  /** Final transitions by the instance whose lease the order was under when it ended. */
  byInstance: Record<string, number>;
  /** CPU time (user + system) of all gateway processes over the run, per verified order (µs); NaN without /proc. */
  gatewayCpuUsPerOrder: number;
  /**
   * CPU time of the PostgreSQL server's processes (every process named `postgres` on this machine: its backends, the
   * WAL writer, autovacuum…) over the run, per verified order (µs); NaN for SQLite or without /proc. A backend that
   * exits during the run takes its CPU with it (the gateways' pools keep theirs), and a server shared with another
   * job counts that job's work too.
   */
  serverCpuUsPerOrder: number;
}

/** CPU time so far (ms) of every process named `postgres` (the server, if it runs on this machine). */
function postgresCpuMs(): number {
  let sum = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (!stat.includes('(postgres)')) continue;
      const fields = stat.split(') ')[1]!.split(' ');
      sum += ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
    } catch {
      // gone meanwhile
    }
  }
  return sum;
}

/** A process's CPU time so far (user + system, ms), from /proc (Linux); NaN elsewhere. */
function cpuMs(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return NaN;
  }
}

function startInstance(config: string, name: string): ChildProcess {
  const child = track(spawn(process.execPath, [MAIN], { env: { ...process.env, METERLINE_CONFIG: config, DATABASE_URL: '' }, stdio: ['ignore', 'ignore', 'pipe'] }));
  // Its log (warnings and the start banner) is shown only if it fails.
  let log = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    log = (log + d).slice(-8000);
  });
  child.once('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGTERM') process.stderr.write(`[${name}] exited with ${code ?? signal}; its last log:\n${log}\n`);
  });
  return child;
}

/** What the run asks of the store it ends on: how many orders are open, and the final counts. */
interface RunDb {
  rows(sql: string): Promise<Record<string, unknown>[]>;
  end(): Promise<void>;
}

async function postgresDb(url: string, schema: string): Promise<RunDb> {
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  return {
    rows: async (sql) => (await db.query(sql.replaceAll('{orders}', `${schema}.orders`))).rows,
    end: async () => {
      await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
      await db.end();
    },
  };
}

/** The gateway's SQLite file, read on a connection of its own (WAL: readers do not block the gateway's writes). */
function sqliteDb(path: string): RunDb {
  let db: Database.Database | undefined;
  return {
    rows: async (sql) => {
      db ??= new Database(path, { readonly: true, fileMustExist: true });
      return db.prepare(sql.replaceAll('{orders}', 'orders').replaceAll('::int', '')).all() as Record<string, unknown>[];
    },
    end: async () => {
      db?.close();
    },
  };
}

/** Sends reconnects for `ids` as bulk requests to the first instance. */
async function submit(port: number, apiKey: string, ids: readonly string[], tag: string): Promise<void> {
  for (let i = 0; i < ids.length; i += BULK_LIMIT) {
    const chunk = ids.slice(i, i + BULK_LIMIT).map((meterId) => ({ meterId, action: 'reconnect', reason: 'payment' }));
    await postJson(`http://127.0.0.1:${port}/v1/orders/bulk`, apiKey, { orders: chunk }, `${tag}-${i}`);
  }
}

/** Waits until the store has no open order (after `since`, for the error message). */
async function allFinal(db: RunDb, since: number): Promise<void> {
  for (;;) {
    const open = (await db.rows(`SELECT COUNT(*)::int AS n FROM {orders} WHERE state NOT IN ${FINAL}`))[0]!.n as number;
    if (open === 0) return;
    if (performance.now() - since > 600_000) throw new Error(`${open} orders still open after 600 s`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function runScale(o: { url: string; brokerUrl: string; profilesDir: string; orders: number; warmup?: number; instances: number; prefix: string; store?: 'postgres' | 'sqlite' }): Promise<ScaleResult> {
  const warmup = o.warmup ?? 0;
  const meters = warmup + o.orders;
  const kind = o.store ?? 'postgres';
  if (kind === 'sqlite' && o.instances !== 1) throw new Error('a SQLite file has one gateway instance');
  const schema = `ml_bench_scale${o.instances}_${Date.now().toString(36)}`;
  const dir = mkdtempSync(join(tmpdir(), 'ml-bench-scale-'));
  const sqlitePath = join(dir, 'gw.db');
  const db = kind === 'postgres' ? await postgresDb(o.url, schema) : sqliteDb(sqlitePath);
  const sim = await startSimulator({ brokerUrl: o.brokerUrl, meters, prefix: o.prefix, profilesDir: o.profilesDir });
  const apiKey = newApiKey('op');
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  try {
    for (let i = 0; i < o.instances; i++) {
      const instanceId = `scale-${String.fromCharCode(97 + i)}`;
      const port = await freePort();
      const config = join(dir, `${instanceId}.json`);
      writeFileSync(
        config,
        JSON.stringify({
          instanceId,
          api: { host: '127.0.0.1', port, rateLimit: { max: 1_000_000, timeWindowMs: 1000 } },
          store: kind === 'postgres' ? { kind: 'postgres', postgres: { url: o.url, schema, maxConnections: 10 } } : { kind: 'sqlite', sqlite: { path: sqlitePath } },
          mqtt: { mode: 'external', url: o.brokerUrl, maxInFlight: MAX_IN_FLIGHT },
          profilesDir: o.profilesDir,
          control: { linkConcurrency: LINK_CONCURRENCY },
          auth: { keys: [{ name: instanceId, role: 'operator', sha256: sha256Hex(apiKey) }], demoKeys: false },
          fleet: { seed: { count: meters, prefix: o.prefix, profiles: [BENCH_PROFILE], links: LINKS, regions: ['north'] } },
          simulator: { inProcess: false },
          demo: { reconnectEveryMs: 0 },
          readings: { schedules: [] },
          // Instances configured in one directory share the audit key, as they must on one database.
          audit: { keyFile: join(dir, 'audit.key'), anchorFile: join(dir, `${instanceId}-audit-anchors.jsonl`) },
          log: { level: 'warn' },
        }),
      );
      // One after another: the first creates the schema (and the audit key) the next one joins.
      const child = startInstance(config, instanceId);
      children.push(child);
      ports.push(port);
      await waitHealthy(port, 120_000, instanceId, () => (child.exitCode !== null ? `${instanceId} exited with ${child.exitCode}` : null));
    }
    const ids = meterIds(o.prefix, meters);
    if (warmup > 0) {
      const w0 = performance.now();
      await submit(ports[0]!, apiKey, ids.slice(0, warmup), 'warmup');
      await allFinal(db, w0);
    }
    // The timed orders are the ones after the warm-up's: seq grows with admission on both stores.
    const seq0 = Number((await db.rows(`SELECT COALESCE(MAX(seq), 0) AS s FROM {orders}`))[0]!.s);
    const cpu0 = children.reduce((sum, c) => sum + cpuMs(c.pid), 0);
    const server0 = kind === 'postgres' ? postgresCpuMs() : NaN;
    const t0 = performance.now();
    await submit(ports[0]!, apiKey, ids.slice(warmup), 'scale');
    await allFinal(db, t0);
    const wallMs = performance.now() - t0;
    const gatewayCpuUsPerOrder = ((children.reduce((sum, c) => sum + cpuMs(c.pid), 0) - cpu0) * 1000) / o.orders;
    const serverCpuUsPerOrder = ((postgresCpuMs() - server0) * 1000) / o.orders;
    const states = Object.fromEntries((await db.rows(`SELECT state, COUNT(*)::int AS n FROM {orders} WHERE seq > ${seq0} GROUP BY state`)).map((r) => [r.state, r.n]));
    const byInstance = Object.fromEntries(
      (await db.rows(`SELECT COALESCE(lease_owner, '-') AS o, COUNT(*)::int AS n FROM {orders} WHERE seq > ${seq0} GROUP BY lease_owner ORDER BY 1`)).map((r) => [r.o, r.n]),
    );
    return { store: kind, instances: o.instances, orders: o.orders, wallMs, ordersPerS: (o.orders / wallMs) * 1000, states, byInstance, gatewayCpuUsPerOrder, serverCpuUsPerOrder };
  } finally {
    for (const c of children) await stopChild(c);
    await stopChild(sim);
    await db.end();
  }
}

export function printScale(r: ScaleResult): void {
  console.log(
    `${r.store === 'postgres' ? 'PostgreSQL' : 'SQLite'}, ${r.instances} instance${r.instances > 1 ? 's' : ''}: ${fmt(r.orders)} reconnects verified in ${(r.wallMs / 1000).toFixed(2)} s = ${fmt(r.ordersPerS)} verified orders/s; ` +
      `gateway CPU (all instances) ${fmt(r.gatewayCpuUsPerOrder)} µs per order; ` +
      (r.store === 'postgres' ? `PostgreSQL server CPU ${fmt(r.serverCpuUsPerOrder)} µs per order; ` : '') +
      `final states ${JSON.stringify(r.states)}; orders by last lease holder ${JSON.stringify(r.byInstance)}`,
  );
}

if (isMain(import.meta.url)) {
  const orders = Number(process.env.BENCH_SCALE_ORDERS ?? 20_000);
  const warmup = Number(process.env.BENCH_SCALE_WARMUP ?? 4_000);
  const url = process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
  console.log(machineLine());
  console.log(`  set-up: PostgreSQL ${url.replace(/\/\/[^@]*@/, '//')} (same machine), mosquitto, simulator in a child process, each gateway instance its own process (dist/src/main.js), ${LINKS} links × ${LINK_CONCURRENCY}, driver window ${MAX_IN_FLIGHT}, pool 10 per instance; each run times ${fmt(orders)} orders after a warm-up of ${fmt(warmup)} through the same processes`);
  const broker = await startMosquitto();
  const profilesDir = writeBenchProfiles();
  const one = await runScale({ url, brokerUrl: broker.url, profilesDir, orders, warmup, instances: 1, prefix: 'P1-' });
  printScale(one);
  const two = await runScale({ url, brokerUrl: broker.url, profilesDir, orders, warmup, instances: 2, prefix: 'P2-' });
  printScale(two);
  const lite = await runScale({ url, brokerUrl: broker.url, profilesDir, orders, warmup, instances: 1, prefix: 'S1-', store: 'sqlite' });
  printScale(lite);
  const twoOverOne = two.ordersPerS / one.ordersPerS;
  const pgOverLite = one.ordersPerS / lite.ordersPerS;
  console.log(`two ÷ one (PostgreSQL): ${twoOverOne.toFixed(2)} (wall ${(one.wallMs / 1000).toFixed(2)} s → ${(two.wallMs / 1000).toFixed(2)} s)`);
  console.log(`PostgreSQL ÷ SQLite, one instance each: ${pgOverLite.toFixed(2)} (${fmt(one.ordersPerS)} ÷ ${fmt(lite.ordersPerS)} verified orders/s); load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log('acceptance (issue 19):');
  console.log(`  ${twoOverOne > 1 ? 'PASS' : 'FAIL'}  two PostgreSQL instances finish ${fmt(orders)} orders faster than one: ${twoOverOne.toFixed(2)} × (bar > 1)`);
  console.log(`  ${pgOverLite >= 0.7 ? 'PASS' : 'FAIL'}  PostgreSQL ÷ SQLite: ${pgOverLite.toFixed(2)} (bar ≥ 0.7)`);
  await broker.stop();
  process.exit(0);
}
