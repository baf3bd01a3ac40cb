import { fileURLToPath } from 'node:url';
import { connectAsync, type IPublishPacket, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MeterAddress, RequestOptions } from '../../drivers/driver.js';
import { MqttDriver } from '../../drivers/mqtt/mqtt-driver.js';
import { topicFor, type MqttFirmwareProfile as FirmwareProfile } from '../../src/domain/firmware-profile.js';
import type { RelayReading } from '../../drivers/driver.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import { MqttFleet } from '../../simulators/mqtt-fleet.js';
import { startMosquitto, type MosquittoBroker } from '../harness/mosquitto.js';
import { EmbeddedBroker } from '../../src/integrations/embedded-broker.js';
import { describeDriverConformance, type DriverFixture } from './driver-conformance.js';

/** The real profiles, with test-sized timeouts. */
function testProfiles(): { closes: FirmwareProfile; arms: FirmwareProfile; all: FirmwareProfile[] } {
  const real = [...loadFirmwareProfiles(fileURLToPath(new URL('../../firmware-profiles', import.meta.url))).values()].filter((p): p is FirmwareProfile => p.protocol === 'mqtt');
  const all = real.map((p) => ({ ...p, timeouts: { commandMs: 300, readMs: 300 } }));
  const closes = all.find((p) => p.relay.remoteReconnect === 'closes');
  const arms = all.find((p) => p.relay.remoteReconnect === 'arms');
  if (!closes || !arms) throw new Error('need one closes and one arms profile in firmware-profiles/');
  return { closes, arms, all };
}

const T = 1000; // a reply through a real broker on a loaded 2-core CI machine can take a few hundred ms
let seq = 0;
function req(kind: 'cmd' | 'read' = 'read', timeoutMs = T): RequestOptions {
  const orderId = `mqtt-test-${++seq}`;
  return { correlationId: `${orderId}:1:${kind}`, orderId, timeoutMs };
}

/** Where the meter answers gateway instance gw1: its Response Topic when the firmware honours one, else its reply topic. */
function answerTopic(profile: FirmwareProfile, meterId: string): string {
  return profile.mqtt.responseTopic ? `meterline/gw1/reply/${meterId}` : topicFor(profile.mqtt.replyTopic, meterId);
}

