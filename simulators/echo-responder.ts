#!/usr/bin/env node
/**
 * A plain MQTT echo responder for the raw-limit bench (`tests/bench/raw-mqtt-bench.ts`): it answers every
 * message on `meters/+/cmd` with a reply on `meters/{id}/reply` carrying the request's `cid`, and does nothing
 * else (no meter model, no validation). With `--status`, a switching command (`op` reconnect or disconnect) is also
 * followed by a status report on `meters/{id}/status`, as a simulated meter sends one when its relay moves, so that
 * the raw loop carries the same messages per order as the gateway's run. It connects the way the simulated fleet
 * does: MQTT 5, `--connections` connections (default 4) sharing one shared subscription, QoS 1 both ways.
 *
 * Usage: node dist/simulators/echo-responder.js --broker mqtt://127.0.0.1:1883 [--connections 4] [--status]
 * Prints "echo responder running" once every connection is subscribed.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { connect, type MqttClient } from 'mqtt';

const { values } = parseArgs({ options: { broker: { type: 'string' }, connections: { type: 'string' }, status: { type: 'boolean' } } });
const brokerUrl = values.broker ?? 'mqtt://127.0.0.1:1883';
const n = Number(values.connections ?? 4);
const group = `echo-${randomBytes(4).toString('hex')}`;
let replies = 0;
let statusReports = 0;

const clients: MqttClient[] = [];
let subscribed = 0;
for (let i = 0; i < n; i++) {
  const client = connect(brokerUrl, { clientId: `${group}-${i}`, protocolVersion: 5, clean: true, reconnectPeriod: 1000 });
  clients.push(client);
  client.on('connect', () => {
    client.subscribe({ [`$share/${group}/meters/+/cmd`]: { qos: 1 } }, (err) => {
      if (err) throw err;
      if (++subscribed === n) process.stdout.write('echo responder running\n');
    });
  });
  client.on('message', (topic, payload) => {
    // meters/{id}/cmd → meters/{id}/reply, same payload shape as a meter's answer.
    const meterId = topic.slice(7, -4);
    const { cid, op } = JSON.parse(payload.toString('utf8')) as { cid: string; op: string };
    replies++;
    client.publish(`meters/${meterId}/reply`, JSON.stringify({ cid, result: 'ok', relay: 'connected', voltageV: 230, energyWh: 0, ts: Date.now() }), { qos: 1 });
    if (values.status && (op === 'reconnect' || op === 'disconnect')) {
      statusReports++;
      client.publish(`meters/${meterId}/status`, JSON.stringify({ relay: 'connected', voltageV: 230, energyWh: 0, ts: Date.now() }), { qos: 1 });
    }
  });
}

const stop = () => {
  process.stderr.write(`echo responder: ${replies} replies, ${statusReports} status reports\n`);
  Promise.all(clients.map((c) => c.endAsync(true))).then(() => process.exit(0), () => process.exit(1));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
