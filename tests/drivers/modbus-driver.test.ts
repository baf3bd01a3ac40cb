import { SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MeterAddress, RequestOptions } from '../../drivers/driver.js';
import { createModbusDriver, type ModbusDriver } from '../../drivers/modbus/index.js';
import { encodeRtuFrame } from '../../drivers/modbus/rtu-frame.js';
import type { ModbusFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { ModbusRtuBus } from '../../simulators/modbus-rtu-bus.js';
import { ModbusTcpServer } from '../../simulators/modbus-tcp-server.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { describeDriverConformance, type DriverFixture } from './driver-conformance.js';
import { modbusTestProfiles, seededRandom, waitFor } from './modbus-fixtures.js';

const T = 300;
let seq = 0;
function req(kind: 'cmd' | 'read' = 'read', timeoutMs = T): RequestOptions {
  const orderId = `modbus-test-${++seq}`;
  return { correlationId: `${orderId}:1:${kind}`, orderId, timeoutMs, attempt: 1 };
}

function addr(meterId: string, profile: ModbusFirmwareProfile, link: string, unitId: number): MeterAddress {
  return { meterId, profile, link, address: String(unitId) };
}

// Frame retries are off in the conformance fixtures: the suite's "garbled reply" case garbles one reply and
// expects it reported, which a retry would (rightly) hide. Retries are tested on their own below.
describeDriverConformance('Modbus RTU over a pty (ModbusRtuBus)', async () => {
  const pty = await startPtyPair();
  const { breaker, meter, all } = modbusTestProfiles(T);
  const bus = new ModbusRtuBus({
    path: pty.devicePath,
    baudRate: 19_200,
    parity: 'none',
    devices: [
      { unitId: 17, meterId: 'MB-C17', profile: breaker },
      { unitId: 18, meterId: 'MB-A18', profile: meter },
    ],
  });
  await bus.start();
  const driver = createModbusDriver({ links: { rtu: { 'bus-a': { path: pty.gatewayPath, baudRate: 19_200, parity: 'none', frameRetries: 0 } } }, profiles: all });
  await driver.start();
  return {
    driver,
    closesMeter: addr('MB-C17', breaker, 'bus-a', 17),
    armsMeter: addr('MB-A18', meter, 'bus-a', 18),
    sim: (id) => bus.meter(id),
    timeoutMs: T,
    carriesIds: false,
    teardown: async () => {
      await driver.stop();
      await bus.stop();
      expect(bus.counters.violations).toBe(0);
      await pty.stop();
      removePtyDir(pty);
    },
  } satisfies DriverFixture;
});

describeDriverConformance('Modbus TCP (ModbusTcpServer on 127.0.0.1)', async () => {
  const { breaker, meter, all } = modbusTestProfiles(T);
  const server = new ModbusTcpServer({
    devices: [
      { unitId: 1, meterId: 'MT-C1', profile: breaker },
      { unitId: 2, meterId: 'MT-A2', profile: meter },
    ],
  });
  await server.start();
  const driver = createModbusDriver({ links: { tcp: { 'gw-a': { host: '127.0.0.1', port: server.port, maxConcurrent: 4, frameRetries: 0 } } }, profiles: all });
  await driver.start();
  return {
    driver,
    closesMeter: addr('MT-C1', breaker, 'gw-a', 1),
    armsMeter: addr('MT-A2', meter, 'gw-a', 2),
    sim: (id) => server.meter(id),
    timeoutMs: T,
    carriesIds: false,
    teardown: async () => {
      await driver.stop();
      await server.stop();
      server.dispose();
    },
  } satisfies DriverFixture;
});

describe('Modbus RTU driver on one bus of 8 unit ids', () => {
  const { breaker, meter, all } = modbusTestProfiles(T);
  const units = [1, 2, 3, 4, 5, 6, 7, 8];
  const profileOf = (u: number) => (u % 2 === 1 ? breaker : meter);
  let pty: PtyPair;
  let bus: ModbusRtuBus;
  let driver: ModbusDriver;
  const at = (u: number) => addr(`RB-${u}`, profileOf(u), 'bus-b', u);

  beforeAll(async () => {
    pty = await startPtyPair();
    bus = new ModbusRtuBus({
      path: pty.devicePath,
      baudRate: 19_200,
      parity: 'none',
      devices: units.map((u) => ({ unitId: u, meterId: `RB-${u}`, profile: profileOf(u) })),
    });
    await bus.start();
    driver = createModbusDriver({ links: { rtu: { 'bus-b': { path: pty.gatewayPath, baudRate: 19_200, parity: 'none', frameRetries: 6 } } }, profiles: all });
    await driver.start();
  });

  afterAll(async () => {
    await driver?.stop();
    await bus?.stop();
    await pty?.stop();
    if (pty) removePtyDir(pty);
  });

  it('keeps unit ids apart: concurrent reads each see their own meter, one frame on the bus at a time', async () => {
    const states = ['connected', 'disconnected', 'connected', 'armed', 'disconnected', 'disconnected', 'connected', 'armed'] as const;
    units.forEach((u, i) => bus.meter(`RB-${u}`).setRelay(states[i]!));
    const results = await Promise.all(units.map((u) => driver.readRelay(at(u), req())));
    expect(results.map((r) => (r.outcome === 'ok' ? r.value.relay : r.outcome))).toEqual([...states]);
    expect(bus.counters.violations).toBe(0);
  });

  it('re-sends frames whose replies are corrupted by line noise and counts them per bus', async () => {
    const before = driver.linkStatus()['bus-b']!;
    // The same bus with a noisy line (deterministic noise: the same bytes are hit on every run).
    await bus.stop();
    bus = new ModbusRtuBus({
      path: pty.devicePath,
      baudRate: 19_200,
      parity: 'none',
      devices: units.map((u) => ({ unitId: u, meterId: `RB-${u}`, profile: profileOf(u), initialRelay: 'connected' })),
      noise: { share: 0.04, on: 'replies' },
      random: seededRandom(42),
    });
    await bus.start();
    const results = [];
    for (let round = 0; round < 5; round++) results.push(...(await Promise.all(units.map((u) => driver.readRelay(at(u), req())))));
    expect(results.flatMap((r) => (r.outcome === 'ok' ? [] : [r.detail]))).toEqual([]);
    expect(results.every((r) => r.outcome === 'ok' && r.value.relay === 'connected')).toBe(true);
    const after = driver.linkStatus()['bus-b']!;
    const crc = after.crcErrors - before.crcErrors;
    const garbled = after.garbledFrames - before.garbledFrames;
    expect(bus.counters.corruptedBytes).toBeGreaterThan(0);
    expect(crc).toBeGreaterThan(0);
    expect(after.retries - before.retries).toBe(crc + garbled);
    expect(bus.counters.violations).toBe(0);
  });

  it('exception "server device busy" is a nack asking to retry later; the relay did not move', async () => {
    const sim = bus.meter('RB-3');
    sim.setRelay('connected');
    bus.device(3).busyReplies(1);
    const r = await driver.operateRelay(at(3), 'disconnect', req('cmd'));
    expect(r).toMatchObject({ outcome: 'nack', detail: 'device busy, retry later' });
    expect(r.outcome !== 'ok' && r.evidence).toMatch(/^038506[0-9a-f]{4}$/); // unit 3, fc 0x05|0x80, exception 0x06, CRC
    expect(sim.relay).toBe('connected');
    const status = driver.linkStatus()['bus-b']!;
    expect(status.exceptions['0x06']).toBeGreaterThanOrEqual(1);
    expect(driver.linkHealth().find((l) => l.link === 'bus-b')?.counters.exceptions['0x06']).toBe(status.exceptions['0x06']);
  });

  it('a register the device does not have is a profile error; a refused command names exception 0x04', async () => {
    const wrong = { ...breaker, id: 'brk-wrong-map', modbus: { ...breaker.modbus, voltageV: { ...breaker.modbus.voltageV!, address: 40 } } };
    const r = await driver.readRelay({ ...at(1), profile: wrong }, req());
    expect(r.outcome).toBe('nack');
    expect(r.outcome !== 'ok' && r.detail).toMatch(/^profile error: .*address 40/);

    bus.meter('RB-1').nackCommands(1);
    const n = await driver.operateRelay(at(1), 'disconnect', req('cmd'));
    expect(n).toMatchObject({ outcome: 'nack', detail: 'device answered exception 0x04 (server device failure) to function 0x05' });
  });

  it('a meter address that is no unit id is refused before anything is sent; an unknown link is a link error', async () => {
    const sent = driver.linkStatus()['bus-b']!.framesSent;
    const bad = await driver.readRelay({ ...at(1), address: '300' }, req());
    expect(bad).toMatchObject({ outcome: 'nack', detail: expect.stringMatching(/^profile error: meter RB-1: unit id 300 is outside 1–247/) });
    const none = await driver.readRelay({ ...at(1), address: null }, req());
    expect(none.outcome).toBe('nack');
    expect(driver.linkStatus()['bus-b']!.framesSent).toBe(sent);
    const unknown = await driver.readRelay({ ...at(1), link: 'bus-z' }, req());
    expect(unknown).toMatchObject({ outcome: 'link_error', detail: 'no Modbus link named "bus-z" is configured' });
    expect(driver.isLinkUp('bus-z')).toBe(false);
  });
});

describe('Modbus RTU driver: a reply failing its CRC, byte by byte (the test is the slave)', () => {
  const { breaker, all } = modbusTestProfiles(T);
  let pty: PtyPair;
  let driver: ModbusDriver;
  let slave: SerialPort;
  const answers: Buffer[] = [];
  const heard: string[] = [];

  beforeAll(async () => {
    pty = await startPtyPair();
    slave = new SerialPort({ path: pty.devicePath, baudRate: 19_200, autoOpen: false });
    await new Promise<void>((res, rej) => slave.open((e) => (e ? rej(e) : res())));
    let rx = Buffer.alloc(0);
    slave.on('data', (chunk: Buffer) => {
      rx = Buffer.concat([rx, chunk]);
      while (rx.length >= 8) {
        heard.push(rx.subarray(0, 8).toString('hex'));
        rx = rx.subarray(8);
        const next = answers.shift();
        if (next) slave.write(next);
      }
    });
    driver = createModbusDriver({ links: { rtu: { raw: { path: pty.gatewayPath, baudRate: 19_200, parity: 'none', frameRetries: 1 } } }, profiles: all });
    await driver.start();
  });

  afterAll(async () => {
    await driver?.stop();
    await new Promise<void>((r) => (slave?.isOpen ? slave.close(() => r()) : r()));
    await pty?.stop();
    if (pty) removePtyDir(pty);
  });

  it('re-sends the frame once and takes the good reply; the CRC error is counted on the bus', async () => {
    const goodDi = encodeRtuFrame(5, Buffer.from('020101', 'hex')); // discrete input 0 = ON (aux contact closed)
    const badDi = Buffer.from(goodDi);
    badDi[badDi.length - 1]! ^= 0xff;
    // 4 input registers: 230.7 V (2307), a gap, energy 0x0001 0x86A0 = 100,000 × 0.01 kWh.
    const regs = encodeRtuFrame(5, Buffer.from('040809030000000186a0', 'hex'));
    answers.push(badDi, goodDi, regs);
    const before = driver.linkStatus().raw!;
    const r = await driver.readRelay(addr('RAW-5', breaker, 'raw', 5), req());
    expect(r).toMatchObject({ outcome: 'ok', value: { relay: 'connected', voltageV: 230.7, energyWh: 1_000_000 } });
    expect(heard.slice(-3)).toEqual(['050200000001b84e', '050200000001b84e', '050400000004f04d']);
    const after = driver.linkStatus().raw!;
    expect(after.crcErrors - before.crcErrors).toBe(1);
    expect(after.retries - before.retries).toBe(1);
    expect(after.framesSent - before.framesSent).toBe(3);
  });

  it('gives garbled with both corrupted replies as evidence when the retry fails too', async () => {
    const bad = encodeRtuFrame(5, Buffer.from('020101', 'hex'));
    bad[3]! ^= 0x10;
    answers.push(bad, bad);
    const r = await driver.readRelay(addr('RAW-5', breaker, 'raw', 5), req());
    expect(r.outcome).toBe('garbled');
    expect(r.outcome !== 'ok' && r.detail).toMatch(/^CRC error in the reply; 2 frame\(s\) sent/);
    expect(r.outcome !== 'ok' && r.evidence).toBe(`${bad.toString('hex')} ${bad.toString('hex')}`);
  });
});

describe('Modbus RTU driver: the serial port disappears and comes back', () => {
  const { breaker, meter, all } = modbusTestProfiles(T);
  let pty: PtyPair;
  let bus: ModbusRtuBus;
  let driver: ModbusDriver;
  const at = (u: number) => addr(`PL-${u}`, u % 2 ? breaker : meter, 'bus-p', u);

  beforeAll(async () => {
    pty = await startPtyPair();
    bus = new ModbusRtuBus({ path: pty.devicePath, baudRate: 19_200, parity: 'none', reopenMs: 50, devices: [1, 2, 3, 4].map((u) => ({ unitId: u, meterId: `PL-${u}`, profile: u % 2 ? breaker : meter })) });
    await bus.start();
    // The adapter's far end (the simulated slaves) tries to reopen every 50 ms, the driver every 400 ms: when the
    // adapter is plugged back, the slaves are listening before the driver sends what it kept, as on a real bus.
    driver = createModbusDriver({ links: { rtu: { 'bus-p': { path: pty.gatewayPath, baudRate: 19_200, parity: 'none', reopenMs: 400 } } }, profiles: all });
    await driver.start();
  });

  afterAll(async () => {
    await driver?.stop();
    await bus?.stop();
    await pty?.stop();
    if (pty) removePtyDir(pty);
  });

  it('queued requests are kept while the port is gone and complete after it is reopened; new ones get link_error', async () => {
    expect(driver.isLinkUp('bus-p')).toBe(true);
    bus.meter('PL-1').offlineUntil(Number.MAX_SAFE_INTEGER);
    bus.meter('PL-2').setRelay('connected');
    // Its read holds the bus (timeout 3 s) well past the moment the port goes, however slowly the loss is noticed.
    const onWire = driver.readRelay(at(1), req('read', 3000));
    // Their timeouts run from when each goes on the wire; generous, so a loaded machine does not turn them into timeouts.
    const queued = [driver.readRelay(at(3), req('read', 2000)), driver.operateRelay(at(2), 'disconnect', req('cmd', 2000)), driver.readRelay(at(4), req('read', 2000))];
    await new Promise((r) => setTimeout(r, 30));
    await pty.stop(); // the adapter is unplugged
    await waitFor(() => !driver.isLinkUp('bus-p'), 10_000);
    const during = await driver.readRelay(at(4), req());
    expect(during).toMatchObject({ outcome: 'link_error', detail: expect.stringMatching(/is closed/) });
    expect(during.latencyMs).toBe(0);
    expect(await onWire).toMatchObject({ outcome: 'link_error', detail: expect.stringMatching(/closed during the transaction/) });
    expect(bus.meter('PL-2').relay).toBe('connected'); // nothing queued went out meanwhile

    bus.meter('PL-1').clearFaults();
    await pty.start(); // plugged back in, same path
    await waitFor(() => driver.isLinkUp('bus-p'), 3000);
    const [r3, cmd, r4] = await Promise.all(queued);
    expect(r3).toMatchObject({ outcome: 'ok', value: { relay: 'connected' } });
    expect(cmd).toMatchObject({ outcome: 'ok', value: { claimedRelay: 'disconnected' } });
    expect(r4?.outcome).toBe('ok');
    expect(bus.meter('PL-2').relay).toBe('disconnected');
    const status = driver.linkStatus()['bus-p']!;
    expect(status.losses).toBe(1);
    expect(status.opens).toBe(2);
    expect(status.up).toBe(true);
    await waitFor(() => bus.isOpen, 2000);
    expect((await driver.readRelay(at(1), req())).outcome).toBe('ok');
  });
});

describe('Modbus TCP driver specifics', () => {
  const { meter, all } = modbusTestProfiles(T);
  const units = Array.from({ length: 12 }, (_, i) => i + 1);
  let server: ModbusTcpServer;
  let driver: ModbusDriver;
  const at = (u: number) => addr(`TC-${u}`, meter, 'gw-t', u);

  beforeAll(async () => {
    server = new ModbusTcpServer({ serviceDelayMs: 40, devices: units.map((u) => ({ unitId: u, meterId: `TC-${u}`, profile: meter })) });
    await server.start();
    driver = createModbusDriver({ links: { tcp: { 'gw-t': { host: '127.0.0.1', port: server.port, maxConcurrent: 4, reconnectMs: 100 } } }, profiles: all });
    await driver.start();
  });

  afterAll(async () => {
    await driver?.stop();
    await server?.stop();
    server?.dispose();
  });

  it('runs transactions in parallel up to maxConcurrent, never more', async () => {
    const started = Date.now();
    const results = await Promise.all(units.map((u) => driver.readRelay(at(u), req('read', 2000))));
    expect(results.every((r) => r.outcome === 'ok')).toBe(true);
    expect(server.counters.peakConcurrent).toBe(4);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3 * 40 - 5); // 12 reads, 4 at a time, 40 ms each
  });

  it('an absent unit behind a gateway is a nack naming exception 0x0b', async () => {
    const r = await driver.readRelay(addr('TC-99', meter, 'gw-t', 99), req());
    expect(r).toMatchObject({ outcome: 'nack', detail: expect.stringMatching(/exception 0x0b \(gateway target device failed to respond\)/) });
  });

  it('a lost connection gives link_error at once, and is re-established without help', async () => {
    await server.stop();
    await waitFor(() => !driver.isLinkUp('gw-t'), 2000);
    expect(await driver.readRelay(at(1), req())).toMatchObject({ outcome: 'link_error', latencyMs: 0 });
    await server.start();
    await waitFor(() => driver.isLinkUp('gw-t'), 3000);
    expect((await driver.readRelay(at(1), req())).outcome).toBe('ok');
    expect(driver.linkStatus()['gw-t']).toMatchObject({ losses: 1, opens: 2 });
  });
});

