import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newApiKey, sha256Hex } from '../../src/api/auth.js';
import { startCipheredFleet, HLS_PROFILE, type CipheredFleet } from '../harness/dlms-ciphered-fleet.js';
import { FINAL_STATES, GatewayProcess, MAIN, waitHealthy } from '../harness/fault-run.js';
import { freePort, startMosquitto, type MosquittoBroker } from '../harness/mosquitto.js';
import { writeFastProfiles } from '../harness/test-profiles.js';

/**
 * Issue 15, acceptance 3: the gateway is killed with SIGKILL three times during 2,000 ciphered orders (HLS-GMAC,
 * security suite 0, authenticated and encrypted APDUs) and started again each time. The gateway runs as the built
 * program with SQLite and its key master in the environment (the same across restarts); the meters run in this
 * process behind DLMS TCP wrapper servers, so they outlive every kill and remember every client invocation counter
 * they were sent. Afterwards no meter has seen a counter twice, none rejected one, and every order ended exactly once
 * with no command to a meter outside its order's lifetime and no more switching commands than attempts.
 *
 * 100 meters on 4 wrapper links; 20 waves of one order per meter, alternately disconnect (safety: no window, no cap)
 * and reconnect (control mode 6: armed); kills in waves 4, 10 and 16 while attempts are on the wire.
 */
const METERS = 100;
const LINKS = 4;
const WAVES = 20;
const COUNT = METERS * WAVES;
const KILL_IN_WAVES = new Set([3, 9, 15]);

let broker: MosquittoBroker;
let fleet: CipheredFleet;
let gateway: GatewayProcess;
let dir: string;
let port: number;
const operatorKey = newApiKey('op');
const adminKey = newApiKey('adm');
const masterBefore = process.env.METERLINE_KEY_MASTER;

async function api(path: string, init: RequestInit & { key?: string } = {}): Promise<any> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    ...init,
    signal: AbortSignal.timeout(15_000),
    headers: { authorization: `Bearer ${init.key ?? operatorKey}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
  });
  const body = await res.json();
  if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

const finals = (s: Record<string, number>) => FINAL_STATES.reduce((n, k) => n + (s[k] ?? 0), 0) + (s.escalated ?? 0);

async function startGateway(): Promise<void> {
  gateway.start();
  await waitHealthy(port, 30_000, 'gateway', () => (gateway.running ? null : `gateway exited at start: ${gateway.unexpectedExits.join('; ')}\n${gateway.stderr.slice(-3000)}`));
}

async function waitFor(what: string, pred: (s: Record<string, number>) => boolean, timeoutMs: number, everyMs = 25): Promise<Record<string, number>> {
  const until = Date.now() + timeoutMs;
  let last: Record<string, number> = {};
  for (;;) {
    if (!gateway.running) throw new Error(`gateway is not running while waiting for ${what}: ${gateway.unexpectedExits.join('; ')}\n${gateway.stderr.slice(-3000)}`);
    last = (await api('/v1/queue')).byState;
    if (pred(last)) return last;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${JSON.stringify(last)}\n${gateway.stderr.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first`);
  broker = await startMosquitto();
  fleet = await startCipheredFleet({ count: METERS, links: LINKS, prefix: 'KC-', maxConnections: 64 });
  const { dir: profilesDir } = writeFastProfiles();
  dir = mkdtempSync(join(tmpdir(), 'ml-dlms-kill-'));
  port = await freePort();
  const allDay = ['00:00-24:00'];
  const configFile = join(dir, 'gateway.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      instanceId: 'dlms-kill',
      api: { host: '127.0.0.1', port, rateLimit: { max: 100_000, timeWindowMs: 1000 } },
      store: { kind: 'sqlite', sqlite: { path: join(dir, 'gw.db') }, postgres: null },
      mqtt: { mode: 'external', url: broker.url },
      profilesDir,
      dlms: { tcp: fleet.tcpLinks({ maxConnections: 8 }), passwords: { 'kam-omnipower-dlms-mode1': { value: 'unused-1' }, 'lgz-e570-dlms-mode2': { value: 'unused-2' } } },
      control: { tickMs: 50, linkConcurrency: 8 },
      policy: { windows: { weekly: { mon: allDay, tue: allDay, wed: allDay, thu: allDay, fri: allDay, sat: allDay, sun: allDay }, holidayEveCutoff: null } },
      auth: {
        keys: [
          { name: 'kill-op', role: 'operator', sha256: sha256Hex(operatorKey) },
          { name: 'kill-admin', role: 'admin', sha256: sha256Hex(adminKey) },
        ],
        demoKeys: false,
      },
      fleet: { seed: null },
      simulator: { inProcess: false },
      demo: { reconnectEveryMs: 0 },
      audit: { keyFile: join(dir, 'audit.key'), anchorFile: join(dir, 'audit-anchors.jsonl') },
      log: { level: 'warn' },
    }),
  );
  // The key master, in the gateway's environment (the child inherits it), the same on every start.
  process.env.METERLINE_KEY_MASTER = randomBytes(32).toString('hex');
  gateway = new GatewayProcess(configFile);
  await startGateway();
  for (const m of fleet.meters) await api(`/v1/meters/${m.meterId}`, { method: 'PUT', headers: { 'idempotency-key': `register-${m.meterId}` }, body: JSON.stringify({ profileId: HLS_PROFILE, link: m.link, region: 'north', address: String(m.wPort) }) });
  const imported = await api('/v1/meter-keys/import', { method: 'POST', key: adminKey, headers: { 'idempotency-key': 'dlms-kill-keys' }, body: JSON.stringify({ format: 'csv', content: fleet.keyFileCsv() }) });
  expect(imported.created).toBe(METERS);
}, 120_000);

