import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttFleet } from '../../simulators/mqtt-fleet.js';
import { startSlowFleet, waitHealthy } from '../harness/fault-run.js';
import { startMosquitto, type MosquittoBroker } from '../harness/mosquitto.js';
import { eventually, prepareStartupRun, type StartupRun } from '../harness/startup-run.js';

/**
 * One SQLite file serves one gateway. A second gateway started on the first one's file (another instance name,
 * another port) must refuse to start and say why, whether the first is idle or busy, and the first keeps working.
 * Ownership must not outlive its owner: after the first is killed (SIGKILL, no clean-up), the second starts at once.
 */
const COUNT = 200;

let broker: MosquittoBroker;
let fleet: MqttFleet;
let first: StartupRun;
let second: StartupRun;

/** How a start ended: exited (code), or still running and healthy after `ms` (the outcome this test forbids). */
async function startOutcome(run: StartupRun, ms: number): Promise<{ exitCode: number | null } | 'healthy'> {
  run.gateway.start();
  return Promise.race([
    run.gateway.exited().then((e) => ({ exitCode: e.code })),
    waitHealthy(run.port, ms).then(
      () => 'healthy' as const,
      () => run.gateway.exited().then((e) => ({ exitCode: e.code })),
    ),
  ]);
}

beforeAll(async () => {
  broker = await startMosquitto();
  first = await prepareStartupRun({ name: 'first', instanceId: 'gw-a', count: COUNT, mqttUrl: broker.url });
  second = await prepareStartupRun({ name: 'second', instanceId: 'gw-b', count: COUNT, mqttUrl: broker.url, dir: first.dir, sqlitePath: first.sqlitePath });
  fleet = await startSlowFleet({ brokerUrl: broker.url, seed: first.seed, profiles: first.profiles, lateReplyMs: 100 });
}, 60_000);

afterAll(async () => {
  await second?.gateway.stop();
  await first?.gateway.stop();
  await fleet?.stop();
  await broker?.stop();
});

describe('a second gateway on the same SQLite file', () => {
  it('is refused, naming the owner and PostgreSQL, while the first is idle and while it is busy; the first keeps working', async () => {
    first.gateway.start();
    await waitHealthy(first.port, 30_000, 'first gateway', () => (first.gateway.running ? null : first.gateway.stderr.slice(-2000)));

    // The first is idle.
    const idle = await startOutcome(second, 15_000);
    expect(idle, second.gateway.stderr.slice(-2000)).not.toBe('healthy');
    expect(idle).not.toEqual({ exitCode: 0 });
    expect(second.gateway.stderr).toContain('E_STORE_IN_USE');
    expect(second.gateway.stderr).toContain(first.sqlitePath);
    expect(second.gateway.stderr).toContain('instance "gw-a"');
    expect(second.gateway.stderr).toContain('PostgreSQL');

    // The first is busy: a bulk of reconnects on the wire.
    const orders = first.meterIds.map((meterId) => ({ meterId, action: 'reconnect', reason: 'payment' }));
    const created = await first.request('/v1/orders/bulk', { method: 'POST', headers: { 'idempotency-key': 'second-instance-bulk' }, body: JSON.stringify({ orders }) });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    await eventually('attempts on the wire', async () => ((await first.request('/v1/queue')).body.byState.in_flight > 0 ? true : undefined), 20_000, 20);
    second.gateway.stderr = '';
    const busy = await startOutcome(second, 15_000);
    expect(busy, second.gateway.stderr.slice(-2000)).not.toBe('healthy');
    expect(busy).not.toEqual({ exitCode: 0 });
    expect(second.gateway.stderr).toContain('E_STORE_IN_USE');

    // The first finished every order, undisturbed: no write of its own failed.
    const final = await eventually(
      'every order done',
      async () => {
        const s = (await first.request('/v1/queue')).body.byState as Record<string, number>;
        return (s.done ?? 0) + (s.armed ?? 0) === COUNT ? s : undefined;
      },
      90_000,
    );
    expect(final.failed ?? 0).toBe(0);
    expect(first.gateway.unexpectedExits).toEqual([]);
    expect(first.gateway.stderr).not.toMatch(/database is locked|E_INTERNAL|attempt crashed/);
    expect((await first.request('/healthz')).body.status).toBe('ok');
  }, 180_000);

  it('after the owner is killed (SIGKILL, nothing cleaned up), the second starts at once on the file', async () => {
    expect(first.gateway.running).toBe(true);
    await first.gateway.stop('SIGKILL');
    second.gateway.stderr = '';
    const t0 = Date.now();
    const after = await startOutcome(second, 20_000);
    expect(after, second.gateway.stderr.slice(-2000)).toBe('healthy');
    // Well under a lease (30 s): nothing waited for a stale lock to expire.
    expect(Date.now() - t0).toBeLessThan(10_000);
    const s = (await second.request('/v1/queue')).body.byState as Record<string, number>;
    expect((s.done ?? 0) + (s.armed ?? 0)).toBe(COUNT);
  }, 60_000);
});
