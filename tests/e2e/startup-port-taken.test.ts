import { createServer, type Server } from 'node:net';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttFleet } from '../../simulators/mqtt-fleet.js';
import { startSlowFleet, waitHealthy } from '../harness/fault-run.js';
import { startMosquitto, type MosquittoBroker } from '../harness/mosquitto.js';
import { eventually, leaveWorkInStore, prepareStartupRun, receivedByFleet, type StartupRun } from '../harness/startup-run.js';

/**
 * A start that cannot bind its API port must not have switched meters first. The store holds work a gateway acts on
 * at once (queued reconnects, and orders an earlier run left on the wire, which a start verifies by a read); the API
 * port is taken by another process. The gateway must exit non-zero naming the port, and the meters must have
 * received nothing. Once the port is free, the same store starts and the work gets done (the meters do answer).
 */
const COUNT = 20;

let broker: MosquittoBroker;
let run: StartupRun;
let fleet: MqttFleet;
let blocker: Server | undefined;

beforeAll(async () => {
  broker = await startMosquitto();
  run = await prepareStartupRun({ name: 'port-taken', count: COUNT, mqttUrl: broker.url });
  await leaveWorkInStore(run, COUNT / 2);
  fleet = await startSlowFleet({ brokerUrl: broker.url, seed: run.seed, profiles: run.profiles, lateReplyMs: 0 });
}, 60_000);

afterAll(async () => {
  await new Promise((r) => (blocker ? blocker.close(r) : r(undefined)));
  await run?.gateway.stop();
  await fleet?.stop();
  await broker?.stop();
});

describe('start-up with the API port taken', () => {
  it('exits non-zero with a message naming the port, and no meter received any command or read', async () => {
    blocker = createServer();
    await new Promise<void>((resolve) => blocker!.listen(run.port, '127.0.0.1', resolve));

    run.gateway.start();
    const exit = await run.gateway.exited();
    expect(exit.code, run.gateway.stderr).not.toBe(0);
    expect(exit.code).not.toBeNull();
    expect(run.gateway.stderr).toContain('E_PORT_IN_USE');
    expect(run.gateway.stderr).toContain(`api.port ${run.port}`);
    // Give anything sent late a chance to arrive before judging.
    await new Promise((r) => setTimeout(r, 500));
    expect(receivedByFleet(fleet)).toEqual([]);
    // The failed start changed nothing: the orders are as the earlier run left them.
    const db = new Database(run.sqlitePath, { readonly: true });
    try {
      expect(db.prepare(`SELECT state, COUNT(*) AS n FROM orders GROUP BY state ORDER BY state`).all()).toEqual([
        { state: 'in_flight', n: COUNT / 2 },
        { state: 'queued', n: COUNT / 2 },
      ]);
    } finally {
      db.close();
    }

    // The control: with the port free, the same store starts, and every order is done by commands the meters answer.
    await new Promise((r) => blocker!.close(r));
    blocker = undefined;
    run.gateway.start();
    await waitHealthy(run.port, 30_000, 'gateway', () => (run.gateway.running ? null : `gateway exited: ${run.gateway.stderr.slice(-2000)}`));
    await eventually(
      'every order done',
      async () => {
        const s = (await run.request('/v1/queue')).body.byState as Record<string, number>;
        return (s.done ?? 0) + (s.armed ?? 0) === COUNT ? s : undefined;
      },
      60_000,
    );
    expect(receivedByFleet(fleet).filter((c) => c.op !== 'read').length).toBeGreaterThanOrEqual(COUNT / 2);
  }, 120_000);
});