afterAll(async () => {
  await gateway?.stop('SIGKILL');
  await fleet?.stop();
  await broker?.stop();
  if (masterBefore === undefined) delete process.env.METERLINE_KEY_MASTER;
  else process.env.METERLINE_KEY_MASTER = masterBefore;
});

describe('kill -9 during 2,000 ciphered orders', () => {
  it('three kills and restarts: no meter saw an invocation counter twice or rejected one, and every order ended exactly once', async () => {
    let kills = 0;
    for (let wave = 0; wave < WAVES; wave++) {
      const action = wave % 2 === 0 ? 'disconnect' : 'reconnect';
      const orders = fleet.meters.map((m) =>
        action === 'disconnect' ? { meterId: m.meterId, action, reason: 'safety', reference: `INC-${wave}` } : { meterId: m.meterId, action, reason: 'payment' },
      );
      const created = await api('/v1/orders/bulk', { method: 'POST', headers: { 'idempotency-key': `dlms-kill-wave-${wave}` }, body: JSON.stringify({ orders }) });
      expect(created.created, JSON.stringify(created.results.find((r: { outcome: string }) => r.outcome !== 'created'))).toBe(METERS);
      const before = METERS * wave;
      if (KILL_IN_WAVES.has(wave)) {
        // Kill once a share of the wave is over and conversations are on the wire.
        await waitFor(`the kill point of wave ${wave}`, (s) => finals(s) - before >= METERS * 0.3 && (s.in_flight ?? 0) > 0, 60_000, 5);
        await gateway.stop('SIGKILL');
        kills++;
        await startGateway();
      }
      await waitFor(`wave ${wave} to end`, (s) => finals(s) === before + METERS, 60_000);
    }
    expect(kills).toBe(3);
    const final = (await api('/v1/queue')).byState;
    await gateway.stop('SIGTERM');

    expect(final.failed ?? 0).toBe(0);
    expect(final.escalated ?? 0).toBe(0);
    expect((final.done ?? 0) + (final.armed ?? 0)).toBe(COUNT);

    // The meters: no counter seen twice (one key set per meter), none rejected, no HLS failure.
    let associations = 0;
    for (const m of fleet.meters) {
      const sim = fleet.server(m.meterId).simMeter(m.meterId);
      associations += sim.counters.associations;
      const seen = sim.seenCounters;
      expect(new Set(seen).size, `${m.meterId} was sent a counter twice`).toBe(seen.length);
      expect(sim.counters.rejectedCounters, `${m.meterId} rejected counters`).toBe(0);
      expect(sim.counters.hlsFailures, `${m.meterId} HLS failures`).toBe(0);
    }
    expect(associations).toBeGreaterThanOrEqual(COUNT);

    const db = new Database(join(dir, 'gw.db'), { readonly: true });
    try {
      // Exactly once: each order reached a final state by exactly one transition.
      const finalsPerOrder = db
        .prepare(`SELECT order_id, COUNT(*) AS n FROM order_events WHERE to_state IN ('done','armed','failed','superseded','cancelled','escalated') GROUP BY order_id`)
        .all() as { order_id: string; n: number }[];
      expect(finalsPerOrder).toHaveLength(COUNT);
      expect(finalsPerOrder.filter((r) => r.n !== 1)).toEqual([]);
      // The restarts verified the interrupted attempts by a read instead of re-sending blindly.
      const verified = db.prepare(`SELECT COUNT(*) AS n FROM attempts WHERE detail LIKE 'gateway restarted%'`).get() as { n: number };
      expect(verified.n).toBeGreaterThan(0);

      const orders = db.prepare(`SELECT id, meter_id, action, created_at, completed_at, state FROM orders`).all() as { id: string; meter_id: string; action: string; created_at: number; completed_at: number; state: string }[];
      const attempts = new Map((db.prepare(`SELECT order_id, COUNT(*) AS n FROM attempts GROUP BY order_id`).all() as { order_id: string; n: number }[]).map((r) => [r.order_id, r.n]));
      const byMeter = new Map<string, typeof orders>();
      for (const o of orders) byMeter.set(o.meter_id, [...(byMeter.get(o.meter_id) ?? []), o]);
      for (const m of fleet.meters) {
        const mine = byMeter.get(m.meterId)!.sort((a, b) => a.created_at - b.created_at);
        expect(mine).toHaveLength(WAVES);
        const sim = fleet.server(m.meterId).meter(m.meterId);
        const switching = sim.received.filter((c) => c.op !== 'read');
        // Every switching command reached the meter while one of its orders was open, and of that order's action.
        for (const c of switching) {
          const owner = mine.find((o) => c.at >= o.created_at && c.at <= o.completed_at);
          expect(owner, `${m.meterId}: a ${c.op} at ${c.at} outside every order`).toBeDefined();
          expect(c.op).toBe(owner!.action);
        }
        // No attempt executed twice: an order's switching commands are at most its attempts.
        for (const o of mine) {
          const n = switching.filter((c) => c.at >= o.created_at && c.at <= o.completed_at).length;
          expect(n, `${o.id} (${m.meterId}): ${n} commands for ${attempts.get(o.id)} attempts`).toBeLessThanOrEqual(attempts.get(o.id) ?? 0);
        }
        // The last order of the run was a reconnect: the meter is armed.
        expect(sim.relay).toBe('armed');
      }
    } finally {
      db.close();
    }
  }, 240_000);
});
