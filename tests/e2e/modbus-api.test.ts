import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModbusTcpServer } from '../../simulators/modbus-tcp-server.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { ModbusFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * Modbus meters through the gateway as an operator uses it: a configured Modbus TCP gateway link, meters
 * registered over the API with their unit ids, switching through the API to simulated devices.
 */
let server: ModbusTcpServer;
let f: GatewayFixture;
let n = 0;
const k = () => ({ 'idempotency-key': `modbus-api-${++n}` });

beforeAll(async () => {
  const shipped = loadFirmwareProfiles('firmware-profiles');
  const breaker = shipped.get('brk-rc100-modbus-fw3.2') as ModbusFirmwareProfile;
  const meter = shipped.get('mtr-em500-modbus-fw1.4') as ModbusFirmwareProfile;
  server = new ModbusTcpServer({
    logger: pino({ level: 'silent' }),
    devices: [
      { unitId: 5, meterId: 'MB-BRK-5', profile: breaker, initialRelay: 'connected' },
      { unitId: 6, meterId: 'MB-MTR-6', profile: meter, initialRelay: 'disconnected' },
    ],
  });
  await server.start();
  f = await startGatewayFixture([{ meterId: 'MQTT-NEIGHBOUR', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }], {
    modbus: { rtu: {}, tcp: { 'sub-3-gw': { host: '127.0.0.1', port: server.port, maxConcurrent: 1, frameRetries: 1, reconnectMs: 200 } } },
  });
  for (const [meterId, profileId, address] of [
    ['MB-BRK-5', breaker.id, '5'],
    ['MB-MTR-6', meter.id, '6'],
  ] as const) {
    expect((await f.http('PUT', `/v1/meters/${meterId}`, { body: { profileId, link: 'sub-3-gw', region: 'north', address } })).status).toBe(200);
  }
}, 60_000);

afterAll(async () => {
  await f?.stop();
  await server?.stop();
});

describe('Modbus devices through the API', () => {
  it('a breaker opens on a disconnect and a meter whose reconnect only arms ends armed, both read back', async () => {
    const d = await f.http('POST', '/v1/meters/MB-BRK-5/disconnect', { headers: k(), body: { reason: 'safety', reference: 'INC-1' } });
    const r = await f.http('POST', '/v1/meters/MB-MTR-6/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'payment' } });
    const od = await f.waitForOrder(d.body.id, undefined, 30_000);
    const or = await f.waitForOrder(r.body.id, undefined, 30_000);
    expect(od).toMatchObject({ state: 'done', result: { relay: 'disconnected', verified: true } });
    expect(or).toMatchObject({ state: 'armed', result: { relay: 'armed', verified: true } });
    expect(server.meter('MB-BRK-5').relay).toBe('disconnected');
    expect(server.meter('MB-MTR-6').relay).toBe('armed');
    expect((await f.http('GET', '/v1/meters/MB-BRK-5')).body).toMatchObject({ address: '5', link: 'sub-3-gw', profile: { protocol: 'modbus' } });
  });
});
