/**
 * Gateway vs raw limit (issue 9, items 3.1 and 3.2; issue 19's acceptance). Against one mosquitto, first the raw MQTT
 * request/reply loop (raw-mqtt-bench.ts), then reconnects through the whole gateway: bulk API (POST /v1/orders/bulk,
 * chunks of 10,000, the route's maximum, sent one after another as a billing system's payment run would) → SQLite
 * store on disk (temp dir) → control loop → MQTT driver → simulated meters in a child process (simulators/cli.js) →
 * read-back verified. Prints both, and gateway orders/s ÷ raw orders/s (target ≥ 0.5).
 *
 * The ratio is taken at the same message count: the gateway's run carries 4 MQTT messages per order (command, reply,
 * read, reply; no status report follows a remote switch, src/api/mqtt-contract-semantics.ts), measured at the broker
 * during the run ($SYS publish counter, and a subscriber counting status reports), so the denominator is the raw loop
 * with request/reply alone. The raw loop with a status report per order too (5 messages) is printed as the secondary
 * figure.
 *
 * After the backlog run, an open-loop run at a fixed rate (runOpenLoop): half the raw 4-message limit of this run
 * (BENCH_OPEN_RATE overrides) for BENCH_OPEN_SECONDS (20; 0 skips it), a bulk request every BENCH_OPEN_TICK_MS (10)
 * with the orders due by then, on meters of its own (each ordered once), with each order's request→verified latency.
 *
 * The gateway runs in this process (as in reconnect-bench.ts); the bench's own work is the backlog run's HTTP requests
 * and an order-change hook; the open loop's API client is a child process (open-loop-submitter.ts). The peers' CPU per
 * verified order (simulator, broker, the open loop's submitter, the raw loop's echo responder) is printed beside each
 * run (peer-cpu.ts): on 2 cores they take it from the gateway. Bench firmware profile: acme-em340-fw2.4 with relay operate time BENCH_OPERATE_MS (20 ms,
 * shipped 150 ms). 10 links × 200 commands in the control loop, so the driver's window (500) is the only window.
 *
 * What each order costs (issue 19), from the first bulk request to the last verified order (run-cost.ts): CPU time of
 * the main thread and of the whole process, event-loop utilisation, GC pauses. The store's statements (and round trips
 * on PostgreSQL) per order come from a separate pass of BENCH_STATEMENTS_ORDERS (10,000; 0 skips it) with the
 * statement counter on, because the counter's timing of every statement costs main-thread time of its own;
 * BENCH_COUNT_STATEMENTS=1 counts in the headline run instead. BENCH_CPU_PROFILE=1 also profiles the main thread over
 * the run and prints its time per order by part (cpu-parts.ts); the profiler costs time of its own, so the other
 * figures of that run are not today's. BENCH_HEAP_PROFILE=1 samples the main thread's allocations over the run and
 * prints bytes per order with the sites that allocate most (with node --trace-gc-nvp, the printed run window picks the
 * scavenges of the run: their allocated, new_space_survived and promoted bytes); BENCH_HEAP_PROFILE=survivors counts
 * only what the GC had not collected by the end of the run (what survived scavenges).
 *
 * Pinning (bench-common.ts): BENCH_CPUS_GATEWAY=0,1 pins this process (gateway, raw requester), BENCH_CPUS_PEERS=2,3
 * the broker, the simulator and the echo responder, with taskset.
 *
 * Ends with the acceptance block: ratio, main-thread µs per verified order, open-loop p99, each PASS/FAIL.
 *
 * `node dist/tests/bench/gateway-100k-bench.js`; BENCH_ORDERS (default 100000) scales both runs,
 * BENCH_SKIP_RAW=1 runs the gateway part only.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { connect, type MqttClient } from 'mqtt';
import { ConfigSchema } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { isTerminal, type SwitchOrder } from '../../src/domain/switch-order.js';
import { startGateway } from '../../src/gateway.js';
import { BULK_LIMIT } from '../../src/api/schemas.js';
import { projectRoot } from '../../src/config/project-root.js';
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
  pinningLine,
  pinPeer,
  pinSelf,
  postJson,
  sleep,
  startSimulator,
  stopChild,
  track,
  writeBenchProfiles,
} from './bench-common.js';
import { acceptance, dueBy, latencySummary, type LatencySummary } from './bench-math.js';
import { PeerCpu, peersLine } from './peer-cpu.js';
import { printRaw, runRaw } from './raw-mqtt-bench.js';
import { printRunCost, RunCostMeter, type RunCost } from './run-cost.js';

export interface OpenLoopResult {
  ratePerS: number;
  /** Where the rate came from (half the raw limit, or BENCH_OPEN_RATE). */
  rateSource: string;
  seconds: number;
  tickMs: number;
  submitted: number;
  /** Bulk requests the gateway refused (their orders are not in the latencies). */
  refusedRequests: number;
  submitMs: number;
  submitPerS: number;
  /** Orders verified (terminal) while the submission ran, per second of it. */
  verifiedPerS: number;
  /** Orders submitted but not terminal when the submission stopped. */
  backlogAtEnd: number;
  keptUp: boolean;
  /** From the end of the submission until the last order was terminal (or the drain gave up). */
  drainMs: number;
  latency: LatencySummary;
  states: Record<string, number>;
  cost: RunCost;
  /** CPU µs per order of the simulator, the broker and the submitter over the run (peer-cpu.ts). */
  peers: Record<string, number>;
}

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
  /** CPU µs per verified order of the simulator child and the broker over the run (peer-cpu.ts). */
  peers: Record<string, number>;
  /** True when the store's statements were counted (and timed) in this run: its CPU figures include the counter. */
  statementsCounted: boolean;
  /** The load average when the last order was verified (other jobs on the machine show here). */
  loadAverageAtEnd: string;
  /** MQTT messages the broker received during the backlog run, per order, and status reports among them. */
  messages?: { publishesPerOrder: number; statusReports: number };
  openLoop?: OpenLoopResult;
}

