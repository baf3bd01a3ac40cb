import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newApiKey } from '../../src/api/auth.js';
import type { MqttFleet } from '../../simulators/mqtt-fleet.js';
import { MAIN, startSlowFleet, waitHealthy, writeGatewayConfig } from '../harness/fault-run.js';
import { freePort, startMosquitto, type MosquittoBroker } from '../harness/mosquitto.js';
import { writeFastProfiles } from '../harness/test-profiles.js';

/**
 * The gateway process is killed with SIGKILL in the middle of 1,000 reconnects and started again. Every order
 * must finish exactly once, and no meter may receive a command after its order ended. The gateway runs as
 * the built program (`node dist/src/main.js`), as in production; the meters run in this process so they
 * outlive the kill and keep a log of every command they received.
 */
const COUNT = 1000;

let broker: MosquittoBroker;
let fleet: MqttFleet;
let dir: string;
let configFile: string;
let apiKey: string;
let port: number;
let gateway: ChildProcess | undefined;

function startGatewayProcess(): ChildProcess {
  const child = spawn(process.execPath, [MAIN], { env: { ...process.env, METERLINE_CONFIG: configFile }, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => process.stderr.write(`[gateway] ${d}`));
  return child;
}

async function api(path: string, init: RequestInit = {}): Promise<any> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
  });
  const body = await res.json();
  if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

const waitForHealthy = (): Promise<void> => waitHealthy(port, 30_000);

const byState = async (): Promise<Record<string, number>> => (await api('/v1/queue')).byState;

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm test", which builds first`);
  broker = await startMosquitto();
  const { dir: profilesDir, profiles } = writeFastProfiles();
  dir = mkdtempSync(join(tmpdir(), 'ml-crash-'));
  apiKey = newApiKey('op');
  port = await freePort();
  const seed = { count: COUNT, prefix: 'K-', profiles: ['acme-em340-fw2.4', 'volta-pp20-fw1.7'], links: 10, regions: ['north'] };
  configFile = join(dir, 'gateway.json');
  writeGatewayConfig(configFile, {
    instanceId: 'crash',
    api: { port },
    store: { kind: 'sqlite', sqlite: { path: join(dir, 'gw.db') } },
    mqttUrl: broker.url,
    profilesDir,
    control: { linkConcurrency: 20 },
    apiKey,
    seed,
  });
  fleet = await startSlowFleet({ brokerUrl: broker.url, seed, profiles, lateReplyMs: 150 });
}, 60_000);

afterAll(async () => {
  gateway?.kill('SIGKILL');
  await fleet?.stop();
  await broker?.stop();
});

describe('crash in the middle of 1,000 orders', () => {
  it('after SIGKILL and a restart every order finishes exactly once, and no meter gets a command after its order ended', async () => {
    gateway = startGatewayProcess();
    await waitForHealthy();
    const orders = [...fleet.meterIds()].map((meterId) => ({ meterId, action: 'reconnect', reason: 'payment' }));
    const created = await api('/v1/orders/bulk', { method: 'POST', headers: { 'idempotency-key': 'crash-bulk-1' }, body: JSON.stringify({ orders }) });
    expect(created.created).toBe(COUNT);

    // Kill once a good share is finished and attempts are on the wire.
    const until = Date.now() + 60_000;
    let seen: Record<string, number> = {};
    for (;;) {
      seen = await byState();
      if ((seen.done ?? 0) + (seen.armed ?? 0) >= COUNT * 0.3 && (seen.in_flight ?? 0) > 0) break;
      if (Date.now() > until) throw new Error(`never reached the kill point: ${JSON.stringify(seen)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    gateway.kill('SIGKILL');
    await new Promise((r) => gateway!.once('exit', r));

    gateway = startGatewayProcess();
    await waitForHealthy();
    const finishBy = Date.now() + 120_000;
    let final: Record<string, number> = {};
    for (;;) {
      final = await byState();
      if ((final.done ?? 0) + (final.armed ?? 0) + (final.failed ?? 0) === COUNT) break;
      if (Date.now() > finishBy) throw new Error(`orders did not finish after restart: ${JSON.stringify(final)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    gateway.kill('SIGTERM');
    await new Promise((r) => gateway!.once('exit', r));
    gateway = undefined;

    expect(final.failed ?? 0).toBe(0);
    const db = new Database(join(dir, 'gw.db'), { readonly: true });
    try {
      // Exactly once: each order reached a final state by exactly one transition.
      const finals = db
        .prepare(`SELECT order_id, COUNT(*) AS n FROM order_events WHERE to_state IN ('done','armed','failed','superseded','cancelled') GROUP BY order_id`)
        .all() as { order_id: string; n: number }[];
      expect(finals).toHaveLength(COUNT);
      expect(finals.every((r) => r.n === 1)).toBe(true);
      // The restart verified the interrupted attempts by a read instead of re-sending blindly.
      const verified = db.prepare(`SELECT COUNT(*) AS n FROM attempts WHERE detail LIKE 'gateway restarted%'`).get() as { n: number };
      expect(verified.n).toBeGreaterThan(0);
      const rows = db.prepare(`SELECT id, meter_id, completed_at, state FROM orders`).all() as { id: string; meter_id: string; completed_at: number; state: string }[];
      for (const o of rows) {
        const meter = fleet.meter(o.meter_id);
        expect(meter.relay === 'connected' || (meter.relay === 'armed' && o.state === 'armed')).toBe(true);
        const late = meter.received.filter((c) => c.op !== 'read' && c.at > o.completed_at);
        expect(late, `commands to ${o.meter_id} after its order ended`).toEqual([]);
      }
    } finally {
      db.close();
    }
  }, 240_000);
});
