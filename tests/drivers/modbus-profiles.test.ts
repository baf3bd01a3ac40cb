import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MeterAddress, RequestOptions } from '../../drivers/driver.js';
import { createModbusDriver, type ModbusDriver } from '../../drivers/modbus/index.js';
import { FunctionCode } from '../../drivers/modbus/modbus-codes.js';
import { readRequest } from '../../drivers/modbus/modbus-pdu.js';
import { decodeNumber } from '../../drivers/modbus/register-values.js';
import type { ModbusFirmwareProfile } from '../../src/domain/firmware-profile.js';
import type { RtuBusDeviceSpec } from '../../simulators/modbus-rtu-bus.js';
import { ModbusRtuBus } from '../../simulators/modbus-rtu-bus.js';
import { ModbusTcpServer } from '../../simulators/modbus-tcp-server.js';
import type { ModbusSimDevice } from '../../simulators/modbus-device.js';
import type { SimulatedMeter } from '../../simulators/meter-model.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';
import { describeDriverConformance, type DriverFixture } from './driver-conformance.js';
import { modbusTestProfiles } from './modbus-fixtures.js';
import { profileDevices, REFUSED_CLOSE_EXCEPTION } from './modbus-test-devices.js';

/**
 * The profile format against devices built from real data sheets and a test relay module, over a real pty (RTU) and
 * real TCP: each device is switched and verified by read-back, and each fault the format has to survive (the status
 * word's other bits, a command with the wrong function code, an operate without its unlock, a refused close) is a
 * simulator fault, not a mock.
 */

const T = 400;
const { nsx, wl, dv300, sbo, sboStatusBit, all } = profileDevices(T);
let seq = 0;
function req(kind: 'cmd' | 'read' = 'read'): RequestOptions {
  const orderId = `profiles-${++seq}`;
  return { correlationId: `${orderId}:1:${kind}`, orderId, timeoutMs: T, attempt: 1 };
}

/** The devices every transport below carries, by unit id. */
const DEVICES: Array<[number, string, ModbusFirmwareProfile]> = [
  [3, 'NSX-3', nsx],
  [4, 'WL-4', wl],
  [5, 'SBO-5', sbo],
  [6, 'DV-6', dv300],
  [7, 'SBS-7', sboStatusBit],
];
const specs = (): RtuBusDeviceSpec[] => DEVICES.map(([unitId, meterId, profile]) => ({ unitId, meterId, profile, initialRelay: 'connected', initialEnergyWh: 123_456_789_012 }));

interface Rig {
  driver: ModbusDriver;
  at(unitId: number): MeterAddress;
  meter(unitId: number): SimulatedMeter;
  device(unitId: number): ModbusSimDevice;
}