export interface GatewayRunOptions {
  /** Count (and time) every store statement (StatementCounter): its wrapping costs main-thread time of its own. */
  countStatements: boolean;
  /** Count the broker's messages during the backlog run (needs a broker started with BROKER_SYS_CONFIG). */
  countMessages?: boolean;
  /** After the backlog run, an open-loop run on meters of its own at a fixed rate. */
  openLoop?: { ratePerS: number; rateSource: string; seconds: number; tickMs: number };
  /** The broker's pid, to measure its CPU per order (mosquitto.ts pid()). */
  brokerPid?: number;
}

/** mosquitto's $SYS tree every second (default 10 s), so that the message counter can be read around a run. */
export const BROKER_SYS_CONFIG = ['sys_interval 1'];

/**
 * The broker's count of PUBLISH packets received from clients ($SYS/broker/publish/messages/received, published at
 * most every sys_interval and only when it changed), and a subscriber on meters/+/status that counts status reports
 * (none are expected: it costs the broker nothing while there are none).
 */
class BrokerMessages {
  private latest = NaN;
  private changedAt = performance.now();
  statusReports = 0;
  private constructor(private readonly client: MqttClient) {}

  static async open(brokerUrl: string): Promise<BrokerMessages> {
    const client = connect(brokerUrl, { clientId: `bench-count-${process.pid}`, protocolVersion: 5, clean: true });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    const b = new BrokerMessages(client);
    client.on('message', (topic, payload) => {
      if (topic.startsWith('$SYS/')) {
        b.latest = Number(payload.toString('utf8'));
        b.changedAt = performance.now();
      }
      else b.statusReports++;
    });
    await client.subscribeAsync({ '$SYS/broker/publish/messages/received': { qos: 0 }, 'meters/+/status': { qos: 1 } });
    return b;
  }

