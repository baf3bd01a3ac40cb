import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newApiKey } from '../../src/api/auth.js';
import type { MqttFleet } from '../../simulators/mqtt-fleet.js';
import { MAIN, startSlowFleet, waitHealthy, writeGatewayConfig } from '../harness/fault-run.js';
import { freePort, startMosquitto, type MosquittoBroker } from '../harness/mosquitto.js';
import { writeFastProfiles } from '../harness/test-profiles.js';

/**
 * Two gateway instances (the built program, `node dist/src/main.js`) share one PostgreSQL schema and one
 * mosquitto. 10,000 reconnects are submitted; in the middle of the run one instance is killed with SIGKILL.
 * The other must take over the dead instance's in-flight orders once their leases run out (verifying each by
 * a read), finish everything, and: every order ends exactly once, none is lost, and no meter receives a
 * command after its order ended. The meters run in this process, so they outlive the kill and log every
 * command they received.
 */
const COUNT = 10_000;
const LEASE_MS = 3000;
const PG_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const SCHEMA = `ml_kill_${Math.random().toString(36).slice(2, 10)}`;

let broker: MosquittoBroker;
let fleet: MqttFleet;
let db: pg.Client;
let apiKey: string;
const instances: Record<'a' | 'b', { port: number; config: string; child?: ChildProcess }> = { a: { port: 0, config: '' }, b: { port: 0, config: '' } };

function start(name: 'a' | 'b'): ChildProcess {
  const child = spawn(process.execPath, [MAIN], { env: { ...process.env, METERLINE_CONFIG: instances[name].config, DATABASE_URL: '' }, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => process.stderr.write(`[gw-${name}] ${d}`));
  instances[name].child = child;
  return child;
}

async function api(name: 'a' | 'b', path: string, init: RequestInit = {}): Promise<any> {
  const res = await fetch(`http://127.0.0.1:${instances[name].port}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
  });
  const body = await res.json();
  if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

const waitInstanceHealthy = (name: 'a' | 'b'): Promise<void> => waitHealthy(instances[name].port, 60_000, `gw-${name}`);

const q = async <T = Record<string, unknown>>(sql: string, args: unknown[] = []): Promise<T[]> => (await db.query(sql, args)).rows as T[];
const inFlightByOwner = async (): Promise<Record<string, number>> =>
  Object.fromEntries((await q<{ o: string; n: number }>(`SELECT lease_owner AS o, COUNT(*)::int AS n FROM orders WHERE state = 'in_flight' GROUP BY lease_owner`)).map((r) => [r.o, r.n]));

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm test", which builds first`);
  db = new pg.Client({ connectionString: PG_URL });
  await db.connect();
  await db.query(`CREATE SCHEMA ${SCHEMA}`);
  await db.query(`SET search_path TO ${SCHEMA}`);
  broker = await startMosquitto();
  const { dir: profilesDir, profiles } = writeFastProfiles();
  const dir = mkdtempSync(join(tmpdir(), 'ml-kill-'));
  apiKey = newApiKey('op');
  const seed = { count: COUNT, prefix: 'KK-', profiles: ['acme-em340-fw2.4', 'volta-pp20-fw1.7'], links: 10, regions: ['north'] };
  for (const name of ['a', 'b'] as const) {
    instances[name].port = await freePort();
    instances[name].config = join(dir, `gw-${name}.json`);
    writeGatewayConfig(instances[name].config, {
      instanceId: `gw-${name}`,
      api: { port: instances[name].port },
      store: { kind: 'postgres', postgres: { url: PG_URL, schema: SCHEMA, maxConnections: 10 } },
      mqttUrl: broker.url,
      profilesDir,
      control: { linkConcurrency: 20, leaseMs: LEASE_MS },
      apiKey,
      seed,
    });
  }
  fleet = await startSlowFleet({ brokerUrl: broker.url, seed, profiles, lateReplyMs: 100 });
}, 120_000);

