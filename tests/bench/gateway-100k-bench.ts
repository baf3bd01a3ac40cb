/**
 * Gateway vs raw limit (issue 9, items 3.1 and 3.2). Against one mosquitto, first the raw MQTT request/reply
 * loop (raw-mqtt-bench.ts), then 100,000 reconnects through the whole gateway: bulk API (POST /v1/orders/bulk,
 * chunks of 10,000, the route's maximum, sent one after another as a billing system's payment run would) →
 * SQLite store on disk (temp dir) → control loop → MQTT driver → simulated meters in a child process
 * (simulators/cli.js) → read-back verified. Prints both, and gateway orders/s ÷ raw orders/s (target ≥ 0.5). The raw
 * loop runs twice: with a status report per order, as each simulated meter sends when its relay moves (the same
 * message count as the gateway's run: the ratio's denominator), and with request/reply alone, for reference.
 *
 * The gateway runs in this process (as in reconnect-bench.ts); the bench's own work is ten HTTP requests and an
 * order-change hook. Bench firmware profile: acme-em340-fw2.4 with relay operate time BENCH_OPERATE_MS (20 ms,
 * shipped 150 ms). 10 links × 200 commands in the control loop, so the driver's window (500) is the only window.
 *
 * What each order costs (issue 19), from the first bulk request to the last verified order (run-cost.ts): CPU time of
 * the main thread and of the whole process, event-loop utilisation, GC pauses and the store's statements (and round
 * trips on PostgreSQL) per verified order. BENCH_CPU_PROFILE=1 also profiles the main thread over the run and prints
 * its time per order by part (cpu-parts.ts); the profiler costs time of its own, so the other figures of that run
 * are not today's.
 *
 * `node dist/tests/bench/gateway-100k-bench.js`; BENCH_ORDERS (default 100000) scales both runs,
 * BENCH_SKIP_RAW=1 runs the gateway part only.
 */
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ConfigSchema } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { isTerminal, type SwitchOrder } from '../../src/domain/switch-order.js';
import { startGateway } from '../../src/gateway.js';
import { BULK_LIMIT } from '../../src/api/schemas.js';
import { StatementCounter } from '../../src/store/statement-counter.js';
import { startMosquitto } from '../harness/mosquitto.js';
import {
  BENCH_OPERATE_MS,
  BENCH_PROFILE,
  benchConfigOverrides,
  fmt,
  isMain,
  LINK_CONCURRENCY,
  LINKS,
  machineLine,
  MAX_IN_FLIGHT,
  merge,
  meterIds,
  pct,
  postJson,
  startSimulator,
  stopChild,
  writeBenchProfiles,
} from './bench-common.js';
import { printRaw, runRaw } from './raw-mqtt-bench.js';
import { printRunCost, RunCostMeter, type RunCost } from './run-cost.js';

export interface GatewayResult {
  orders: number;
  acceptMs: number;
  wallMs: number;
  ordersPerS: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  states: Record<string, number>;
  attempts: Record<string, number>;
  cost: RunCost;
  /** The load average when the last order was verified (other jobs on the machine show here). */
  loadAverageAtEnd: string;
}