  /**
   * The count once it has settled: the broker publishes it only when it changed, at most every second, and a busy
   * machine delays that; so wait until no new value has come for 2.5 s (at most 20 s).
   */
  async read(): Promise<number> {
    const start = performance.now();
    await sleep(1300);
    while (performance.now() - this.changedAt < 2500 && performance.now() - start < 20_000) await sleep(100);
    return this.latest;
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}

export async function runGateway(brokerUrl: string, orders: number, options: GatewayRunOptions): Promise<GatewayResult> {
  const PREFIX = 'G-';
  const profilesDir = writeBenchProfiles();
  // The open-loop run has meters of its own (after the backlog's), each ordered once: no order supersedes another.
  const openOrders = options.openLoop ? dueBy(options.openLoop.ratePerS, options.openLoop.seconds * 1000) : 0;
  const meters = orders + openOrders;
  const sim = await startSimulator({ brokerUrl, meters, prefix: PREFIX, profilesDir });

  const dir = mkdtempSync(join(tmpdir(), 'ml-bench-100k-'));
  const dbPath = join(dir, 'gw.db');
  const config = ConfigSchema.parse(
    merge(loadConfig({}) as unknown as Record<string, unknown>, benchConfigOverrides({ instanceId: 'bench100k', brokerUrl, dbPath, profilesDir, meters, prefix: PREFIX })),
  );

  const finishedAt = new Map<string, number>();
  const finalState = new Map<string, string>();
  let onAllDone: (() => void) | undefined;
  const statements = options.countStatements ? new StatementCounter() : undefined;
  // The journal's worker thread by its OS thread id (every thread Node starts is named "node").
  let journalTid: number | undefined;
  const threadNames = (): ReadonlyMap<number, string> => new Map(journalTid !== undefined ? [[journalTid, 'journal worker']] : []);
  const meter = new RunCostMeter({ threadNames, ...(statements ? { statements } : {}), ...(process.env.BENCH_CPU_PROFILE === '1' ? { profileTo: join(dir, 'gateway-100k.cpuprofile') } : {}), ...(process.env.BENCH_HEAP_PROFILE ? { heapProfileTo: join(dir, 'gateway-100k.heapprofile'), heapSurvivors: process.env.BENCH_HEAP_PROFILE === 'survivors' } : {}) });
  let active = meter; // the open-loop run has a meter of its own
  const gw = await startGateway(config, {
    ...(statements ? { countStatements: statements } : {}),
    onOrderChange: (o: SwitchOrder) =>
      active.bench(() => {
        if (!isTerminal(o.state) || finishedAt.has(o.id)) return;
        finishedAt.set(o.id, performance.now());
        finalState.set(o.id, o.state);
        if (finishedAt.size >= orders) onAllDone?.();
      }),
  });
  journalTid = (gw.store as { osThreadId?: number }).osThreadId;
  const key = gw.demoKeys!.operator;
  const ids = meterIds(PREFIX, orders);
  const allDone = new Promise<void>((r) => (onAllDone = r));
  const counter = options.countMessages ? await BrokerMessages.open(brokerUrl) : undefined;
  const publishesBefore = counter ? await counter.read() : NaN;

  // The payment run: bulk requests of BULK_LIMIT reconnects, one after another.
  const sentAt = new Map<string, number>(); // order id → when its bulk request was sent
  const peers = new PeerCpu({ simulator: sim.pid, mosquitto: options.brokerPid });
  await meter.start();
  peers.start();
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
  const peerUs = peers.stop(orders);
  const cost = await meter.stop(orders);
  let messages: GatewayResult['messages'];
  if (counter) {
    const after = await counter.read();
    messages = { publishesPerOrder: (after - publishesBefore) / orders, statusReports: counter.statusReports };
    await counter.close();
  }

  const lat = [...sentAt].map(([id, s]) => finishedAt.get(id)! - s).sort((a, b) => a - b);
  const states: Record<string, number> = {};
  for (const id of sentAt.keys()) states[finalState.get(id)!] = (states[finalState.get(id)!] ?? 0) + 1;

  // Attempts by outcome, from the journal (a second, read-only connection), before the open loop adds its own:
  // retries (timeouts under load) show here.
  let attempts: Record<string, number> = {};
  if (config.store.kind === 'sqlite') {
    const db = new Database(dbPath, { readonly: true });
    attempts = Object.fromEntries((db.prepare('SELECT outcome, COUNT(*) AS n FROM attempts GROUP BY outcome').all() as { outcome: string; n: number }[]).map((r) => [r.outcome, r.n]));
    db.close();
  }

  let openLoop: OpenLoopResult | undefined;
  if (options.openLoop) {
    active = new RunCostMeter({ threadNames });
    openLoop = await runOpenLoop({ ...options.openLoop, apiUrl: gw.apiUrl, key, prefix: PREFIX, from: orders + 1, count: openOrders, finishedAt, finalState, meter: active, peerPids: { simulator: sim.pid, mosquitto: options.brokerPid } });
  }

  await gw.stop();
  await stopChild(sim);
  return {
    orders,
    acceptMs,
    wallMs,
    ordersPerS: (orders / wallMs) * 1000,
    p50Ms: pct(lat, 50),
    p99Ms: pct(lat, 99),
    maxMs: lat.at(-1) ?? NaN,
    states,
    attempts,
    cost,
    peers: peerUs,
    statementsCounted: options.countStatements,
    loadAverageAtEnd,
    ...(messages ? { messages } : {}),
    ...(openLoop ? { openLoop } : {}),
  };
}

/**
 * The open-loop run (issue 19's acceptance: p99 request→verified for a healthy meter at half the raw rate, at a fixed
 * rate rather than one backlog). The API client is a child process (open-loop-submitter.ts), so its HTTP work is not
 * charged to the gateway's process: every `tickMs` it sends a bulk request with the orders the schedule owes by then
 * (dueBy: rate × elapsed, so a late tick catches up), not awaiting earlier requests, as independent clients would not
 * wait for each other, and reports each order's send time. Each order's latency runs from the moment its request was
 * sent (the child's clock) to this process's hook seeing it terminal (this process's clock), both as ms since the epoch
 * (performance.timeOrigin + now) on the same machine. Each meter is ordered once.
 */
async function runOpenLoop(o: {
  ratePerS: number;
  rateSource: string;
  seconds: number;
  tickMs: number;
  apiUrl: string;
  key: string;
  prefix: string;
  /** Meters prefix+from … prefix+(from+count−1) are the open loop's own. */
  from: number;
  count: number;
  finishedAt: Map<string, number>;
  finalState: Map<string, string>;
  meter: RunCostMeter;
  peerPids: Record<string, number | undefined>;
}): Promise<OpenLoopResult> {
  const job = { url: o.apiUrl, key: o.key, ratePerS: o.ratePerS, seconds: o.seconds, tickMs: o.tickMs, bulkLimit: BULK_LIMIT, prefix: o.prefix, from: o.from, count: o.count };
  const submitter = track(spawn(process.execPath, [join(projectRoot(), 'dist', 'tests', 'bench', 'open-loop-submitter.js'), JSON.stringify(job)], { stdio: ['pipe', 'pipe', 'inherit'] }));
  pinPeer(submitter.pid);
  const lines = createInterface({ input: submitter.stdout! });
  const exited = new Promise<never>((_, reject) => submitter.once('exit', (code) => reject(new Error(`open-loop submitter exited with ${code}`))));
  const nextLine = (): Promise<string> => Promise.race([new Promise<string>((resolve) => lines.once('line', resolve)), exited]);
  exited.catch(() => undefined);
  const ready = await nextLine();
  if (ready !== 'submitter ready') throw new Error(`open-loop submitter: unexpected "${ready.slice(0, 200)}"`);

  const peers = new PeerCpu(o.peerPids);
  await o.meter.start();
  peers.start();
  submitter.stdin!.write('go\n');
  const out = JSON.parse(await nextLine()) as { sent: [string, number][]; refusedRequests: number; refusals: string[]; startEpochMs: number; submitEndEpochMs: number; cpuUs: number };
  for (const r of out.refusals) console.error(`open loop: a bulk request was refused: ${r}`);
  // The child's epoch times on this process's performance.now() clock, as finishedAt's.
  const local = (epochMs: number): number => epochMs - performance.timeOrigin;
  const sent = out.sent.map(([id, at]) => ({ id, at: local(at) }));
  const submitEnd = local(out.submitEndEpochMs);
  const submitMs = out.submitEndEpochMs - out.startEpochMs;
  const refusedRequests = out.refusedRequests;

  // Drain: wait until every accepted order is terminal, or give up after BENCH_OPEN_DRAIN_S (those count as unfinished).
  const drainDeadline = performance.now() + Number(process.env.BENCH_OPEN_DRAIN_S ?? 60) * 1000;
  // Orders finish roughly in the order they were sent: the first unfinished one moves forward, so a poll is cheap.
  let firstUnfinished = 0;
  const unfinished = (): boolean => {
    while (firstUnfinished < sent.length && o.finishedAt.has(sent[firstUnfinished]!.id)) firstUnfinished++;
    return firstUnfinished < sent.length;
  };
  while (unfinished() && performance.now() < drainDeadline) await sleep(20);
  const lastDone = sent.reduce((m, s) => Math.max(m, o.finishedAt.get(s.id) ?? submitEnd), submitEnd);
  // The submitter measures itself (it has exited by now): its CPU from the first request to the last answer.
  const peerUs = { ...peers.stop(Math.max(1, sent.length)), 'open-loop submitter': out.cpuUs / Math.max(1, sent.length) };
  const cost = await o.meter.stop(Math.max(1, sent.length));
  await stopChild(submitter);

  const doneBySubmitEnd = sent.filter((s) => (o.finishedAt.get(s.id) ?? Infinity) <= submitEnd).length;
  const backlogAtEnd = sent.length - doneBySubmitEnd;
  const submitPerS = (sent.length / submitMs) * 1000;
  const verifiedPerS = (doneBySubmitEnd / submitMs) * 1000;
  // Kept up: nothing more waiting at the end than a quarter second of arrivals (the orders still within their normal life).
  const keptUp = refusedRequests === 0 && backlogAtEnd <= o.ratePerS * 0.25;
  const states: Record<string, number> = {};
  for (const s of sent) {
    const st = o.finalState.get(s.id) ?? 'unfinished';
    states[st] = (states[st] ?? 0) + 1;
  }
  return {
    ratePerS: o.ratePerS,
    rateSource: o.rateSource,
    seconds: o.seconds,
    tickMs: o.tickMs,
    submitted: sent.length,
    refusedRequests,
    submitMs,
    submitPerS,
    verifiedPerS,
    backlogAtEnd,
    keptUp,
    drainMs: lastDone - submitEnd,
    latency: latencySummary(sent.map((s) => (o.finishedAt.has(s.id) ? o.finishedAt.get(s.id)! - s.at : undefined))),
    states,
    cost,
    peers: peerUs,
  };
}

const storeLine = (): string => (process.env.BENCH_DATABASE_URL ? 'PostgreSQL store (BENCH_DATABASE_URL, same machine)' : 'SQLite journal on disk (temp dir)');

export function printGateway(r: GatewayResult): void {
  console.log(
    `gateway: ${fmt(r.orders)} reconnects (${Math.ceil(r.orders / BULK_LIMIT)} bulk requests of ≤${fmt(BULK_LIMIT)}, all accepted after ${(r.acceptMs / 1000).toFixed(2)} s) ` +
      `verified in ${(r.wallMs / 1000).toFixed(2)} s = ${fmt(r.ordersPerS)} verified orders/s; request→verified p50 ${fmt(r.p50Ms)} ms, p99 ${fmt(r.p99Ms)} ms, max ${fmt(r.maxMs)} ms; ` +
      `final states ${JSON.stringify(r.states)}, attempts by outcome ${JSON.stringify(r.attempts)}`,
  );
  console.log(
    `  set-up: ${storeLine()}, simulator in a child process, ${LINKS} links × ${LINK_CONCURRENCY} in the control loop, driver window ${MAX_IN_FLIGHT}; ` +
      `BENCH-ONLY firmware profile: ${BENCH_PROFILE} with relay operate time ${BENCH_OPERATE_MS} ms (shipped: 150 ms); ${pinningLine()}; ` +
      `store statements ${r.statementsCounted ? 'counted and timed in this run (the CPU figures include the counter)' : 'not counted in this run (the CPU figures are without the counter)'}`,
  );
  if (r.messages) {
    console.log(
      `  MQTT messages during the run, measured at the broker ($SYS/broker/publish/messages/received, retries included): ${fmt(r.messages.publishesPerOrder, 2)} per order; ` +
        `status reports seen on meters/+/status: ${fmt(r.messages.statusReports)} (none expected: no status report follows a remote switch)`,
    );
  }
  printRunCost(r.cost, r.loadAverageAtEnd);
  console.log(`  peers' cpu per verified order over the same stretch: ${peersLine(r.peers)}`);
  if (r.openLoop) printOpenLoop(r.openLoop);
}

export function printOpenLoop(o: OpenLoopResult): void {
  const ms = (x: number): string => (Number.isFinite(x) ? fmt(x, 1) : 'unfinished');
  console.log(
    `open loop: ${fmt(o.ratePerS)} orders/s (${o.rateSource}) for ${o.seconds} s, a bulk request every ${o.tickMs} ms with the orders due by then (≈${fmt(o.ratePerS * o.tickMs / 1000, 1)} each), ` +
      `each meter ordered once, the same healthy BENCH-ONLY profile (relay operate time ${BENCH_OPERATE_MS} ms): ` +
      `submitted ${fmt(o.submitted)} orders at ${fmt(o.submitPerS)}/s${o.refusedRequests > 0 ? ` (${o.refusedRequests} requests refused)` : ''}, verified ${fmt(o.verifiedPerS)}/s while submitting; ` +
      `request→verified p50 ${ms(o.latency.p50)} ms, p99 ${ms(o.latency.p99)} ms, max ${ms(o.latency.max)} ms${o.latency.unfinished > 0 ? ` (${fmt(o.latency.unfinished)} unfinished)` : ''}; ` +
      `backlog at the end of submission ${fmt(o.backlogAtEnd)} orders, drained ${fmt(o.drainMs)} ms later: ${o.keptUp ? 'kept up' : 'did NOT keep up'} (kept up: backlog ≤ a quarter second of arrivals); ` +
      `final states ${JSON.stringify(o.states)}`,
  );
  console.log(
    `  open loop's cost per order (submission start → last verified): main thread ${fmt(o.cost.mainUsPerOrder, 1)} µs, whole process ${fmt(o.cost.processUsPerOrder, 1)} µs, ` +
      `event-loop utilisation ${o.cost.elu.toFixed(3)}, gc ${fmt(o.cost.gc.usPerOrder, 1)} µs; the API client is a child process: ` +
      `peers ${peersLine(o.peers)}`,
  );
}

/** The store's statements per order from a separate, shorter pass with the counter on (its CPU figures include the counter). */
export function printStatementsPass(r: GatewayResult): void {
  console.log(
    `statements pass: ${fmt(r.orders)} reconnects with every store statement counted and timed, ${fmt(r.ordersPerS)} verified orders/s; ` +
      `main thread ${fmt(r.cost.mainUsPerOrder, 1)} µs per order with the counter on (the headline figure above is without it)`,
  );
  printRunCost(r.cost, r.loadAverageAtEnd);
}

if (isMain(import.meta.url)) {
  pinSelf();
  const orders = Number(process.env.BENCH_ORDERS ?? 100_000);
  console.log(machineLine());
  console.log(`set-up: ${pinningLine()}`);
  const broker = await startMosquitto({ extraConfig: BROKER_SYS_CONFIG });
  pinPeer(broker.pid());
  // The raw loop with the gateway's messages per order (command, reply, read, reply: no status report follows a
  // remote switch), which the ratio uses, then with a status report per order too (the ratio's old denominator).
  // The 5-message loop runs first, as before: the first run also warms the broker up, which would flatter the ratio if
  // it were the denominator's.
  const rawStatus = process.env.BENCH_SKIP_RAW === '1' ? undefined : await runRaw(broker.url, orders, orders, true, broker.pid());
  if (rawStatus) printRaw(rawStatus);
  const raw = rawStatus ? await runRaw(broker.url, orders, orders, false, broker.pid()) : undefined;
  if (raw) printRaw(raw);

  const openSeconds = Number(process.env.BENCH_OPEN_SECONDS ?? 20);
  const openRate = process.env.BENCH_OPEN_RATE ? Number(process.env.BENCH_OPEN_RATE) : raw ? raw.ordersPerS / 2 : undefined;
  const openLoop =
    openSeconds > 0 && openRate !== undefined && openRate > 0
      ? {
          ratePerS: Math.round(openRate),
          rateSource: process.env.BENCH_OPEN_RATE ? 'BENCH_OPEN_RATE' : `half the raw ${raw!.messagesPerOrder}-message limit of this run`,
          seconds: openSeconds,
          tickMs: Number(process.env.BENCH_OPEN_TICK_MS ?? 10),
        }
      : undefined;
  // The headline run: without the statement counter unless BENCH_COUNT_STATEMENTS=1 (its wrapping of every
  // statement costs main-thread time of its own); the statements come from a shorter pass after it.
  const countInMain = process.env.BENCH_COUNT_STATEMENTS === '1';
  const gw = await runGateway(broker.url, orders, { countStatements: countInMain, countMessages: true, brokerPid: broker.pid(), ...(openLoop ? { openLoop } : {}) });
  printGateway(gw);
  if (!openLoop) console.log('open loop: not run (BENCH_OPEN_SECONDS=0, or no raw limit measured and no BENCH_OPEN_RATE)');
  const statementOrders = Number(process.env.BENCH_STATEMENTS_ORDERS ?? 10_000);
  if (!countInMain && statementOrders > 0) printStatementsPass(await runGateway(broker.url, statementOrders, { countStatements: true, brokerPid: broker.pid() }));

  const ratio = raw ? gw.ordersPerS / raw.ordersPerS : undefined;
  if (raw && rawStatus) {
    console.log(
      `ratio gateway ÷ raw at the same message count (${raw.messagesPerOrder} per order, as the gateway's run: measured ${gw.messages ? fmt(gw.messages.publishesPerOrder, 2) : '?'}) = ` +
        `${fmt(gw.ordersPerS)} ÷ ${fmt(raw.ordersPerS)} orders/s = ${ratio!.toFixed(3)} (target ≥ 0.5); ` +
        `against the raw loop with a status report per order too (${rawStatus.messagesPerOrder} per order, more than the gateway's run carries): ${(gw.ordersPerS / rawStatus.ordersPerS).toFixed(3)}`,
    );
  }
  console.log(`acceptance (issue 19; memory per meter and recovery time: memory-bench, recovery-bench)${countInMain ? ' — CPU figure taken WITH the statement counter (BENCH_COUNT_STATEMENTS=1)' : ''}:`);
  for (const v of acceptance({ ...(ratio !== undefined ? { ratio } : {}), mainUsPerOrder: gw.cost.mainUsPerOrder, ...(gw.openLoop ? { openLoopP99Ms: gw.openLoop.latency.p99 } : {}) })) {
    const value = v.value === undefined ? 'not measured' : Number.isFinite(v.value) ? fmt(v.value, v.value < 10 ? 3 : 1) : 'unfinished orders';
    console.log(`  ${(v.pass === undefined ? 'n/a ' : v.pass ? 'PASS' : 'FAIL').padEnd(4)}  ${v.name}: ${value} (bar ${v.bar})`);
  }
  if (gw.openLoop && process.env.BENCH_OPEN_RATE) console.log(`  (the open loop ran at BENCH_OPEN_RATE=${process.env.BENCH_OPEN_RATE}/s, not at half the raw limit: its p99 is not the acceptance figure)`);
  await broker.stop();
  process.exit(0);
}
