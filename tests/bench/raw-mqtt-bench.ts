/**
 * Raw limit (issue 9, item 3.1): a plain MQTT request/reply loop through mosquitto, with nothing of the gateway
 * in it. The requester (this process, one mqtt.js connection, MQTT 5, QoS 1) keeps at most MAX_IN_FLIGHT (500,
 * the MQTT driver's window) requests outstanding and publishes `{cid, op, ts, exp}` to `meters/{id}/cmd` with a
 * message expiry, as the driver does; a plain echo responder in a child process (`simulators/echo-responder.js`,
 * 4 connections on a shared subscription, like the simulator) answers on `meters/{id}/reply`.
 *
 * The gateway does two round trips per order (command + read-back), so the raw orders/s = round trips/s ÷ 2.
 * A simulated meter also sends a status report when its relay moves: with `status` the responder sends one after
 * each command and the requester receives it (subscribed to `meters/+/status`), so the loop carries the same five
 * messages per order as the gateway's run ("the same message count"); without it, four.
 * Run alone: `node dist/tests/bench/raw-mqtt-bench.js` (BENCH_ORDERS, default 100000 → 200,000 round trips).
 * BENCH_RAW_STATUS=0 leaves the status reports out.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { connect } from 'mqtt';
import { projectRoot } from '../../src/config/project-root.js';
import { startMosquitto } from '../harness/mosquitto.js';
import { PeerCpu, peersLine } from './peer-cpu.js';
import { fmt, isMain, machineLine, MAX_IN_FLIGHT, meterIds, pct, pinPeer, stopChild, track, waitForLine } from './bench-common.js';

export interface RawResult {
  /** MQTT messages per order: 4 (request/reply only) or 5 (with the status report). */
  messagesPerOrder: number;
  statusReports: number;
  roundTrips: number;
  wallMs: number;
  roundTripsPerS: number;
  ordersPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU µs per order of the echo responder and the broker over the loop (peer-cpu.ts). */
  peers: Record<string, number>;
}

/** `orders` orders = 2 × `orders` round trips over `meters` meter ids, window MAX_IN_FLIGHT; with `status`, a status report per order too. */
export async function runRaw(brokerUrl: string, orders: number, meters: number, status = true, brokerPid?: number): Promise<RawResult> {
  const args = [join(projectRoot(), 'dist', 'simulators', 'echo-responder.js'), '--broker', brokerUrl, ...(status ? ['--status'] : [])];
  const responder = track(spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
  }));
  pinPeer(responder.pid);
  await waitForLine(responder, 'echo responder running', 'echo responder');

  const client = connect(brokerUrl, { clientId: `raw-bench-${process.pid}`, protocolVersion: 5, clean: true, queueQoSZero: false });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await client.subscribeAsync({ 'meters/+/reply': { qos: 1 }, ...(status ? { 'meters/+/status': { qos: 1 } } : {}) });

  const ids = meterIds('R-', meters);
  const total = orders * 2; // command + read-back per order
  const pending = new Map<string, number>(); // cid → sent at
  const rtt: number[] = [];
  let sent = 0;
  let answered = 0;
  let statusReports = 0;
  const statusWanted = status ? orders : 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));

  // One request: the same payload shape and publish options as drivers/mqtt/mqtt-driver.ts.
  const send = () => {
    const i = sent++;
    const cid = `c${i}`;
    const now = Date.now();
    pending.set(cid, performance.now());
    const body = { cid, op: i % 2 === 0 ? 'reconnect' : 'read', orderId: `ord_${i >> 1}`, ts: now, exp: now + 4000 };
    client.publish(`meters/${ids[(i >> 1) % ids.length]}/cmd`, JSON.stringify(body), { qos: 1, properties: { messageExpiryInterval: 4 } });
  };
  client.on('message', (topic, payload) => {
    if (topic.endsWith('/status')) {
      JSON.parse(payload.toString('utf8')); // read, as the gateway reads a status report
      if (++statusReports === statusWanted && answered === total) done();
      return;
    }
    const { cid } = JSON.parse(payload.toString('utf8')) as { cid: string };
    const at = pending.get(cid);
    if (at === undefined) return;
    pending.delete(cid);
    rtt.push(performance.now() - at);
    answered++;
    if (sent < total) send(); // keep the window full
    else if (answered === total && statusReports === statusWanted) done();
  });

  const peers = new PeerCpu({ 'echo responder': responder.pid, mosquitto: brokerPid });
  peers.start();
  const t0 = performance.now();
  for (let i = 0; i < Math.min(MAX_IN_FLIGHT, total); i++) send();
  await finished;
  const wallMs = performance.now() - t0;
  const peerUs = peers.stop(orders);

  await client.endAsync();
  await stopChild(responder);
  const s = rtt.sort((a, b) => a - b);
  const roundTripsPerS = (total / wallMs) * 1000;
  return { messagesPerOrder: status ? 5 : 4, statusReports, roundTrips: total, wallMs, roundTripsPerS, ordersPerS: roundTripsPerS / 2, p50Ms: pct(s, 50), p99Ms: pct(s, 99), peers: peerUs };
}

export function printRaw(r: RawResult): void {
  console.log(
    `raw MQTT limit, ${r.messagesPerOrder} messages per order: ${fmt(r.roundTrips)} request/reply round trips${r.statusReports > 0 ? ` + ${fmt(r.statusReports)} status reports` : ''} (QoS 1, window ${MAX_IN_FLIGHT}, echo responder in a child process) in ` +
      `${(r.wallMs / 1000).toFixed(2)} s = ${fmt(r.roundTripsPerS)} round trips/s = ${fmt(r.ordersPerS)} orders/s equivalent ` +
      `(2 round trips per order); round trip p50 ${r.p50Ms.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(1)} ms`,
  );
  console.log(`  peers' cpu per order during the loop: ${peersLine(r.peers)}`);
}

if (isMain(import.meta.url)) {
  const orders = Number(process.env.BENCH_ORDERS ?? 100_000);
  console.log(machineLine());
  const broker = await startMosquitto();
  printRaw(await runRaw(broker.url, orders, orders, process.env.BENCH_RAW_STATUS !== '0', broker.pid()));
  await broker.stop();
  process.exit(0);
}