/** The same cases over RTU (a pty) and TCP. */
function profileCases(name: string, rig: () => Rig): void {
  describe(name, () => {
    it('a breaker whose relay is bit 0 of a status word is switched and verified, whatever the other bits show', async () => {
      const { driver, at, meter, device } = rig();
      device(3).faults.statusNoise = true; // SD / SDE and reserved bits change on every read
      const raw = device(3).answer(readRequest(FunctionCode.READ_HOLDING_REGISTERS, 562, 1), Date.now());
      expect(raw.kind === 'pdu' && raw.pdu.readUInt16BE(2) & 0xfffe).toBeGreaterThan(0); // the word is not just 0 or 1
      expect(await driver.operateRelay(at(3), 'disconnect', req('cmd'))).toMatchObject({ outcome: 'ok', value: { claimedRelay: 'disconnected' } });
      expect(meter(3).relay).toBe('disconnected');
      for (let i = 0; i < 3; i++) expect(await driver.readRelay(at(3), req())).toMatchObject({ outcome: 'ok', value: { relay: 'disconnected' } });
      expect(await driver.operateRelay(at(3), 'reconnect', req('cmd'))).toMatchObject({ outcome: 'ok', value: { claimedRelay: 'connected' } });
      expect(await driver.readRelay(at(3), req())).toMatchObject({ outcome: 'ok', value: { relay: 'connected' } });
      device(3).faults.statusNoise = false;
    });

    it('the FC16-only breaker refuses a function 06 write to its command block: a profile error, nothing moves', async () => {
      const { driver, at, meter } = rig();
      const fc06 = { ...nsx, id: 'nsx-written-with-fc06', modbus: { ...nsx.modbus, relayCommand: { kind: 'holdingRegister' as const, address: 7999, values: { disconnect: 904, reconnect: 905 } } } };
      const r = await driver.operateRelay({ ...at(3), profile: fc06 }, 'disconnect', req('cmd'));
      expect(r).toMatchObject({ outcome: 'nack', detail: expect.stringMatching(/^profile error: device does not support function 0x06/) });
      expect(meter(3).relay).toBe('connected');
    });

    it('a breaker read from two status inputs and commanded by two control bits (FC15) is switched and verified', async () => {
      const { driver, at, meter } = rig();
      expect(await driver.operateRelay(at(4), 'disconnect', req('cmd'))).toMatchObject({ outcome: 'ok', value: { claimedRelay: 'disconnected' } });
      expect(await driver.readRelay(at(4), req())).toMatchObject({ outcome: 'ok', value: { relay: 'disconnected' } });
      expect(await driver.operateRelay(at(4), 'reconnect', req('cmd'))).toMatchObject({ outcome: 'ok', value: { claimedRelay: 'connected' } });
      expect(await driver.readRelay(at(4), req())).toMatchObject({ outcome: 'ok', value: { relay: 'connected' } });
      expect(meter(4).relay).toBe('connected');
    });

    it('a meter relay on a coil (FC05 / FC01) is switched and verified', async () => {
      const { driver, at, meter } = rig();
      expect(await driver.operateRelay(at(6), 'disconnect', req('cmd'))).toMatchObject({ outcome: 'ok', value: { claimedRelay: 'disconnected' } });
      expect(await driver.readRelay(at(6), req())).toMatchObject({ outcome: 'ok', value: { relay: 'disconnected' } });
      expect(meter(6).relay).toBe('disconnected');
    });

    it('an unlock-then-command module is switched and verified; the command without its unlock, or after the unlock expired, is refused', async () => {
      const { driver, at, meter, device } = rig();
      expect(await driver.operateRelay(at(5), 'disconnect', req('cmd'))).toMatchObject({ outcome: 'ok', value: { claimedRelay: 'disconnected' } });
      expect(await driver.readRelay(at(5), req())).toMatchObject({ outcome: 'ok', value: { relay: 'disconnected' } });

      const operateOnly = { ...sbo, id: 'sbo-without-unlock', modbus: { ...sbo.modbus, relayCommand: { kind: 'sequence' as const, steps: [sbo.modbus.relayCommand.kind === 'sequence' ? sbo.modbus.relayCommand.steps[1]! : never()] } } };
      const bare = await driver.operateRelay({ ...at(5), profile: operateOnly }, 'reconnect', req('cmd'));
      expect(bare).toMatchObject({ outcome: 'nack', detail: expect.stringMatching(/exception 0x03 \(illegal data value\) to function 0x06/) });
      expect(meter(5).relay).toBe('disconnected');

      device(5).selectWindowMs = 10; // shorter than the profile's 30 ms wait after the unlock
      const late = await driver.operateRelay(at(5), 'reconnect', req('cmd'));
      expect(late).toMatchObject({ outcome: 'nack', detail: expect.stringMatching(/^step 2 of 2 \(function 0x06 at address 101\): device answered exception 0x03/) });
      expect(meter(5).relay).toBe('disconnected');
      device(5).selectWindowMs = 5000;

      device(5).busyReplies(1); // the unlock itself is refused
      expect(await driver.operateRelay(at(5), 'reconnect', req('cmd'))).toMatchObject({ outcome: 'nack', detail: 'step 1 of 2 (function 0x06 at address 100): device busy, retry later' });

      expect(await driver.operateRelay(at(5), 'reconnect', req('cmd'))).toMatchObject({ outcome: 'ok', value: { claimedRelay: 'connected' } });
      expect(await driver.readRelay(at(5), req())).toMatchObject({ outcome: 'ok', value: { relay: 'connected' } });
    });

    it('float64 voltage (words reversed, bytes swapped) and a uint64 energy register in mWh read true', async () => {
      const { driver, at, meter } = rig();
      const r = await driver.readRelay(at(5), req());
      expect(r.outcome).toBe('ok');
      if (r.outcome !== 'ok') return;
      expect(r.value.voltageV).toBeGreaterThan(225);
      expect(r.value.voltageV).toBeLessThan(235);
      // 123,456,789,012 Wh is 123,456,789,012,000 mWh: beyond 2^32, read exactly through BigInt.
      expect(r.value.energyWh).toBe(meter(5).energyWh);
      expect(r.value.energyWh).toBeGreaterThanOrEqual(123_456_789_012);
    });

    it('the swapped-bytes fault serves the registers as a device set up the other way: they decode with the opposite byte order', async () => {
      const { device } = rig();
      const v = sbo.modbus.voltageV!;
      device(5).faults.swappedBytes = true;
      const a = device(5).answer(readRequest(FunctionCode.READ_INPUT_REGISTERS, v.address, 4), Date.now());
      device(5).faults.swappedBytes = false;
      expect(a.kind).toBe('pdu');
      if (a.kind !== 'pdu') return;
      const words = [0, 1, 2, 3].map((i) => a.pdu.readUInt16BE(2 + i * 2));
      expect(decodeNumber(words, { ...v, byteOrder: 'bigEndian' })).toBeGreaterThan(225);
      expect(decodeNumber(words, { ...v, byteOrder: 'bigEndian' })).toBeLessThan(235);
      expect(decodeNumber(words, v)).not.toBeCloseTo(230, -1);
    });

    it('a demand limit is set, read back, and removed (the register then holds its "no limit" value)', async () => {
      const { driver, at, meter } = rig();
      expect(await driver.setLoadLimit(at(5), 2300, req('cmd'))).toMatchObject({ outcome: 'ok', value: { claimedLimitW: 2300 } });
      expect(meter(5).loadLimitW).toBe(2300);
      expect(await driver.readRelay(at(5), req())).toMatchObject({ outcome: 'ok', value: { loadLimitW: 2300 } });
      expect(await driver.setLoadLimit(at(5), null, req('cmd'))).toMatchObject({ outcome: 'ok', value: { claimedLimitW: null } });
      expect(meter(5).loadLimitW).toBeNull();
      expect(await driver.readRelay(at(5), req())).toMatchObject({ outcome: 'ok', value: { loadLimitW: null } });
      // 700 kW does not fit a uint16 register of 10 W steps; nothing is written.
      expect(await driver.setLoadLimit(at(5), 700_000, req('cmd'))).toMatchObject({ outcome: 'nack', detail: expect.stringMatching(/outside what the uint16 register at 300 holds/) });
      expect(await driver.setLoadLimit(at(3), 1000, req('cmd'))).toMatchObject({ outcome: 'nack', detail: expect.stringMatching(/has no load limiter/) });
      expect(meter(5).loadLimitW).toBeNull();
    });

    it('a close refused for voltage on the load side is load_side_voltage, by exception code or by status bit; the relay stays open', async () => {
      const { driver, at, meter } = rig();
      for (const unit of [5, 7]) {
        meter(unit).setRelay('disconnected');
        meter(unit).setFaults({ backfeed: true });
        const read = await driver.readRelay(at(unit), req());
        expect(read.outcome === 'ok' && read.value.loadSideVoltageV).toBeGreaterThan(200);
        const r = await driver.operateRelay(at(unit), 'reconnect', req('cmd'));
        expect(r.outcome).toBe('load_side_voltage');
        expect(r.outcome !== 'ok' && r.detail).toMatch(unit === 5 ? `exception 0x${REFUSED_CLOSE_EXCEPTION.toString(16)}` : /status register 212/);
        expect(meter(unit).relay).toBe('disconnected');
        meter(unit).clearFaults();
        expect(await driver.operateRelay(at(unit), 'reconnect', req('cmd'))).toMatchObject({ outcome: 'ok', value: { claimedRelay: 'connected' } });
        const after = await driver.readRelay(at(unit), req());
        expect(after).toMatchObject({ outcome: 'ok', value: { relay: 'connected' } });
      }
    });
  });
}