function addr(meterId: string, profile: FirmwareProfile): MeterAddress {
  return { meterId, profile, link: 'mqtt-test', address: null };
}

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('waitFor: condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Real mosquitto + simulated fleet + driver, over MQTT 5 (shared subscriptions) or 3.1.1 (hash routing). */
const mqttFixture = (protocolVersion: 4 | 5) => async () => {
  const broker = await startMosquitto();
  const { closes, arms, all } = testProfiles();
  const fleet = new MqttFleet({
    brokerUrl: broker.url,
    protocolVersion,
    connections: 3,
    meters: [
      { meterId: 'CONF-C1', profile: closes },
      { meterId: 'CONF-A1', profile: arms },
    ],
  });
  await fleet.start();
  const driver = new MqttDriver({ brokerUrl: broker.url, protocolVersion, instanceId: 'conformance', profiles: all });
  await driver.start();
  return {
    driver,
    closesMeter: addr('CONF-C1', closes),
    armsMeter: addr('CONF-A1', arms),
    sim: (id: string) => fleet.meter(id),
    timeoutMs: T,
    carriesIds: true,
    teardown: async () => {
      await driver.stop();
      await fleet.stop();
      await broker.stop();
    },
  } satisfies DriverFixture;
};

describeDriverConformance('MQTT 5 (mosquitto + MqttFleet)', mqttFixture(5));
describeDriverConformance('MQTT 3.1.1 (mosquitto + MqttFleet)', mqttFixture(4));

describe('MqttDriver (MQTT-specific)', () => {
  const METERS = 2000;
  const { closes, arms, all } = testProfiles();
  let broker: MosquittoBroker;
  let fleet: MqttFleet;
  let driver: MqttDriver;
  const ids = Array.from({ length: METERS }, (_, i) => `MQ-${String(i + 1).padStart(6, '0')}`);
  const profileOf = (i: number) => (i % 2 === 0 ? closes : arms);

  beforeAll(async () => {
    broker = await startMosquitto();
    fleet = new MqttFleet({
      brokerUrl: broker.url,
      meters: ids.map((meterId, i) => ({ meterId, profile: profileOf(i) })),
    });
    await fleet.start();
    driver = new MqttDriver({ brokerUrl: broker.url, instanceId: 'gw1', profiles: all, maxInFlight: 200 });
    await driver.start();
  });

  afterAll(async () => {
    await driver?.stop();
    await fleet?.stop();
    await broker?.stop();
  });

  it('commands carry exp and the MQTT 5 message expiry', async () => {
    const spy: MqttClient = await connectAsync(broker.url, { protocolVersion: 5, clientId: `spy-${process.pid}-${++seq}` });
    try {
      const seen = new Promise<IPublishPacket>((res) => spy.on('message', (_t, _p, packet) => res(packet)));
      await spy.subscribeAsync(topicFor(closes.mqtt.commandTopic, ids[0]!), { qos: 1 });
      const before = Date.now();
      const r = await driver.readRelay(addr(ids[0]!, closes), req('read', 2500));
      expect(r.outcome).toBe('ok');
      const packet = await seen;
      const body = JSON.parse(packet.payload.toString()) as { exp: number; ts: number; op: string; cid: string };
      expect(body.op).toBe('read');
      expect(body.exp - body.ts).toBe(2500);
      expect(body.ts).toBeGreaterThanOrEqual(before);
      expect(packet.properties?.messageExpiryInterval).toBeLessThanOrEqual(3);
      expect(packet.properties?.messageExpiryInterval).toBeGreaterThanOrEqual(2);
    } finally {
      await spy.endAsync(true);
    }
  });

  it("a limit goes out with the profile's limitOp word and limitW; readings carry the limit in force; firmware without limitOp has none", async () => {
    expect(closes.mqtt.limitOp).toBe('limit');
    expect(arms.mqtt.limitOp).toBeUndefined();
    const meterId = ids[2]!;
    const spy: MqttClient = await connectAsync(broker.url, { protocolVersion: 5, clientId: `spy-${process.pid}-${++seq}` });
    try {
      const seen = new Promise<IPublishPacket>((res) => spy.on('message', (_t, _p, packet) => res(packet)));
      await spy.subscribeAsync(topicFor(closes.mqtt.commandTopic, meterId), { qos: 1 });
      const set = await driver.setLoadLimit(addr(meterId, closes), 2500, req('cmd', 2500));
      expect(set).toMatchObject({ outcome: 'ok', value: { claimedLimitW: 2500 } });
      expect(JSON.parse((await seen).payload.toString())).toMatchObject({ op: 'limit', limitW: 2500 });
    } finally {
      await spy.endAsync(true);
    }
    expect(fleet.meter(meterId).loadLimitW).toBe(2500);
    const read = await driver.readRelay(addr(meterId, closes), req('read', 2500));
    expect(read).toMatchObject({ outcome: 'ok', value: { relay: 'connected', loadLimitW: 2500 } });
    const lifted = await driver.setLoadLimit(addr(meterId, closes), null, req('cmd', 2500));
    expect(lifted).toMatchObject({ outcome: 'ok', value: { claimedLimitW: null } });
    expect(fleet.meter(meterId).loadLimitW).toBeNull();

    const other = ids[1]!; // an arms profile: no limiter
    const published = driver.counters.published;
    const none = await driver.setLoadLimit(addr(other, arms), 1000, req('cmd'));
    expect(none.outcome).toBe('nack');
    expect(driver.counters.published).toBe(published);
    const plain = await driver.readRelay(addr(other, arms), req('read', 2500));
    expect(plain.outcome).toBe('ok');
    if (plain.outcome === 'ok') expect('loadLimitW' in plain.value).toBe(false);
  });

  it('reports status published by a meter whose customer pressed the button', async () => {
    const id = ids[1]!; // arms profile
    const sim = fleet.meter(id);
    sim.setRelay('armed');
    const reports: Array<{ meterId: string; reading: RelayReading; evidence: string }> = [];
    driver.onStatusReport((meterId, reading, evidence) => {
      if (meterId === id) reports.push({ meterId, reading, evidence });
    });
    sim.pressButton();
    await waitFor(() => reports.length > 0, 3000);
    expect(reports[0]!.reading.relay).toBe('connected');
    expect(reports[0]!.evidence).toContain('"ON"');
  });

  it('two driver instances with the same instanceId get different client ids and both work at once', async () => {
    const a = new MqttDriver({ brokerUrl: broker.url, instanceId: 'twin', profiles: all });
    const b = new MqttDriver({ brokerUrl: broker.url, instanceId: 'twin', profiles: all });
    try {
      expect(a.clientId).not.toBe(b.clientId);
      expect(a.clientId).toMatch(/^meterline-twin-[0-9a-f]+$/);
      await Promise.all([a.start(), b.start()]);
      for (let round = 0; round < 3; round++) {
        const [ra, rb] = await Promise.all([
          a.readRelay(addr(ids[2]!, closes), req()),
          b.readRelay(addr(ids[3]!, arms), req()),
        ]);
        expect(ra.outcome).toBe('ok');
        expect(rb.outcome).toBe('ok');
      }
      expect(a.connected && b.connected).toBe(true);
      expect(a.counters.connects).toBe(1); // never kicked off by a client-id takeover
      expect(b.counters.connects).toBe(1);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('several instances: a reply reaches only the instance that asked (Response Topic firmware); fixed-topic replies reach all, and only the asker takes them', async () => {
    expect(closes.mqtt.responseTopic).toBe(true);
    expect(arms.mqtt.responseTopic).toBe(false);
    const a = new MqttDriver({ brokerUrl: broker.url, instanceId: 'inst-a', profiles: all, sharedGroup: 'g1' });
    const b = new MqttDriver({ brokerUrl: broker.url, instanceId: 'inst-b', profiles: all, sharedGroup: 'g1' });
    try {
      await Promise.all([a.start(), b.start()]);
      for (let i = 0; i < 10; i++) expect((await a.readRelay(addr(ids[2]!, closes), req())).outcome).toBe('ok');
      expect(a.counters.replies).toBe(10);
      expect(b.counters.replies).toBe(0);
      for (let i = 0; i < 10; i++) expect((await a.readRelay(addr(ids[3]!, arms), req())).outcome).toBe('ok');
      await waitFor(() => b.counters.unknownCidReplies === 10, 2000);
      expect(a.counters.ok).toBe(20);
      expect(b.counters.ok).toBe(0);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('Response Topic firmware that answers on its fixed reply topic instead (MQTT 3.1.1, or MQTT 5 ignoring the property) is heard', async () => {
    expect(closes.mqtt.responseTopic).toBe(true);
    const meterId = 'FIXED-REPLY-1';
    // A meter of its own, not the simulator: MQTT 3.1.1, so it cannot even see the Response Topic.
    const meter: MqttClient = await connectAsync(broker.url, { protocolVersion: 4, clientId: `fixed-reply-meter-${process.pid}-${++seq}` });
    try {
      let relay = closes.mqtt.relayValues.connected;
      meter.on('message', (_topic, payload) => {
        const cmd = JSON.parse(payload.toString()) as { cid: string; op: string };
        if (cmd.op === 'disconnect') relay = closes.mqtt.relayValues.disconnected;
        if (cmd.op === 'reconnect') relay = closes.mqtt.relayValues.connected;
        void meter.publishAsync(topicFor(closes.mqtt.replyTopic, meterId), JSON.stringify({ cid: cmd.cid, result: 'ok', relay, ts: Date.now() }), { qos: 1 });
      });
      await meter.subscribeAsync(topicFor(closes.mqtt.commandTopic, meterId), { qos: 1 });
      const cmd = await driver.operateRelay(addr(meterId, closes), 'disconnect', req('cmd', 2000));
      expect(cmd.outcome).toBe('ok');
      const read = await driver.readRelay(addr(meterId, closes), req('read', 2000));
      expect(read.outcome === 'ok' && read.value.relay).toBe('disconnected');
    } finally {
      await meter.endAsync(true);
    }
  });

  it('several instances in one shared-subscription group: each status report is handled by exactly one of them', async () => {
    const a = new MqttDriver({ brokerUrl: broker.url, instanceId: 'share-a', profiles: all, sharedGroup: 'g2' });
    const b = new MqttDriver({ brokerUrl: broker.url, instanceId: 'share-b', profiles: all, sharedGroup: 'g2' });
    const heard: string[] = [];
    a.onStatusReport((meterId) => meterId === ids[5] && heard.push('a'));
    b.onStatusReport((meterId) => meterId === ids[5] && heard.push('b'));
    const raw = await connectAsync(broker.url, { protocolVersion: 5, clientId: `raw-${process.pid}-${++seq}` });
    try {
      await Promise.all([a.start(), b.start()]);
      for (let i = 0; i < 40; i++) await raw.publishAsync(topicFor(closes.mqtt.statusTopic, ids[5]!), JSON.stringify({ relay: 'connected', ts: i }), { qos: 1 });
      await waitFor(() => heard.length >= 40, 3000);
      await new Promise((r) => setTimeout(r, 200)); // a duplicate would arrive about now
      expect(heard).toHaveLength(40);
      expect(heard.filter((h) => h === 'a').length).toBeGreaterThan(0);
      expect(heard.filter((h) => h === 'b').length).toBeGreaterThan(0);
    } finally {
      await raw.endAsync(true);
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('requests with different timeouts each time out at their own deadline, however they were sent', async () => {
    // Two silent meters: a long-timeout read sent first must not hold back a short one sent after it, nor the short one
    // end the long one early; a third, answered, meter's read is unaffected by either.
    const [a, b, c] = [ids[10]!, ids[12]!, ids[14]!];
    fleet.meter(a).offlineUntil(Number.MAX_SAFE_INTEGER);
    fleet.meter(b).offlineUntil(Number.MAX_SAFE_INTEGER);
    try {
      const started = Date.now();
      const ended = (p: Promise<{ outcome: string }>) => p.then((r) => ({ outcome: r.outcome, ms: Date.now() - started }));
      const long = ended(driver.readRelay(addr(a, closes), req('read', 900)));
      const short = ended(driver.readRelay(addr(b, closes), req('read', 300)));
      const answered = ended(driver.readRelay(addr(c, closes), req('read', T)));
      const [l, s, ok] = await Promise.all([long, short, answered]);
      expect(s.outcome).toBe('timeout');
      expect(s.ms).toBeGreaterThanOrEqual(299);
      expect(s.ms).toBeLessThan(800);
      expect(l.outcome).toBe('timeout');
      expect(l.ms).toBeGreaterThanOrEqual(899);
      expect(ok.outcome).toBe('ok');
    } finally {
      fleet.meter(a).offlineUntil(0);
      fleet.meter(b).offlineUntil(0);
    }
  });

  it('a late reply to a timed-out request is not taken for the next request', async () => {
    const id = ids[4]!;
    const sim = fleet.meter(id);
    const meter = addr(id, closes);
    sim.setFaults({ lateReplyMs: 400 });
    const unknownBefore = driver.counters.unknownCidReplies;
    const first = await driver.readRelay(meter, req('read', 250)); // answered at ~400 ms, too late
    expect(first.outcome).toBe('timeout');
    // The second request is pending when the first's late reply arrives; its own reply comes at ~650 ms.
    const second = await driver.readRelay(meter, req('read', 250));
    expect(second.outcome).toBe('timeout');
    await waitFor(() => driver.counters.unknownCidReplies >= unknownBefore + 2, 2000);
    sim.clearFaults();
    const third = req('read');
    const r3 = await driver.readRelay(meter, third);
    expect(r3.outcome).toBe('ok');
    expect(r3.outcome === 'ok' && r3.evidence).toContain(third.correlationId);
  });

  it('an undecodable reply is attributed to the request waiting on that meter, with the raw payload as evidence', async () => {
    const id = ids[6]!;
    const meter = addr(id, closes);
    fleet.meter(id).offlineUntil(Number.MAX_SAFE_INTEGER); // the simulator stays silent; we answer by hand
    const raw = await connectAsync(broker.url, { protocolVersion: 5, clientId: `raw-${process.pid}-${++seq}` });
    try {
      const pending = driver.readRelay(meter, req('read', 2000));
      await waitFor(() => driver.inFlight > 0, 1000);
      const bad = '{"result":"ok","relay":"connected"}'; // no cid
      await raw.publishAsync(answerTopic(closes, id), bad, { qos: 1 });
      const r = await pending;
      expect(r.outcome).toBe('garbled');
      expect(r.outcome !== 'ok' && r.evidence).toBe(bad);
      expect(r.outcome !== 'ok' && r.detail).toMatch(/cid/);

      // A relay word outside the profile's vocabulary is garbled too.
      const o = req('read', 2000);
      const p2 = driver.readRelay(meter, o);
      await waitFor(() => driver.inFlight > 0, 1000);
      const odd = JSON.stringify({ cid: o.correlationId, result: 'ok', relay: 'HALF-OPEN' });
      await raw.publishAsync(answerTopic(closes, id), odd, { qos: 1 });
      const r2 = await p2;
      expect(r2.outcome).toBe('garbled');
      expect(r2.outcome !== 'ok' && r2.evidence).toBe(odd);
    } finally {
      fleet.meter(id).clearFaults();
      await raw.endAsync(true);
    }
  });

  it('pending requests resolve link_error when the driver stops', async () => {
    const d = new MqttDriver({ brokerUrl: broker.url, instanceId: 'stopper', profiles: all });
    await d.start();
    const id = ids[8]!;
    fleet.meter(id).offlineUntil(Number.MAX_SAFE_INTEGER);
    try {
      const pending = d.readRelay(addr(id, closes), req('read', 5000));
      await waitFor(() => d.inFlight > 0, 1000);
      await d.stop();
      const r = await pending;
      expect(r.outcome).toBe('link_error');
      expect(r.outcome !== 'ok' && r.detail).toMatch(/driver stopped/);
      const after = await d.readRelay(addr(id, closes), req());
      expect(after.outcome).toBe('link_error');
    } finally {
      fleet.meter(id).clearFaults();
    }
  });

  it(`${METERS} concurrent reads across ${METERS} meters all answer (in-flight bounded at 200)`, async () => {
    const started = Date.now();
    const results = await Promise.all(
      ids.map((id, i) => driver.readRelay(addr(id, profileOf(i)), req('read', 5000))),
    );
    const failed = results.filter((r) => r.outcome !== 'ok');
    expect(failed).toEqual([]);
    expect(driver.counters.peakInFlight).toBeLessThanOrEqual(200);
    expect(driver.counters.peakInFlight).toBeGreaterThan(1);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});

describe('MqttDriver across a broker restart', () => {
  const { closes, all } = testProfiles();
  let broker: MosquittoBroker;
  let fleet: MqttFleet;
  let driver: MqttDriver;
  const meter = addr('RS-000001', closes);

  beforeAll(async () => {
    broker = await startMosquitto();
    fleet = new MqttFleet({ brokerUrl: broker.url, connections: 2, reconnectPeriodMs: 200, meters: [{ meterId: meter.meterId, profile: closes }] });
    await fleet.start();
    driver = new MqttDriver({ brokerUrl: broker.url, instanceId: 'restart', profiles: all, reconnectPeriodMs: 200 });
    await driver.start();
  });

  afterAll(async () => {
    await driver?.stop();
    await fleet?.stop();
    await broker?.stop();
  });

  it('requests during the outage resolve link_error promptly; after the broker is back they succeed', async () => {
    expect((await driver.readRelay(meter, req())).outcome).toBe('ok');
    await broker.stop();
    await waitFor(() => !driver.connected, 5000);

    const started = Date.now();
    const during = await Promise.all([driver.readRelay(meter, req()), driver.operateRelay(meter, 'disconnect', req('cmd'))]);
    expect(during.map((r) => r.outcome)).toEqual(['link_error', 'link_error']);
    expect(Date.now() - started).toBeLessThan(100);

    await broker.start();
    await waitFor(() => driver.connected && fleet.ready, 10_000);
    // Nothing sent during the outage reached the meter later.
    expect(fleet.meter(meter.meterId).received.filter((e) => e.op === 'disconnect')).toEqual([]);
    const ack = await driver.operateRelay(meter, 'disconnect', req('cmd'));
    expect(ack.outcome).toBe('ok');
    const read = await driver.readRelay(meter, req());
    expect(read.outcome === 'ok' && read.value.relay).toBe('disconnected');
    expect(driver.counters.connects).toBeGreaterThanOrEqual(2);
  });
});

describe('MqttDriver: a meter that checks its load side (DOMAIN.md rule 14)', () => {
  const { closes } = testProfiles();
  /** The closing firmware, in a build that refuses to close onto a live load side with its own reason word. */
  const checks: FirmwareProfile = { ...closes, id: `${closes.id}-ls`, relay: { ...closes.relay, loadSideVoltageCheck: { checkedBy: 'meter', maxVoltageV: 50 } }, mqtt: { ...closes.mqtt, loadSideRefusalReasons: ['LOAD_SIDE_LIVE', 'BACKFEED'] } };
  let broker: MosquittoBroker;
  let fleet: MqttFleet;
  let driver: MqttDriver;

  beforeAll(async () => {
    broker = await startMosquitto();
    fleet = new MqttFleet({ brokerUrl: broker.url, meters: [{ meterId: 'LS-1', profile: checks, initialRelay: 'disconnected', faults: { backfeed: true } }] });
    await fleet.start();
    driver = new MqttDriver({ brokerUrl: broker.url, instanceId: 'gw1', profiles: [checks] });
    await driver.start();
  });

  afterAll(async () => {
    await driver?.stop();
    await fleet?.stop();
    await broker?.stop();
  });

  it('a read carries the load-side voltage; a close refused with the profile word is load_side_voltage with the voltage; any other refusal stays a nack', async () => {
    const read = await driver.readRelay(addr('LS-1', checks), req('read'));
    expect(read).toMatchObject({ outcome: 'ok', value: { relay: 'disconnected' } });
    if (read.outcome === 'ok') expect(read.value.loadSideVoltageV).toBeGreaterThan(200);

    const refused = await driver.operateRelay(addr('LS-1', checks), 'reconnect', req('cmd'));
    expect(refused.outcome).toBe('load_side_voltage');
    if (refused.outcome !== 'ok') expect(refused.detail).toMatch(/^meter refused to close: \d+(\.\d)? V on the load side \(reason "LOAD_SIDE_LIVE"\)$/);
    expect(JSON.parse(refused.evidence!)).toMatchObject({ result: 'nack', reason: 'LOAD_SIDE_LIVE' });
    expect(fleet.meter('LS-1').relay).toBe('disconnected');

    fleet.meter('LS-1').setFaults({ backfeed: false });
    fleet.meter('LS-1').nackCommands(1);
    const other = await driver.operateRelay(addr('LS-1', checks), 'reconnect', req('cmd'));
    expect(other).toMatchObject({ outcome: 'nack', detail: 'meter refused: command refused by meter (simulated)' });
  });
});

describe("MqttDriver: a request/reply round trip is not held by Nagle's algorithm", () => {
  // With Nagle on (the gateway's socket, the simulator's or the broker's), a packet waits for the delayed ACK of the
  // previous one: these sequential reads took 82 ms at the median with it on, 1 ms with it off everywhere. Reads a few
  // ms apart, one after another, as one meter's attempt makes them (command, then the read-back).
  const brokers = [
    { name: 'mosquitto (the harness sets set_tcp_nodelay, as docs/DEPLOYMENT.md asks)', protocolVersion: 5 as const, start: () => startMosquitto() },
    { name: 'the embedded broker (aedes)', protocolVersion: 4 as const, start: () => EmbeddedBroker.start(0) },
  ];
  for (const b of brokers) {
    it(`through ${b.name}: the median of 40 sequential reads is well under a delayed ACK`, async () => {
      const broker = await b.start();
      const { closes, all } = testProfiles();
      const fleet = new MqttFleet({ brokerUrl: broker.url, protocolVersion: b.protocolVersion, meters: [{ meterId: 'NAGLE-1', profile: closes }] });
      const driver = new MqttDriver({ brokerUrl: broker.url, protocolVersion: b.protocolVersion, instanceId: 'nagle', profiles: all });
      try {
        await fleet.start();
        await driver.start();
        const latencies: number[] = [];
        for (let i = 0; i < 40; i++) {
          const r = await driver.readRelay(addr('NAGLE-1', closes), req('read', 5000));
          expect(r.outcome).toBe('ok');
          latencies.push(r.latencyMs);
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        latencies.sort((x, y) => x - y);
        // A delayed ACK is 40 ms on Linux; 10 ms leaves room for a loaded CI machine.
        expect(latencies[20]).toBeLessThan(10);
      } finally {
        await driver.stop();
        await fleet.stop();
        await broker.stop();
      }
    });
  }
});

describe('MqttDriver: requests waiting for an in-flight slot', () => {
  const { closes } = testProfiles();
  let broker: MosquittoBroker;

  beforeAll(async () => {
    broker = await startMosquitto();
  });

  afterAll(async () => {
    await broker?.stop();
  });

  it('each waits for a slot and is then sent; a waiting request whose cid is on the wire when its slot comes fails alone', async () => {
    // No meter answers: each request ends at its own timeout, freeing its slot for the next in line.
    const driver = new MqttDriver({ brokerUrl: broker.url, instanceId: 'slots', profiles: [closes], maxInFlight: 2 });
    await driver.start();
    try {
      const meter = addr('NOBODY-1', closes);
      const long = { correlationId: 'long:1:read', orderId: 'long', timeoutMs: 1200 };
      const first = driver.readRelay(meter, long);
      const short = driver.readRelay(addr('NOBODY-2', closes), req('read', 200));
      expect(driver.hasBacklog('broker'), 'the window is full but nothing waits for it yet').toBe(false);
      const queued = [driver.readRelay(addr('NOBODY-3', closes), req('read', 200)), driver.readRelay(meter, long), driver.readRelay(addr('NOBODY-4', closes), req('read', 200))];
      expect(driver.queued).toBe(3);
      expect(driver.inFlight).toBe(2);
      expect(driver.hasBacklog('broker'), 'requests wait for the window: the control loop leases no more').toBe(true);
      // The short one's slot goes to the next in line (sent, then timed out); the cid still on the wire is refused when
      // its turn comes; the last is sent after it, in the slot the refusal gave back.
      const [third, dup, fourth] = await Promise.allSettled(queued);
      expect(third).toMatchObject({ status: 'fulfilled', value: { outcome: 'timeout' } });
      expect(dup).toMatchObject({ status: 'rejected', reason: { message: 'MqttDriver: correlation id long:1:read is already in flight' } });
      expect(fourth).toMatchObject({ status: 'fulfilled', value: { outcome: 'timeout' } });
      expect((await short).outcome).toBe('timeout');
      expect((await first).outcome).toBe('timeout');
      expect(driver.counters.published).toBe(4);
      expect(driver.counters.peakInFlight).toBe(2);
    } finally {
      await driver.stop();
    }
  });

  it('when the driver stops, the request on the wire and every waiting one end as link errors, none is sent', async () => {
    const driver = new MqttDriver({ brokerUrl: broker.url, instanceId: 'slots-stop', profiles: [closes], maxInFlight: 1 });
    await driver.start();
    const onWire = driver.readRelay(addr('NOBODY-1', closes), req('read', 5000));
    const waiting = Array.from({ length: 3000 }, (_, i) => driver.readRelay(addr(`NOBODY-W${i}`, closes), req('read', 5000)));
    expect(driver.queued).toBe(3000);
    await driver.stop();
    const results = await Promise.all([onWire, ...waiting]);
    expect(new Set(results.map((r) => `${r.outcome}: ${r.outcome === 'ok' ? '' : r.detail}`))).toEqual(new Set(['link_error: driver stopped']));
    expect(driver.counters.published).toBe(1);
  });
});
