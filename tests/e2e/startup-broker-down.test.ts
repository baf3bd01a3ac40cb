import Database from 'better-sqlite3';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asMqttProfile } from '../../src/domain/firmware-profile.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { planFleet } from '../../simulators/fleet-plan.js';
import { MqttFleet } from '../../simulators/mqtt-fleet.js';
import { startSlowFleet } from '../harness/fault-run.js';
import { freePort, startMosquitto, type MosquittoBroker } from '../harness/mosquitto.js';
import { eventually, prepareStartupRun, reconnectRequest, type StartupRun } from '../harness/startup-run.js';
import { startTcpProxy, type TcpProxy } from '../harness/tcp-proxy.js';
import { openPolicy } from '../harness/test-policy.js';

/**
 * The broker is down when the gateway starts: nothing listens at the address it is given. The gateway must start
 * degraded instead of exiting (it used to exit after 10 s, logging "mqtt client error: undefined"), log the real
 * error, say on /healthz that the broker is down and which broker, admit orders and let them wait without spending
 * attempts, and finish them once the broker is there. The meters are connected to a real mosquitto all along; "the
 * broker comes up" is that address starting to answer (a plain TCP forwarder to the mosquitto opens on it).
 */
const COUNT = 30;

let broker: MosquittoBroker;
let fleet: MqttFleet;
let run: StartupRun;
let brokerPort: number;
let proxy: TcpProxy | undefined;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  broker = await startMosquitto();
  brokerPort = await freePort();
  run = await prepareStartupRun({ name: 'broker-down', count: COUNT, mqttUrl: `mqtt://127.0.0.1:${brokerPort}` });
  fleet = await startSlowFleet({ brokerUrl: broker.url, seed: run.seed, profiles: run.profiles, lateReplyMs: 0 });
}, 60_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await run?.gateway.stop();
  await proxy?.close();
  await fleet?.stop();
  await broker?.stop();
});

