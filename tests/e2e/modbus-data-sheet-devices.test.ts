import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModbusRtuBus } from '../../simulators/modbus-rtu-bus.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { ModbusFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';

/**
 * Breakers from the shipped data-sheet profiles on one RS-485 bus (a real pty), switched through the API as an
 * operator does: a status-word breaker commanded with an FC16 command block, and a breaker read from two status
 * inputs and commanded with FC15. The control loop's read-back is what marks the orders done.
 */
let pty: PtyPair;
let bus: ModbusRtuBus;
let f: GatewayFixture;
let n = 0;
const k = () => ({ 'idempotency-key': `modbus-sheets-${++n}` });

beforeAll(async () => {
  const shipped = loadFirmwareProfiles('firmware-profiles');
  const nsx = shipped.get('se-compactnsx-bscm-modbus') as ModbusFirmwareProfile;
  const wl = shipped.get('siemens-wl-com16-modbus') as ModbusFirmwareProfile;
  pty = await startPtyPair();
  bus = new ModbusRtuBus({
    path: pty.devicePath,
    baudRate: 19_200,
    parity: 'none',
    logger: pino({ level: 'silent' }),
    devices: [
      { unitId: 11, meterId: 'NSX-11', profile: nsx, initialRelay: 'connected' },
      { unitId: 12, meterId: 'WL-12', profile: wl, initialRelay: 'disconnected' },
    ],
  });
  await bus.start();
  bus.device(11).faults.statusNoise = true; // the trip flags and reserved bits of the status word move
  f = await startGatewayFixture([{ meterId: 'MQTT-NEIGHBOUR', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }], {
    modbus: { rtu: { 'feeder-9': { path: pty.gatewayPath, baudRate: 19_200, parity: 'none', dataBits: 8, stopBits: 1, frameRetries: 1, noiseGapMs: 20, reopenMs: 200 } }, tcp: {} },
  });
  for (const [meterId, profileId, address] of [
    ['NSX-11', nsx.id, '11'],
    ['WL-12', wl.id, '12'],
  ] as const) {
    expect((await f.http('PUT', `/v1/meters/${meterId}`, { body: { profileId, link: 'feeder-9', region: 'north', address } })).status).toBe(200);
  }
}, 60_000);

afterAll(async () => {
  await f?.stop();
  await bus?.stop();
  await pty?.stop();
  if (pty) removePtyDir(pty);
});

describe('data-sheet Modbus breakers through the API', () => {
  it('the status-word breaker opens and the FC15 breaker closes, both verified by read-back', async () => {
    const d = await f.http('POST', '/v1/meters/NSX-11/disconnect', { headers: k(), body: { reason: 'safety', reference: 'INC-7' } });
    const r = await f.http('POST', '/v1/meters/WL-12/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'payment' } });
    expect((await f.waitForOrder(d.body.id, undefined, 30_000))).toMatchObject({ state: 'done', result: { relay: 'disconnected', verified: true } });
    expect((await f.waitForOrder(r.body.id, undefined, 30_000))).toMatchObject({ state: 'done', result: { relay: 'connected', verified: true } });
    expect(bus.meter('NSX-11').relay).toBe('disconnected');
    expect(bus.meter('WL-12').relay).toBe('connected');
    expect(bus.counters.violations).toBe(0);
  });
});
