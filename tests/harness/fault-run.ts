import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { newApiKey, sha256Hex } from '../../src/api/auth.js';
import { asMqttProfile } from '../../src/domain/firmware-profile.js';
import { planFleet } from '../../simulators/fleet-plan.js';
import { MqttFleet } from '../../simulators/mqtt-fleet.js';
import { freePort } from './mosquitto.js';
import { writeFastProfiles } from './test-profiles.js';

/**
 * Shared plumbing of the fault tests (tests/e2e/fault-*.test.ts): the gateway runs as the built program
 * (`node dist/src/main.js`) in a child process, the meters in the test process (so they outlive any fault and
 * keep a log of every command they received), a bulk of reconnects is submitted, a fault is injected in the
 * middle of the run, and afterwards every order must have ended exactly once with no command after its end.
 */
export const MAIN = join(process.cwd(), 'dist', 'src', 'main.js');
export const FINAL_STATES = ['done', 'armed', 'failed', 'done_by_field', 'cancelled', 'superseded', 'refused'] as const;

export interface FaultRunOptions {
  name: string;
  count: number;
  links: number;
  /** Broker URL the gateway uses (maybe through a proxy) and the one the meters use. */
  gatewayMqttUrl: string;
  meterMqttUrl: string;
  store: { kind: 'sqlite' } | { kind: 'postgres'; url: string; schema: string };
  linkConcurrency?: number;
  lateReplyMs?: number;
  /** Meter-side reconnect delay after losing the broker (MqttFleet default 1000 ms). */
  fleetReconnectPeriodMs?: number;
  /** `control.leaseMs` (in-flight order leases). */
  leaseMs?: number;
}

type FleetSeed = Parameters<typeof planFleet>[0];

/**
 * Wait until the gateway on `port` answers /healthz with status ok. `alive` (optional) says why waiting is
 * pointless, e.g. the process exited; its message is thrown at once.
 */
