import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DlmsBusSimulator } from '../../simulators/dlms-bus.js';
import { ModbusRtuBus } from '../../simulators/modbus-rtu-bus.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { DlmsFirmwareProfile, FirmwareProfile } from '../../src/domain/firmware-profile.js';
import { selectBeforeOperateModule } from '../drivers/modbus-test-devices.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';

/**
 * Load limiting as an order on the serial protocols (issue 16 item 5), through the API as an operator uses it: a
 * Modbus device's demand-limit register on an RS-485 bus, and a DLMS meter's class 71 limiter on an HDLC port, each
 * over a real pty to simulated devices. The order is done only when the read-back shows the very limit asked for
 * (the Modbus register, the limiter's threshold_active), and a removal only when it shows none. The MQTT case, with
 * the rule 10 and payment interplay, is tests/e2e/limit-orders.test.ts.
 */
const modbusProfile = { ...selectBeforeOperateModule(500), id: 'test-limit-modbus' };
const shipped = loadFirmwareProfiles('firmware-profiles');
const lgz = shipped.get('lgz-e570-dlms-mode2') as DlmsFirmwareProfile;
const dlmsProfile: FirmwareProfile = { ...lgz, id: 'test-limit-dlms', dlms: { ...lgz.dlms, limiter: { logicalName: '0-0:17.0.0.255', threshold: 'normal', type: 'double-long-unsigned', scaler: 0 } } };

let modbusPty: PtyPair;
let dlmsPty: PtyPair;
let modbus: ModbusRtuBus;
let dlms: DlmsBusSimulator;
let f: GatewayFixture;
let n = 0;
const k = () => ({ 'idempotency-key': `limit-serial-${++n}` });