describe('start-up with the broker down', () => {
  it('starts degraded naming the broker, logs the real error, keeps trying; once the broker is up the orders finish, no attempt spent meanwhile', async () => {
    const startedAt = Date.now();
    run.gateway.start();
    const health = await eventually(
      '/healthz degraded with the control loop running',
      async () => {
        const r = await run.request('/healthz');
        return r.body?.status === 'degraded' && r.body.checks.control === true ? r : undefined;
      },
      30_000,
    );
    expect(health.status).toBe(200);
    expect(health.body.checks).toMatchObject({ store: true, broker: false, control: true });
    const brokerProblem = health.body.problems.find((p: { check: string }) => p.check === 'broker');
    expect(brokerProblem.detail).toContain(`mqtt://127.0.0.1:${brokerPort}`);
    expect(brokerProblem.detail).toContain('ECONNREFUSED');
    // The log says what happened, with the broker and the operating system's error.
    expect(run.gateway.stderr).toContain('ECONNREFUSED');
    expect(run.gateway.stderr).toContain(`mqtt://127.0.0.1:${brokerPort}`);
    expect(run.gateway.stderr).not.toMatch(/mqtt client error: undefined/);

    const orders = run.meterIds.map((meterId) => ({ meterId, action: 'reconnect', reason: 'payment' }));
    const created = await run.request('/v1/orders/bulk', { method: 'POST', headers: { 'idempotency-key': 'broker-down-bulk' }, body: JSON.stringify({ orders }) });
    expect(created.status, JSON.stringify(created.body)).toBe(202);

    // Past the point where it used to give up (10 s), it is still up, and the orders wait, none finished or failed.
    while (Date.now() - startedAt < 12_000) {
      const s = (await run.request('/v1/queue')).body.byState as Record<string, number>;
      expect((s.queued ?? 0) + (s.in_flight ?? 0), JSON.stringify(s)).toBe(COUNT);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(run.gateway.running, run.gateway.stderr.slice(-2000)).toBe(true);
    expect(fleet.counters.messages).toBe(0);

    // The broker comes up at its address.
    proxy = await startTcpProxy({ port: broker.port }, { listenPort: brokerPort });
    await eventually(
      'every order done',
      async () => {
        const s = (await run.request('/v1/queue')).body.byState as Record<string, number>;
        return (s.done ?? 0) + (s.armed ?? 0) === COUNT ? s : undefined;
      },
      60_000,
    );
    expect((await run.request('/healthz')).body).toMatchObject({ status: 'ok', problems: [] });

    // No attempt was spent while the broker was down: each order took one attempt, the one that worked.
    const db = new Database(run.sqlitePath, { readonly: true });
    try {
      const attempts = db.prepare(`SELECT outcome, COUNT(*) AS n FROM attempts GROUP BY outcome`).all();
      expect(attempts).toEqual([{ outcome: 'ok', n: COUNT }]);
      expect(db.prepare(`SELECT MAX(attempts) AS m FROM orders`).get()).toEqual({ m: 1 });
    } finally {
      db.close();
    }
  }, 120_000);
});

describe('start-up with the broker down and orders left in flight on their last attempt', () => {
  it('verifies them by a read once the broker is back, instead of failing them blind while it is down', async () => {
    // An earlier run crashed with one reconnect per meter on the wire, each on its last attempt. Its commands worked
    // (the relays are closed); only the verdicts were lost. Nothing listens at the broker's address yet.
    const port = await freePort();
    const r = await prepareStartupRun({ name: 'broker-down-orphans', prefix: 'O-', count: 6, mqttUrl: `mqtt://127.0.0.1:${port}` });
    cleanups.push(() => r.gateway.stop());
    const planned = planFleet(r.seed);
    const store = new SqliteStore(r.sqlitePath);
    const now = Date.now();
    try {
      await store.migrate();
      await store.upsertMeters(planned, now);
      let n = 0;
      const outs = await store.submitOrders(r.meterIds.map((id) => reconnectRequest(id, now)), { now, reconnectLimitHours: 24, newOrderId: () => `ord_orphan_${++n}`, policy: openPolicy() });
      for (const [i, out] of outs.entries()) {
        const max = r.profiles.get(planned[i]!.profileId)!.retry.maxAttempts;
        for (let k = 1; k < max; k++) {
          await store.beginAttempts([out.order.id], now, { owner: 'an-earlier-run', until: now + 60_000 });
          await store.completeAttempt({
            orderId: out.order.id, attempt: k, leaseOwner: 'an-earlier-run', endedAt: now, latencyMs: null, commandEvidence: null, readEvidence: null,
            observedRelay: null, detail: 'no reply', observation: null,
            // A timeout with attempts left: queued again, due at once (no retry delay).
            judgement: { rules: { relay: r.profiles.get(planned[i]!.profileId)!.relay, retry: { maxAttempts: max, baseDelayMs: 0, maxDelayMs: 0 } }, facts: { command: 'timeout', readBack: undefined }, now, random: 0 },
          });
        }
        await store.beginAttempts([out.order.id], now, { owner: 'an-earlier-run', until: now - 1 });
      }
    } finally {
      await store.close();
    }
    const meters = new MqttFleet({
      brokerUrl: broker.url,
      logger: pino({ level: 'silent' }),
      meters: planned.map((m) => ({ meterId: m.meterId, profile: asMqttProfile(r.profiles.get(m.profileId)!), initialRelay: 'connected' as const })),
    });
    await meters.start();
    cleanups.push(() => meters.stop());

    r.gateway.start();
    await eventually('/healthz degraded, broker down, loop running', async () => {
      const h = await r.request('/healthz');
      return h.body?.checks?.broker === false && h.body.checks.control === true ? h : undefined;
    }, 30_000);
    // While the broker is down they stay in flight, leased and waiting: none failed, none escalated.
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      const s = (await r.request('/v1/queue')).body.byState as Record<string, number>;
      expect(s.in_flight, JSON.stringify(s)).toBe(6);
      await new Promise((res) => setTimeout(res, 200));
    }
    expect(r.gateway.stderr).toContain('waits for its link to verify it by a read');

    const up = await startTcpProxy({ port: broker.port }, { listenPort: port });
    cleanups.push(() => up.close());
    const done = await eventually('every order verified done', async () => {
      const s = (await r.request('/v1/queue')).body.byState as Record<string, number>;
      return s.done === 6 ? s : undefined;
    }, 30_000);
    expect(done.failed ?? 0).toBe(0);
    // Each was verified by a read of the relay, and no command was sent again.
    expect(meters.counters.commands).toBe(6);
    for (const id of r.meterIds) expect(meters.meter(id).received.map((c) => c.op)).toEqual(['read']);
  }, 90_000);
});