describe('Modbus RTU driver: a late reply is still a reply on the line', () => {
  it('a reply landing just as its request times out gets t3.5 of silence before the next frame (the referee sees no two frames at once)', async () => {
    const { breaker, all } = modbusTestProfiles(T);
    const pty = await startPtyPair();
    const bus = new ModbusRtuBus({ path: pty.devicePath, baudRate: 19_200, parity: 'none', devices: [{ unitId: 9, meterId: 'LATE-9', profile: breaker }] });
    await bus.start();
    const driver = createModbusDriver({ links: { rtu: { late: { path: pty.gatewayPath, baudRate: 19_200, parity: 'none', frameRetries: 0 } } }, profiles: all });
    await driver.start();
    try {
      const timeoutMs = 25;
      const frameMs = (8 * 11 * 1000) / 19_200; // the request's own time on the line, added to its timeout
      // Replies timed around the driver's timeout, from a little before to a little after it: some land in the
      // same turn as the timeout, when the driver has not yet been handed the bytes.
      for (let i = 0; i < 60; i++) {
        bus.meter('LATE-9').setFaults({ lateReplyMs: timeoutMs + frameMs - 2 + (i % 12) * 0.5 });
        await driver.readRelay(addr('LATE-9', breaker, 'late', 9), req('read', timeoutMs));
      }
      await new Promise((r) => setTimeout(r, 50));
      expect(bus.counters.replies).toBeGreaterThan(50);
      expect(bus.violations).toEqual([]);
    } finally {
      await driver.stop();
      await bus.stop();
      await pty.stop();
      removePtyDir(pty);
    }
  });
});