beforeAll(async () => {
  [modbusPty, dlmsPty] = await Promise.all([startPtyPair(), startPtyPair()]);
  modbus = new ModbusRtuBus({ path: modbusPty.devicePath, baudRate: 19_200, parity: 'none', logger: pino({ level: 'silent' }), devices: [{ unitId: 5, meterId: 'LIM-MB-5', profile: modbusProfile, initialRelay: 'connected' }] });
  dlms = new DlmsBusSimulator({
    path: dlmsPty.devicePath,
    logger: pino({ level: 'silent' }),
    meters: [{ meterId: 'LIM-DL-41', physicalAddress: 41, controlMode: 2, password: 'lgz-secret-41', initialRelay: 'connected' }],
  });
  await Promise.all([modbus.start(), dlms.start()]);
  f = await startGatewayFixture(
    [{ meterId: 'MQTT-NEIGHBOUR', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }],
    {
      modbus: { rtu: { 'feeder-lim': { path: modbusPty.gatewayPath, baudRate: 19_200, parity: 'none', dataBits: 8, stopBits: 1, frameRetries: 1, noiseGapMs: 20, reopenMs: 200 } }, tcp: {} },
      dlms: { ports: { 'rs485-lim': { path: dlmsPty.gatewayPath, baudRate: 9600, frameRetries: 2 } }, passwords: { 'test-limit-dlms': { value: 'lgz-secret-41' }, 'kam-omnipower-dlms-mode1': { value: 'unused-kam' }, 'lgz-e570-dlms-mode2': { value: 'unused-lgz' } } },
    },
    { extraProfiles: [modbusProfile, dlmsProfile] },
  );
  for (const [meterId, profileId, link, address] of [
    ['LIM-MB-5', modbusProfile.id, 'feeder-lim', '5'],
    ['LIM-DL-41', dlmsProfile.id, 'rs485-lim', '41'],
  ] as const) {
    const res = await f.http('PUT', `/v1/meters/${meterId}`, { body: { profileId, link, region: 'north', address } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }
}, 60_000);

afterAll(async () => {
  await f?.stop();
  await modbus?.stop();
  await dlms?.stop();
  for (const p of [modbusPty, dlmsPty]) {
    if (!p) continue;
    await p.stop();
    removePtyDir(p);
  }
});

/** The order once its first attempt has been judged (whatever came of it). */
async function firstAttemptJudged(orderId: string): Promise<any> {
  const until = Date.now() + 30_000;
  for (;;) {
    const o = (await f.http('GET', `/v1/orders/${orderId}`)).body;
    if (o.attempts.length >= 1 && o.attempts[0].outcome !== null) return o;
    if (Date.now() > until) throw new Error(`order ${orderId}: no attempt judged in time: ${JSON.stringify(o)}`);
    await new Promise((r) => setTimeout(r, 40));
  }
}

const cases = [
  // What the read-back evidence says of the limit: DLMS evidence is the decoded reading (JSON); Modbus evidence is the
  // frames in hex, where the register (2,500 W at scale 10 is 250, 0x00fa) sits after unit, function and byte count.
  { protocol: 'Modbus RTU (demand-limit register)', meterId: 'LIM-MB-5', simulated: () => modbus.meter('LIM-MB-5'), readBackShows: (e: string, w: number | null) => e.includes(`0302${(w === null ? 0xffff : w / 10).toString(16).padStart(4, '0')}`) },
  { protocol: 'DLMS/HDLC (class 71 limiter)', meterId: 'LIM-DL-41', simulated: () => dlms.meter('LIM-DL-41'), readBackShows: (e: string, w: number | null) => JSON.parse(e).loadLimitW === w },
];

describe.each(cases)('a limit order over $protocol', ({ meterId, simulated, readBackShows }) => {
  it('is set and verified by read-back, shows on the meter, and a removal is verified the same way; the relay stays closed', async () => {
    const set = await f.http('POST', `/v1/meters/${meterId}/limit`, { headers: k(), body: { limitW: 2500, reason: 'customer_request', reference: `REQ-${meterId}` } });
    expect(set.status, JSON.stringify(set.body)).toBe(202);
    const order = await f.waitForOrder(set.body.id, undefined, 30_000);
    expect(order.state, JSON.stringify(order.events)).toBe('done');
    expect(order.attempts[0].outcome).toBe('ok');
    expect(readBackShows(order.attempts[0].evidence.readBack, 2500), order.attempts[0].evidence.readBack).toBe(true);
    expect(simulated().loadLimitW).toBe(2500);
    expect(simulated().relay).toBe('connected');
    const view = (await f.http('GET', `/v1/meters/${meterId}`)).body;
    expect(view.loadLimit).toMatchObject({ limitW: 2500, orderId: set.body.id });

    const lift = await f.http('POST', `/v1/meters/${meterId}/limit`, { headers: k(), body: { limitW: null, reason: 'operator' } });
    expect(lift.status, JSON.stringify(lift.body)).toBe(202);
    const removal = await f.waitForOrder(lift.body.id, undefined, 30_000);
    expect(removal.state, JSON.stringify(removal.events)).toBe('done');
    expect(readBackShows(removal.attempts[0].evidence.readBack, null), removal.attempts[0].evidence.readBack).toBe(true);
    expect(simulated().loadLimitW).toBeNull();
    expect((await f.http('GET', `/v1/meters/${meterId}`)).body.loadLimit).toBeNull();
  });

  it('a device that claims the limit without keeping it is caught by the read-back', async () => {
    simulated().setFaults({ lieAboutSuccess: true });
    try {
      const set = await f.http('POST', `/v1/meters/${meterId}/limit`, { headers: k(), body: { limitW: 1800, reason: 'customer_request', reference: `REQ-LIAR-${meterId}` } });
      expect(set.status, JSON.stringify(set.body)).toBe(202);
      const o = await firstAttemptJudged(set.body.id);
      expect(o.state).not.toBe('done');
      expect(o.attempts[0].outcome).toBe('verify_mismatch');
      expect(readBackShows(o.attempts[0].evidence.readBack, null), o.attempts[0].evidence.readBack).toBe(true);
      expect(simulated().loadLimitW).toBeNull();
    } finally {
      simulated().clearFaults();
    }
  });
});