export async function runGateway(brokerUrl: string, orders: number): Promise<GatewayResult> {
  const PREFIX = 'G-';
  const profilesDir = writeBenchProfiles();
  const sim = await startSimulator({ brokerUrl, meters: orders, prefix: PREFIX, profilesDir });

  const dir = mkdtempSync(join(tmpdir(), 'ml-bench-100k-'));
  const dbPath = join(dir, 'gw.db');
  const config = ConfigSchema.parse(
    merge(loadConfig({}) as unknown as Record<string, unknown>, benchConfigOverrides({ instanceId: 'bench100k', brokerUrl, dbPath, profilesDir, meters: orders, prefix: PREFIX })),
  );

  const finishedAt = new Map<string, number>();
  const finalState = new Map<string, string>();
  let onAllDone: (() => void) | undefined;
  const statements = new StatementCounter();
  const meter = new RunCostMeter({ statements, ...(process.env.BENCH_CPU_PROFILE === '1' ? { profileTo: join(dir, 'gateway-100k.cpuprofile') } : {}) });
  const gw = await startGateway(config, {
    countStatements: statements,
    onOrderChange: (o: SwitchOrder) =>
      meter.bench(() => {
        if (!isTerminal(o.state) || finishedAt.has(o.id)) return;
        finishedAt.set(o.id, performance.now());
        finalState.set(o.id, o.state);
        if (finishedAt.size >= orders) onAllDone?.();
      }),
  });
  const key = gw.demoKeys!.operator;
  const ids = meterIds(PREFIX, orders);
  const allDone = new Promise<void>((r) => (onAllDone = r));

  // The payment run: bulk requests of BULK_LIMIT reconnects, one after another.
  const sentAt = new Map<string, number>(); // order id → when its bulk request was sent
  await meter.start();
  const t0 = performance.now();
  for (let i = 0; i < ids.length; i += BULK_LIMIT) {
    const start = performance.now();
    const chunk = meter.bench(() => ids.slice(i, i + BULK_LIMIT).map((meterId) => ({ meterId, action: 'reconnect', reason: 'payment' })));
    const out = (await postJson(`${gw.apiUrl}/v1/orders/bulk`, key, { orders: chunk }, `bench-100k-${i}`)) as { results: { order: { id: string } }[] };
    meter.bench(() => {
      for (const r of out.results) sentAt.set(r.order.id, start);
    });
  }
  const acceptMs = performance.now() - t0;
  await allDone;
  const wallMs = performance.now() - t0;
  const loadAverageAtEnd = loadavg().map((l) => l.toFixed(2)).join(' ');
  const cost = await meter.stop(orders);

  const lat = [...sentAt].map(([id, s]) => finishedAt.get(id)! - s).sort((a, b) => a - b);
  const states: Record<string, number> = {};
  for (const id of sentAt.keys()) states[finalState.get(id)!] = (states[finalState.get(id)!] ?? 0) + 1;
  await gw.stop();
  await stopChild(sim);
  // Attempts by outcome, from the journal: retries (timeouts under load) show here.
  let attempts: Record<string, number> = {};
  if (config.store.kind === 'sqlite') {
    const db = new Database(dbPath, { readonly: true });
    attempts = Object.fromEntries((db.prepare('SELECT outcome, COUNT(*) AS n FROM attempts GROUP BY outcome').all() as { outcome: string; n: number }[]).map((r) => [r.outcome, r.n]));
    db.close();
  }
  return { orders, acceptMs, wallMs, ordersPerS: (orders / wallMs) * 1000, p50Ms: pct(lat, 50), p99Ms: pct(lat, 99), maxMs: lat.at(-1) ?? NaN, states, attempts, cost, loadAverageAtEnd };
}

export function printGateway(r: GatewayResult): void {
  console.log(
    `gateway: ${fmt(r.orders)} reconnects (${Math.ceil(r.orders / BULK_LIMIT)} bulk requests of ≤${fmt(BULK_LIMIT)}, all accepted after ${(r.acceptMs / 1000).toFixed(2)} s) ` +
      `verified in ${(r.wallMs / 1000).toFixed(2)} s = ${fmt(r.ordersPerS)} verified orders/s; request→verified p50 ${fmt(r.p50Ms)} ms, p99 ${fmt(r.p99Ms)} ms, max ${fmt(r.maxMs)} ms; ` +
      `final states ${JSON.stringify(r.states)}, attempts by outcome ${JSON.stringify(r.attempts)}`,
  );
  console.log(
    `  set-up: ${process.env.BENCH_DATABASE_URL ? 'PostgreSQL store (BENCH_DATABASE_URL, same machine)' : 'SQLite journal on disk (temp dir)'}, simulator in a child process, ${LINKS} links × ${LINK_CONCURRENCY} in the control loop, driver window ${MAX_IN_FLIGHT}; ` +
      `BENCH-ONLY firmware profile: ${BENCH_PROFILE} with relay operate time ${BENCH_OPERATE_MS} ms (shipped: 150 ms)`,
  );
  printRunCost(r.cost, r.loadAverageAtEnd);
}

if (isMain(import.meta.url)) {
  const orders = Number(process.env.BENCH_ORDERS ?? 100_000);
  console.log(machineLine());
  const broker = await startMosquitto();
  // The raw loop with the same messages per order as the gateway's run (command, reply, read, reply, status
  // report), which the ratio uses, and request/reply alone for reference.
  const raw = process.env.BENCH_SKIP_RAW === '1' ? undefined : await runRaw(broker.url, orders, orders, true);
  if (raw) printRaw(raw);
  const rawPlain = raw ? await runRaw(broker.url, orders, orders, false) : undefined;
  if (rawPlain) printRaw(rawPlain);
  const gw = await runGateway(broker.url, orders);
  printGateway(gw);
  if (raw && rawPlain) {
    console.log(
      `ratio gateway ÷ raw (same message count, ${raw.messagesPerOrder} per order) = ${fmt(gw.ordersPerS)} ÷ ${fmt(raw.ordersPerS)} orders/s = ${(gw.ordersPerS / raw.ordersPerS).toFixed(3)} (target ≥ 0.5); ` +
        `against request/reply alone (${rawPlain.messagesPerOrder} per order): ${(gw.ordersPerS / rawPlain.ordersPerS).toFixed(3)}`,
    );
  }
  await broker.stop();
  process.exit(0);
}