function never(): never {
  throw new Error('the test module is commanded by a sequence');
}

let pty: PtyPair;
let bus: ModbusRtuBus;
let rtuDriver: ModbusDriver;
let server: ModbusTcpServer;
let tcpDriver: ModbusDriver;

beforeAll(async () => {
  pty = await startPtyPair();
  bus = new ModbusRtuBus({ path: pty.devicePath, baudRate: 19_200, parity: 'none', devices: specs() });
  await bus.start();
  rtuDriver = createModbusDriver({ links: { rtu: { 'bus-p': { path: pty.gatewayPath, baudRate: 19_200, parity: 'none', frameRetries: 0 } } }, profiles: all });
  await rtuDriver.start();
  server = new ModbusTcpServer({ devices: specs() });
  await server.start();
  tcpDriver = createModbusDriver({ links: { tcp: { 'gw-p': { host: '127.0.0.1', port: server.port, maxConcurrent: 1, frameRetries: 0 } } }, profiles: all });
  await tcpDriver.start();
});

afterAll(async () => {
  await rtuDriver?.stop();
  await bus?.stop();
  await tcpDriver?.stop();
  await server?.stop();
  server?.dispose();
  await pty?.stop();
  if (pty) removePtyDir(pty);
});

const addressOn = (link: string) => (unitId: number): MeterAddress => {
  const d = DEVICES.find(([u]) => u === unitId)!;
  return { meterId: d[1], profile: d[2], link, address: String(unitId) };
};

