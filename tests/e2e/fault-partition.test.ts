import { afterEach, describe, expect, it } from 'vitest';
import { startMosquitto, type MosquittoBroker } from '../harness/mosquitto.js';
import { startTcpProxy, type CutMode, type TcpProxy } from '../harness/tcp-proxy.js';
import { judgeSqliteRun, startFaultRun, type FaultRun } from '../harness/fault-run.js';

/**
 * Fault: a network partition between the gateway and the broker. The gateway reaches mosquitto through a TCP
 * proxy that the test cuts for a few seconds in the middle of a run and then heals; the meters connect to the
 * broker directly and never notice. Three kinds of partition:
 * - refuse: connections are reset and new ones refused (RST), so the gateway knows at once its link is down;
 * - blackhole, resumed: nothing is said, bytes are held; on heal they are delivered late (TCP retransmission
 *   after a short outage), so commands written into the partition can reach meters after it;
 * - blackhole, dead: nothing is said and the connection never comes back (a NAT or firewall lost its state).
 *   Only the gateway noticing by itself (MQTT keepalive, or seeing no acknowledgement from the broker) gets it
 *   out; until it does, it believes its link is up and spends attempts on commands that go nowhere.
 */
const COUNT = 2000;
const CUT_MS = 3000;

let broker: MosquittoBroker | undefined;
let proxy: TcpProxy | undefined;
let run: FaultRun | undefined;

afterEach(async () => {
  await run?.stop();
  await proxy?.close();
  await broker?.stop();
  run = undefined;
  proxy = undefined;
  broker = undefined;
});

async function partitionRun(name: string, mode: CutMode, staleAfterHeal: 'resume' | 'dead'): Promise<void> {
  broker = await startMosquitto();
  proxy = await startTcpProxy({ port: broker.port }, { staleAfterHeal });
  run = await startFaultRun({ name, count: COUNT, links: 10, gatewayMqttUrl: proxy.url(), meterMqttUrl: broker.url, store: { kind: 'sqlite' } });
  const t0 = Date.now();
  expect(await run.submitAll()).toBe(COUNT);
  const connectionsBefore = proxy.accepted;

  const atFault = await run.waitFor('the fault point', (s) => (s.done ?? 0) + (s.armed ?? 0) >= COUNT * 0.3 && (s.in_flight ?? 0) > 0, 40_000, 20);
  const tCut = Date.now();
  proxy.cut(mode);
  // The partition lasts CUT_MS; meanwhile watch the proxy for the gateway's reconnect attempts.
  await new Promise((r) => setTimeout(r, CUT_MS));
  const triedDuringCut = proxy.accepted - connectionsBefore;
  proxy.heal();
  const tHeal = Date.now();

  const final = await run.waitAllFinal(45_000);
  const tEnd = Date.now();
  expect(run.gateway.unexpectedExits).toEqual([]);
  await run.gateway.stop();

  const verdict = judgeSqliteRun(COUNT, run.sqlitePath, run.fleet, (db) =>
    (db.prepare(`SELECT state_reason FROM orders WHERE state = 'failed' LIMIT 3`).all() as { state_reason: string }[]).map((r) => r.state_reason),
  );
  const failedReasons = verdict.extra;
  console.log(
    `[fault-partition ${name}] orders ${verdict.figures.orders}, states ${JSON.stringify(verdict.figures.byState)}, ` +
      `cut (${mode}, stale connections ${staleAfterHeal}) at ${JSON.stringify(atFault)} (${tCut - t0} ms in) for ${tHeal - tCut} ms, ` +
      `gateway connection attempts during the cut ${triedDuringCut}, ` +
      `finished ${tEnd - t0} ms after submit (${tEnd - tHeal} ms after the heal), attempts ${verdict.figures.attempts} ` +
      `${JSON.stringify(verdict.figures.outcomes)}, retries caused by the fault ${verdict.figures.retries}, late commands ${verdict.figures.lateCommands}` +
      (failedReasons.length > 0 ? `, failed e.g.: ${failedReasons.join(' | ')}` : ''),
  );
  expect(verdict.problems).toEqual([]);
  expect(final.failed ?? 0).toBe(0);
  expect((verdict.figures.byState.done ?? 0) + (verdict.figures.byState.armed ?? 0)).toBe(COUNT);
}

describe('fault: network partition between the gateway and the broker', () => {
  it('refuse (RST): the gateway sees its link down, waits, reconnects after the heal; every order ends exactly once', async () => {
    await partitionRun('refuse', 'refuse', 'resume');
  }, 90_000);

  it('blackhole, resumed on heal: held bytes arrive late; every order ends exactly once, none after its end', async () => {
    await partitionRun('blackhole-resume', 'blackhole', 'resume');
  }, 90_000);

  it('blackhole, connection dead after heal: the gateway must notice by itself and reconnect; every order ends exactly once', async () => {
    await partitionRun('blackhole-dead', 'blackhole', 'dead');
  }, 90_000);
});