export async function waitHealthy(port: number, timeoutMs: number, what = 'gateway', alive?: () => string | null): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (res.ok && (await res.json()).status === 'ok') return;
    } catch {
      /* not up yet */
    }
    const dead = alive?.();
    if (dead) throw new Error(dead);
    if (Date.now() > until) throw new Error(`${what} did not become healthy`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A configuration file for a gateway run as the built program: external broker, the tests' fast profiles, the
 * seeded fleet, one operator key, no demo traffic, warnings only in its log (unless `logLevel` says otherwise).
 */
export function writeGatewayConfig(
  file: string,
  o: { instanceId: string; api: Record<string, unknown>; store: Record<string, unknown>; mqttUrl: string; profilesDir: string; control: Record<string, unknown>; apiKey: string; seed: FleetSeed; logLevel?: string },
): void {
  writeFileSync(
    file,
    JSON.stringify({
      instanceId: o.instanceId,
      api: { host: '127.0.0.1', ...o.api },
      store: o.store,
      mqtt: { mode: 'external', url: o.mqttUrl },
      profilesDir: o.profilesDir,
      control: { tickMs: 50, ...o.control },
      auth: { keys: [{ name: o.instanceId, role: 'operator', sha256: sha256Hex(o.apiKey) }], demoKeys: false },
      fleet: { seed: o.seed },
      simulator: { inProcess: false },
      demo: { reconnectEveryMs: 0 },
      // Beside the configuration: instances configured in one directory share the key, as they must on one database.
      audit: { keyFile: join(dirname(file), 'audit.key'), anchorFile: join(dirname(file), `${o.instanceId}-audit-anchors.jsonl`) },
      log: { level: o.logLevel ?? 'warn' },
    }),
  );
}

/**
 * The seeded meters, simulated in the test process and started: all disconnected, each answering `lateReplyMs`
 * late, so that many attempts are on the wire at any moment and a fault lands in the middle of some.
 */
export async function startSlowFleet(o: { brokerUrl: string; seed: FleetSeed; profiles: ReturnType<typeof writeFastProfiles>['profiles']; lateReplyMs: number; reconnectPeriodMs?: number }): Promise<MqttFleet> {
  const fleet = new MqttFleet({
    brokerUrl: o.brokerUrl,
    logger: pino({ level: 'silent' }),
    ...(o.reconnectPeriodMs !== undefined ? { reconnectPeriodMs: o.reconnectPeriodMs } : {}),
    meters: planFleet(o.seed).map((m) => ({
      meterId: m.meterId,
      profile: asMqttProfile(o.profiles.get(m.profileId)!),
      initialRelay: 'disconnected' as const,
      faults: { lateReplyMs: o.lateReplyMs },
    })),
  });
  await fleet.start();
  return fleet;
}

export interface FaultRun {
  dir: string;
  sqlitePath: string;
  port: number;
  fleet: MqttFleet;
  gateway: GatewayProcess;
  api(path: string, init?: RequestInit): Promise<any>;
  byState(): Promise<Record<string, number>>;
  submitAll(): Promise<number>;
  /** Poll until `pred(byState)`; returns the last counts. */
  waitFor(what: string, pred: (s: Record<string, number>) => boolean, timeoutMs: number, everyMs?: number): Promise<Record<string, number>>;
  waitAllFinal(timeoutMs: number): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

export class GatewayProcess {
  child: ChildProcess | undefined;
  /** Exits that the test did not ask for (code/signal), with the time. */
  readonly unexpectedExits: string[] = [];
  /** The gateway's output (log and stderr), the last 200-400 kB. */
  stderr = '';
  private stopping = false;
  private exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> = Promise.resolve({ code: null, signal: null });

  constructor(private readonly configFile: string) {}

  /** How the process started last exits (or exited): its exit code, or the signal that ended it. */
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.exit;
  }

  start(): void {
    this.stopping = false;
    const child = spawn(process.execPath, [MAIN], { env: { ...process.env, METERLINE_CONFIG: this.configFile, DATABASE_URL: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    // Its log (pino, on stdout) and anything on stderr, kept for failure messages and counts.
    const keep = (d: string) => {
      this.stderr += d;
      if (this.stderr.length > 400_000) this.stderr = this.stderr.slice(-200_000);
      if (process.env.FAULT_TEST_GATEWAY_LOG) process.stderr.write(`[gateway] ${d}`);
    };
    child.stdout?.setEncoding('utf8').on('data', keep);
    child.stderr?.setEncoding('utf8').on('data', keep);
    child.once('exit', (code, signal) => {
      if (!this.stopping) this.unexpectedExits.push(`exited with code ${code} signal ${signal} at ${new Date().toISOString()}`);
      if (this.child === child) this.child = undefined;
    });
    this.child = child;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const c = this.child;
    if (!c) return;
    this.stopping = true;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(t);
  }
}

export async function startFaultRun(o: FaultRunOptions): Promise<FaultRun> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first`);
  const { dir: profilesDir, profiles } = writeFastProfiles();
  const dir = mkdtempSync(join(tmpdir(), `ml-fault-${o.name}-`));
  const apiKey = newApiKey('op');
  const port = await freePort();
  const seed = { count: o.count, prefix: 'F-', profiles: ['acme-em340-fw2.4', 'volta-pp20-fw1.7'], links: o.links, regions: ['north'] };
  const sqlitePath = join(dir, 'gw.db');
  const configFile = join(dir, 'gateway.json');
  writeGatewayConfig(configFile, {
    instanceId: `fault-${o.name}`,
    api: { port, rateLimit: { max: 100_000, timeWindowMs: 1000 } },
    store:
      o.store.kind === 'sqlite'
        ? { kind: 'sqlite', sqlite: { path: sqlitePath }, postgres: null }
        : { kind: 'postgres', sqlite: { path: sqlitePath }, postgres: { url: o.store.url, schema: o.store.schema, maxConnections: 10 } },
    mqttUrl: o.gatewayMqttUrl,
    profilesDir,
    control: { linkConcurrency: o.linkConcurrency ?? 20, ...(o.leaseMs !== undefined ? { leaseMs: o.leaseMs } : {}) },
    apiKey,
    seed,
  });
  const fleet = await startSlowFleet({
    brokerUrl: o.meterMqttUrl,
    seed,
    profiles,
    lateReplyMs: o.lateReplyMs ?? 100,
    ...(o.fleetReconnectPeriodMs !== undefined ? { reconnectPeriodMs: o.fleetReconnectPeriodMs } : {}),
  });
  const gateway = new GatewayProcess(configFile);

  const api = async (path: string, init: RequestInit = {}): Promise<any> => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      ...init,
      signal: AbortSignal.timeout(10_000),
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
    });
    const body = await res.json();
    if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
    return body;
  };
  const byState = async (): Promise<Record<string, number>> => (await api('/v1/queue')).byState;

  const waitFor: FaultRun['waitFor'] = async (what, pred, timeoutMs, everyMs = 50) => {
    const until = Date.now() + timeoutMs;
    let last: Record<string, number> = {};
    let lastError = '';
    for (;;) {
      if (!gateway.running) throw new Error(`gateway is not running while waiting for ${what}: ${gateway.unexpectedExits.join('; ')}\n${gateway.stderr.slice(-3000)}`);
      try {
        last = await byState();
        if (pred(last)) return last;
      } catch (err) {
        // The API may answer 5xx while a dependency (the database) is down: keep polling.
        lastError = (err as Error).message;
      }
      if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${JSON.stringify(last)} ${lastError}`);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  };

  const finals = (s: Record<string, number>) => FINAL_STATES.reduce((n, k) => n + (s[k] ?? 0), 0);

  return {
    dir,
    sqlitePath,
    port,
    fleet,
    gateway,
    api,
    byState,
    waitFor,
    async submitAll() {
      gateway.start();
      await waitHealthy(port, 30_000, 'gateway', () =>
        gateway.running ? null : `gateway exited at start: ${gateway.unexpectedExits.join('; ')}`,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${gateway.stderr.slice(-3000)}`);
      });
      const orders = [...fleet.meterIds()].map((meterId) => ({ meterId, action: 'reconnect', reason: 'payment' }));
      const created = await api('/v1/orders/bulk', { method: 'POST', headers: { 'idempotency-key': `${o.name}-bulk-1` }, body: JSON.stringify({ orders }) });
      return created.created as number;
    },
    waitAllFinal: (timeoutMs) => waitFor('every order final', (s) => finals(s) === o.count, timeoutMs, 100),
    async stop() {
      await gateway.stop();
      await fleet.stop();
    },
  };
}

export interface OrderRow {
  id: string;
  meter_id: string;
  state: string;
  completed_at: number | null;
}

export interface RunFacts {
  /** Final transitions per order (order_events rows into a final state). */
  finals: { order_id: string; n: number }[];
  orders: OrderRow[];
  attempts: { outcome: string | null; n: number }[];
}

export const FINALS_SQL = `SELECT order_id, COUNT(*) AS n FROM order_events WHERE to_state IN (${FINAL_STATES.map((s) => `'${s}'`).join(',')}) GROUP BY order_id`;
export const ORDERS_SQL = `SELECT id, meter_id, state, completed_at FROM orders`;
export const ATTEMPTS_SQL = `SELECT outcome, COUNT(*) AS n FROM attempts GROUP BY outcome ORDER BY outcome`;

/** judgeRun on a SQLite gateway's journal; `extra` reads more from the same database before it closes. */
export function judgeSqliteRun<T>(count: number, sqlitePath: string, fleet: MqttFleet, extra: (db: Database.Database) => T): ReturnType<typeof judgeRun> & { extra: T } {
  const db = new Database(sqlitePath, { readonly: true });
  try {
    const facts = {
      finals: db.prepare(FINALS_SQL).all() as { order_id: string; n: number }[],
      orders: db.prepare(ORDERS_SQL).all() as OrderRow[],
      attempts: db.prepare(ATTEMPTS_SQL).all() as { outcome: string | null; n: number }[],
    };
    return { ...judgeRun(count, facts, fleet), extra: extra(db) };
  } finally {
    db.close();
  }
}

/** The checks every fault test makes; returns the figures to print. */
export function judgeRun(count: number, facts: RunFacts, fleet: MqttFleet): {
  problems: string[];
  figures: { orders: number; byState: Record<string, number>; attempts: number; retries: number; outcomes: Record<string, number>; lateCommands: number };
} {
  const problems: string[] = [];
  if (facts.orders.length !== count) problems.push(`${facts.orders.length} orders stored, ${count} submitted`);
  const finalsById = new Map(facts.finals.map((r) => [r.order_id, Number(r.n)]));
  const notOnce = facts.orders.filter((o) => finalsById.get(o.id) !== 1);
  if (notOnce.length > 0) problems.push(`${notOnce.length} orders did not end exactly once, e.g. ${notOnce.slice(0, 5).map((o) => `${o.id}×${finalsById.get(o.id) ?? 0}`).join(', ')}`);
  const byState: Record<string, number> = {};
  for (const o of facts.orders) byState[o.state] = (byState[o.state] ?? 0) + 1;
  const notFinal = facts.orders.filter((o) => !(FINAL_STATES as readonly string[]).includes(o.state) || o.completed_at === null);
  if (notFinal.length > 0) problems.push(`${notFinal.length} orders not final (or no completed_at): ${JSON.stringify(byState)}`);
  let lateCommands = 0;
  const lateExamples: string[] = [];
  for (const o of facts.orders) {
    const meter = fleet.meter(o.meter_id);
    if (o.state === 'done' && meter.relay !== 'connected') problems.push(`${o.meter_id}: order done but relay ${meter.relay}`);
    if (o.completed_at === null) continue;
    const late = meter.received.filter((c) => c.op !== 'read' && c.at > Number(o.completed_at));
    lateCommands += late.length;
    for (const c of late.slice(0, 1)) if (lateExamples.length < 5) lateExamples.push(`${o.meter_id} ${c.op} ${c.cid} fate=${c.fate} ${c.at - Number(o.completed_at)} ms after the order ended`);
  }
  if (lateCommands > 0) problems.push(`${lateCommands} commands reached a meter after its order ended, e.g. ${lateExamples.join('; ')}`);
  const outcomes: Record<string, number> = {};
  let attempts = 0;
  for (const r of facts.attempts) {
    outcomes[r.outcome ?? 'open'] = Number(r.n);
    attempts += Number(r.n);
  }
  return { problems, figures: { orders: facts.orders.length, byState, attempts, retries: attempts - facts.orders.length, outcomes, lateCommands } };
}