profileCases('Modbus RTU over a pty: data-sheet profiles and the test relay module', () => ({
  driver: rtuDriver,
  at: addressOn('bus-p'),
  meter: (u) => bus.device(u).meter,
  device: (u) => bus.device(u),
}));

profileCases('Modbus TCP: data-sheet profiles and the test relay module', () => ({
  driver: tcpDriver,
  at: addressOn('gw-p'),
  meter: (u) => server.device(u).meter,
  device: (u) => server.device(u),
}));

// The whole driver contract against the unlock-then-command module (float64 / uint64 values, two-step commands)
// beside an 'arms' meter, on a pty.
describeDriverConformance('Modbus RTU: the select-before-operate module', async () => {
  const p = await startPtyPair();
  const { meter } = modbusTestProfiles(T);
  const b = new ModbusRtuBus({
    path: p.devicePath,
    baudRate: 19_200,
    parity: 'none',
    devices: [
      { unitId: 21, meterId: 'SBO-21', profile: sbo },
      { unitId: 22, meterId: 'MTR-22', profile: meter },
    ],
  });
  await b.start();
  const driver = createModbusDriver({ links: { rtu: { 'bus-c': { path: p.gatewayPath, baudRate: 19_200, parity: 'none', frameRetries: 0 } } }, profiles: [sbo, meter] });
  await driver.start();
  return {
    driver,
    closesMeter: { meterId: 'SBO-21', profile: sbo, link: 'bus-c', address: '21' },
    armsMeter: { meterId: 'MTR-22', profile: meter, link: 'bus-c', address: '22' },
    sim: (id) => b.meter(id),
    timeoutMs: T,
    carriesIds: false,
    teardown: async () => {
      await driver.stop();
      await b.stop();
      expect(b.counters.violations).toBe(0);
      await p.stop();
      removePtyDir(p);
    },
  } satisfies DriverFixture;
});
