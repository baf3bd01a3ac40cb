import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttFleet } from '../../simulators/mqtt-fleet.js';
import { startSlowFleet, waitHealthy } from '../harness/fault-run.js';
import { startMosquitto, type MosquittoBroker } from '../harness/mosquitto.js';
import { emptyWal, mountSmallDisk, type SmallDisk } from '../harness/small-disk.js';
import { eventually, prepareStartupRun, type StartupRun } from '../harness/startup-run.js';

/**
 * The disk under the SQLite file fills up while an order is on the wire. The store is on a tmpfs of its own (16 MiB;
 * mounting needs root, as CI runs), filled with a plain file until the kernel says ENOSPC. Writes must answer 503
 * E_STORE_UNAVAILABLE with Retry-After (not 500 E_INTERNAL), /healthz must be degraded naming the store, and the
 * order that was on the wire must complete promptly once space is freed (not a whole 30 s lease later).
 */
let disk: SmallDisk | undefined;
let broker: MosquittoBroker;
let fleet: MqttFleet;
let run: StartupRun;

beforeAll(async () => {
  disk = mountSmallDisk(16);
  broker = await startMosquitto();
  run = await prepareStartupRun({ name: 'disk-full', count: 4, mqttUrl: broker.url, dir: disk.dir });
  // Replies 400 ms late: an attempt (command, then read-back) is on the wire for about 0.8 s.
  fleet = await startSlowFleet({ brokerUrl: broker.url, seed: run.seed, profiles: run.profiles, lateReplyMs: 400 });
}, 60_000);

afterAll(async () => {
  await run?.gateway.stop();
  await fleet?.stop();
  await broker?.stop();
  disk?.unmount();
});

describe('disk full under the SQLite store', () => {
  it('writes answer 503 E_STORE_UNAVAILABLE with Retry-After, /healthz is degraded; once space is freed the order on the wire completes at once', async () => {
    run.gateway.start();
    await waitHealthy(run.port, 30_000, 'gateway', () => (run.gateway.running ? null : run.gateway.stderr.slice(-2000)));
    const [meterA, meterB] = run.meterIds;
    const order = async (meterId: string, key: string) =>
      run.request(`/v1/meters/${meterId}/reconnect`, { method: 'POST', headers: { 'idempotency-key': key }, body: JSON.stringify({ reason: 'payment' }) });

    const a = await order(meterA!, 'disk-full-a');
    expect(a.status, JSON.stringify(a.body)).toBe(202);
    await eventually('order A on the wire', async () => ((await run.request(`/v1/orders/${a.body.id}`)).body.state === 'in_flight' ? true : undefined), 10_000, 5);

    // The disk fills while A is on the wire (the WAL emptied first, so that the gateway's next write must grow a file).
    await emptyWal(run.sqlitePath);
    disk!.fill();

    const b = await order(meterB!, 'disk-full-b');
    expect(b.status, JSON.stringify(b.body)).toBe(503);
    expect(b.body.code).toBe('E_STORE_UNAVAILABLE');
    expect(b.body.message).toContain(run.sqlitePath);
    expect(b.body.message).toMatch(/disk is full/);
    expect(Number(b.headers.get('retry-after'))).toBeGreaterThan(0);

    const health = await run.request('/healthz');
    expect(health.status).toBe(200);
    expect(health.body.status).toBe('degraded');
    expect(health.body.checks.store).toBe(false);
    const storeProblem = health.body.problems.find((p: { check: string }) => p.check === 'store');
    expect(storeProblem.detail).toContain(run.sqlitePath);

    // A's attempt has ended on the wire by now, but its result cannot be written: it is still in flight.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await run.request(`/v1/orders/${a.body.id}`)).body.state).toBe('in_flight');

    // Space comes back: A completes at once, well inside its 30 s lease, and the store is healthy again.
    disk!.free();
    const freedAt = Date.now();
    const doneA = await eventually(
      'order A done',
      async () => {
        const o = (await run.request(`/v1/orders/${a.body.id}`)).body;
        return o.state === 'done' ? o : undefined;
      },
      30_000,
      50,
    );
    const tookMs = Date.now() - freedAt;
    console.log(`disk full: the order on the wire was done ${tookMs} ms after space was freed (its lease: 30,000 ms)`);
    expect(tookMs).toBeLessThan(5000);
    expect(doneA.attempts).toHaveLength(1);
    expect(fleet.meter(meterA!).relay).toBe('connected');
    await eventually('/healthz ok', async () => ((await run.request('/healthz')).body.status === 'ok' ? true : undefined), 15_000);

    // The refused write goes through when retried.
    const again = await order(meterB!, 'disk-full-b');
    expect(again.status, JSON.stringify(again.body)).toBe(202);
    // (B's meter is a prepayment meter whose remote reconnect only arms the relay.)
    await eventually('order B ended verified', async () => (['done', 'armed'].includes((await run.request(`/v1/orders/${again.body.id}`)).body.state) ? true : undefined), 20_000);
    expect(run.gateway.stderr).not.toContain('E_INTERNAL');
  }, 120_000);
});
