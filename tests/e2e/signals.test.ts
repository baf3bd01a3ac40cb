import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttFleet } from '../../simulators/mqtt-fleet.js';
import { judgeSqliteRun, startSlowFleet, waitHealthy } from '../harness/fault-run.js';
import { startMosquitto, type MosquittoBroker } from '../harness/mosquitto.js';
import { eventually, prepareStartupRun, type StartupRun } from '../harness/startup-run.js';

/**
 * Signals, on the built program. SIGTERM in the middle of a run drains: new work is refused with 503
 * E_SHUTTING_DOWN (Retry-After) while reads go on, /healthz says `stopping`, the attempts on the wire finish and are
 * recorded, the process logs what it did and exits 0; nothing is lost (every order ends, or stays queued and ends
 * after the next start, exactly once). SIGHUP is ignored, as documented: the process stays up and says so.
 */
const COUNT = 200;

let broker: MosquittoBroker;
let fleet: MqttFleet;
let run: StartupRun;

beforeAll(async () => {
  broker = await startMosquitto();
  // One meter more than the bulk: the probe order sent while the gateway drains goes to it.
  run = await prepareStartupRun({ name: 'signals', count: COUNT + 1, mqttUrl: broker.url, control: { linkConcurrency: 20 }, logLevel: 'info' });
  // Each reply comes 400 ms late (within the test profiles' 600 ms timeouts), so that many attempts are on the wire
  // when the signal comes, and each of them succeeds.
  fleet = await startSlowFleet({ brokerUrl: broker.url, seed: run.seed, profiles: run.profiles, lateReplyMs: 400 });
}, 60_000);

afterAll(async () => {
  await run?.gateway.stop();
  await fleet?.stop();
  await broker?.stop();
});

describe('signals', () => {
  it('SIGTERM drains: 503 for new work, reads go on, attempts on the wire finish, exit 0; nothing is lost', async () => {
    run.gateway.start();
    await waitHealthy(run.port, 30_000, 'gateway', () => (run.gateway.running ? null : run.gateway.stderr.slice(-2000)));
    const bulk = run.meterIds.slice(0, COUNT).map((meterId) => ({ meterId, action: 'reconnect', reason: 'payment' }));
    const created = await run.request('/v1/orders/bulk', { method: 'POST', headers: { 'idempotency-key': 'signals-bulk' }, body: JSON.stringify({ orders: bulk }) });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const atSignal = await eventually(
      'attempts on the wire, with work still queued',
      async () => {
        const s = (await run.request('/v1/queue')).body.byState as Record<string, number>;
        return (s.in_flight ?? 0) >= 20 && (s.queued ?? 0) > 0 ? s : undefined;
      },
      30_000,
      20,
    );

    // The orders on the wire just before the signal (an attempt that times out while the gateway drains ends as a
    // timeout and its order waits, queued, for the next start: on a starved CPU a 400 ms late reply can miss 600 ms).
    const onWire = (await run.request('/v1/orders?state=in_flight&limit=1000')).body.items.map((o: { id: string }) => o.id) as string[];
    expect(onWire.length).toBeGreaterThan(0);
    run.gateway.child!.kill('SIGTERM');
    const exit = run.gateway.exited();
    // A new order is refused while the gateway drains (one sent before the signal lands may still be admitted).
    const probe = run.meterIds[COUNT]!;
    const refused = await eventually(
      '503 E_SHUTTING_DOWN for a new order',
      async () => {
        const r = await run.request(`/v1/meters/${probe}/reconnect`, { method: 'POST', headers: { 'idempotency-key': 'signals-probe' }, body: JSON.stringify({ reason: 'payment' }) });
        return r.status === 503 ? r : undefined;
      },
      5000,
      10,
    );
    expect(refused.body.code).toBe('E_SHUTTING_DOWN');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    // Reads still answer, and the health check tells a load balancer to stop sending work here.
    const health = await run.request('/healthz');
    expect(health.status).toBe(503);
    expect(health.body.status).toBe('stopping');
    expect((await run.request('/v1/queue')).status).toBe(200);

    expect(await exit).toEqual({ code: 0, signal: null });
    const log = run.gateway.stderr;
    expect(log).toContain('SIGTERM: stopping');
    expect(log).toContain('every attempt that was on the wire finished and was recorded');
    expect(log).toContain('stopped; orders not yet started stay queued for the next start');

    // Nothing left on the wire: no order in flight, no attempt without an end; the rest is queued.
    const db = new Database(run.sqlitePath, { readonly: true });
    let byState: Record<string, number>;
    let stored: number;
    try {
      // The bulk, and the probe order if one was admitted before the signal landed.
      stored = (db.prepare(`SELECT COUNT(*) AS n FROM orders`).get() as { n: number }).n;
      expect([COUNT, COUNT + 1]).toContain(stored);
      byState = Object.fromEntries((db.prepare(`SELECT state, COUNT(*) AS n FROM orders GROUP BY state`).all() as { state: string; n: number }[]).map((r) => [r.state, r.n]));
      expect(byState.in_flight ?? 0).toBe(0);
      expect(db.prepare(`SELECT COUNT(*) AS n FROM attempts WHERE ended_at IS NULL`).get()).toEqual({ n: 0 });
      // The attempts on the wire at the signal finished and were recorded: each of those orders has an attempt with
      // an outcome, none without an end, and is done, armed, or queued again after a recorded timeout.
      const ended = db.prepare(`SELECT COUNT(*) AS n FROM attempts WHERE order_id = ? AND ended_at IS NOT NULL AND outcome IS NOT NULL`);
      const stateOf = db.prepare(`SELECT state FROM orders WHERE id = ?`);
      for (const id of onWire) {
        expect((ended.get(id) as { n: number }).n, id).toBeGreaterThan(0);
        expect(['done', 'armed', 'queued'], id).toContain((stateOf.get(id) as { state: string }).state);
      }
      expect((byState.done ?? 0) + (byState.armed ?? 0)).toBeGreaterThanOrEqual((atSignal.done ?? 0) + (atSignal.armed ?? 0));
      expect(byState.queued ?? 0).toBeGreaterThan(0);
    } finally {
      db.close();
    }

    // The next start finishes what was queued: every order ends exactly once, no command after its end.
    run.gateway.start();
    await waitHealthy(run.port, 30_000);
    await eventually(
      'every order final',
      async () => {
        const s = (await run.request('/v1/queue')).body.byState as Record<string, number>;
        return (s.done ?? 0) + (s.armed ?? 0) === stored ? s : undefined;
      },
      90_000,
    );
    await run.gateway.stop();
    const judged = judgeSqliteRun(stored, run.sqlitePath, fleet, () => null);
    expect(judged.problems).toEqual([]);
  }, 240_000);

  it('SIGHUP is ignored and logged; the gateway stays up and keeps working', async () => {
    run.gateway.stderr = '';
    run.gateway.start();
    await waitHealthy(run.port, 30_000);
    run.gateway.child!.kill('SIGHUP');
    await eventually('the SIGHUP logged', async () => (run.gateway.stderr.includes('SIGHUP ignored') ? true : undefined), 5000, 50);
    expect(run.gateway.running).toBe(true);
    expect((await run.request('/healthz')).body.status).toBe('ok');
    run.gateway.child!.kill('SIGTERM');
    expect(await run.gateway.exited()).toEqual({ code: 0, signal: null });
  }, 60_000);
});