afterAll(async () => {
  for (const i of Object.values(instances)) i.child?.kill('SIGKILL');
  await fleet?.stop();
  await broker?.stop();
  await db?.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`).catch(() => undefined);
  await db?.end();
});

describe('two instances on PostgreSQL, one killed with SIGKILL in the middle of 10,000 orders', () => {
  it('the survivor takes the dead instance’s orders over after its lease runs out; every order ends exactly once, none lost, no command after an order ended', async () => {
    start('a');
    await waitInstanceHealthy('a');
    start('b');
    await waitInstanceHealthy('b');
    const started = Date.now();
    const orders = [...fleet.meterIds()].map((meterId) => ({ meterId, action: 'reconnect', reason: 'payment' }));
    const created = await api('a', '/v1/orders/bulk', { method: 'POST', headers: { 'idempotency-key': 'kill-bulk-1' }, body: JSON.stringify({ orders }) });
    expect(created.created).toBe(COUNT);

    // Kill gw-a once a good share is finished and both instances have attempts on the wire.
    const until = Date.now() + 120_000;
    let flying: Record<string, number> = {};
    for (;;) {
      flying = await inFlightByOwner();
      const finished = (await q<{ n: number }>(`SELECT COUNT(*)::int AS n FROM orders WHERE state IN ('done', 'armed')`))[0]!.n;
      if (finished >= COUNT * 0.25 && (flying['gw-a'] ?? 0) > 0 && (flying['gw-b'] ?? 0) > 0) break;
      if (Date.now() > until) throw new Error(`never reached the kill point: finished ${finished}, in flight ${JSON.stringify(flying)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    // One instance runs the singleton jobs (success rates, readings, callbacks, ...): gw-a, which started first,
    // unless a loaded machine let its lease lapse and gw-b took the duty over. Either way the survivor must hold it
    // after the kill (checked below); when gw-a held it, that is a takeover.
    const dutyAtKill = (await q<{ owner: string }>(`SELECT owner FROM duties WHERE name = 'singletons'`))[0]?.owner;
    expect(['gw-a', 'gw-b']).toContain(dutyAtKill);
    instances.a.child!.kill('SIGKILL');
    const killedAt = Date.now();
    await new Promise((r) => instances.a.child!.once('exit', r));
    const orphaned = await q<{ id: string }>(`SELECT id FROM orders WHERE state = 'in_flight' AND lease_owner = 'gw-a'`);

    const finishBy = Date.now() + 180_000;
    let open = COUNT;
    for (;;) {
      open = (await q<{ n: number }>(`SELECT COUNT(*)::int AS n FROM orders WHERE state NOT IN ('done', 'armed', 'failed', 'superseded', 'cancelled', 'refused')`))[0]!.n;
      if (open === 0) break;
      if (Date.now() > finishBy) throw new Error(`orders did not finish after the kill: ${open} open`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const finishedAt = Date.now();
    // gw-b's metrics say what it did: the takeovers, and that it now runs the singleton jobs.
    const metricsText = await (await fetch(`http://127.0.0.1:${instances.b.port}/metrics`, { headers: { authorization: `Bearer ${apiKey}` } })).text();
    const metric = (name: string): number => Number(metricsText.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1]);
    // The survivor holds the singleton duty: taken over once gw-a's lease on it ran out, or kept if it had it already.
    const dutyBy = Date.now() + 3 * LEASE_MS;
    while ((await q<{ owner: string }>(`SELECT owner FROM duties WHERE name = 'singletons'`))[0]?.owner !== 'gw-b' && Date.now() < dutyBy) await new Promise((r) => setTimeout(r, 100));
    expect((await q<{ owner: string }>(`SELECT owner FROM duties WHERE name = 'singletons'`))[0]?.owner).toBe('gw-b');
    expect(metric('meterline_lease_takeovers_total')).toBe(orphaned.length);
    const dutyMetric = await (await fetch(`http://127.0.0.1:${instances.b.port}/metrics`, { headers: { authorization: `Bearer ${apiKey}` } })).text();
    expect(dutyMetric).toMatch(/^meterline_singleton_duty_held 1$/m);
    instances.b.child!.kill('SIGTERM');
    await new Promise((r) => instances.b.child!.once('exit', r));
    instances.b.child = undefined;

    const states = Object.fromEntries((await q<{ state: string; n: number }>(`SELECT state, COUNT(*)::int AS n FROM orders GROUP BY state`)).map((r) => [r.state, r.n]));
    expect(states.failed ?? 0).toBe(0);
    expect((states.done ?? 0) + (states.armed ?? 0)).toBe(COUNT);
    // Exactly once: each order reached a final state by exactly one transition.
    const finals = await q<{ order_id: string; n: number }>(
      `SELECT order_id, COUNT(*)::int AS n FROM order_events WHERE to_state IN ('done','armed','failed','superseded','cancelled','refused') GROUP BY order_id`,
    );
    expect(finals).toHaveLength(COUNT);
    expect(finals.filter((r) => r.n !== 1)).toEqual([]);
    // The survivor took the dead instance's in-flight orders over after the lease, by a read, not a blind re-send.
    const takeovers = await q<{ order_id: string; at: string }>(`SELECT order_id, at FROM order_events WHERE from_state = 'in_flight' AND to_state = 'in_flight' AND reason LIKE 'lease of gw-a ran out%'`);
    expect(orphaned.length).toBeGreaterThan(0);
    expect(new Set(takeovers.map((t) => t.order_id))).toEqual(new Set(orphaned.map((o) => o.id)));
    const firstTakeover = Math.min(...takeovers.map((t) => Number(t.at)));
    const lastTakeover = Math.max(...takeovers.map((t) => Number(t.at)));
    expect(firstTakeover - killedAt).toBeGreaterThanOrEqual(0);
    // gw-b completed every one of them; gw-a, dead, completed none after the kill.
    const verified = await q<{ n: number }>(`SELECT COUNT(*)::int AS n FROM attempts WHERE order_id = ANY($1::text[]) AND detail LIKE 'gateway restarted%' AND ended_at IS NOT NULL`, [orphaned.map((o) => o.id)]);
    expect(verified[0]!.n).toBe(orphaned.length);

    // No command after the order ended; every meter in the asked state.
    const rows = await q<{ id: string; meter_id: string; completed_at: string; state: string }>(`SELECT id, meter_id, completed_at, state FROM orders`);
    const late: string[] = [];
    for (const o of rows) {
      const meter = fleet.meter(o.meter_id);
      expect(meter.relay === 'connected' || (meter.relay === 'armed' && o.state === 'armed')).toBe(true);
      for (const c of meter.received) if (c.op !== 'read' && c.at > Number(o.completed_at)) late.push(`${o.meter_id} ${c.op} at ${c.at}`);
    }
    expect(late).toEqual([]);
    const attempts = (await q<{ n: number }>(`SELECT COUNT(*)::int AS n FROM attempts`))[0]!.n;
    console.log(
      `two-instance kill: ${COUNT} orders in ${((finishedAt - started) / 1000).toFixed(1)} s; killed gw-a at ${((killedAt - started) / 1000).toFixed(1)} s with ${orphaned.length} orders on its wire ` +
        `(in flight then: ${JSON.stringify(flying)}); gw-b took them over ${((firstTakeover - killedAt) / 1000).toFixed(1)}–${((lastTakeover - killedAt) / 1000).toFixed(1)} s after the kill (lease ${LEASE_MS} ms); ` +
        `all finished ${((finishedAt - killedAt) / 1000).toFixed(1)} s after the kill; ${attempts} attempts for ${COUNT} orders; final ${JSON.stringify(states)}`,
    );
  }, 400_000);
});
