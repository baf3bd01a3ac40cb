import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DlmsBusSimulator } from '../../simulators/dlms-bus.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { removePtyDir, startPtyPair, type PtyPair } from '../harness/pty-pair.js';

/**
 * DLMS meters through the gateway as an operator uses it: configured serial port, meters registered over the
 * API with their HDLC address, reconnects through the API, over a real pty to simulated DLMS meters. The
 * passwords come from configuration, never from the profile files.
 */
let pty: PtyPair;
let bus: DlmsBusSimulator;
let f: GatewayFixture;
let n = 0;
const k = () => ({ 'idempotency-key': `dlms-api-${++n}` });

beforeAll(async () => {
  pty = await startPtyPair();
  bus = new DlmsBusSimulator({
    path: pty.devicePath,
    logger: pino({ level: 'silent' }),
    meters: [
      { meterId: 'DLMS-M1', physicalAddress: 31, controlMode: 1, password: 'kam-secret-1', initialRelay: 'disconnected' },
      { meterId: 'DLMS-M2', physicalAddress: 32, controlMode: 2, password: 'lgz-secret-2', initialRelay: 'disconnected' },
    ],
  });
  await bus.start();
  f = await startGatewayFixture([{ meterId: 'MQTT-NEIGHBOUR', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }], {
    dlms: {
      ports: { 'rs485-a': { path: pty.gatewayPath, baudRate: 9600, frameRetries: 2 } },
      passwords: { 'kam-omnipower-dlms-mode1': { value: 'kam-secret-1' }, 'lgz-e570-dlms-mode2': { value: 'lgz-secret-2' } },
    },
  });
  for (const [meterId, profileId, address] of [
    ['DLMS-M1', 'kam-omnipower-dlms-mode1', '31'],
    ['DLMS-M2', 'lgz-e570-dlms-mode2', '32'],
  ] as const) {
    const res = await f.http('PUT', `/v1/meters/${meterId}`, { body: { profileId, link: 'rs485-a', region: 'north', address } });
    expect(res.status).toBe(200);
  }
}, 60_000);

afterAll(async () => {
  await f?.stop();
  await bus?.stop();
  if (pty) {
    await pty.stop();
    removePtyDir(pty);
  }
});

describe('DLMS meters through the API', () => {
  it('a control-mode-1 meter ends armed; a control-mode-2 meter ends done with the relay read back connected', async () => {
    const m1 = await f.http('POST', '/v1/meters/DLMS-M1/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'payment' } });
    const m2 = await f.http('POST', '/v1/meters/DLMS-M2/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'payment' } });
    const o1 = await f.waitForOrder(m1.body.id, undefined, 30_000);
    const o2 = await f.waitForOrder(m2.body.id, undefined, 30_000);
    expect(o1.state).toBe('armed');
    expect(o1.result).toEqual({ relay: 'armed', verified: true });
    expect(o2.state).toBe('done');
    expect(o2.result).toEqual({ relay: 'connected', verified: true });
    expect(o2.attempts[0].evidence.readBack).toContain('"controlState"');
    const meter = (await f.http('GET', '/v1/meters/DLMS-M1')).body;
    expect(meter).toMatchObject({ address: '31', link: 'rs485-a', profile: { protocol: 'dlms', remoteReconnect: 'arms' } });
    expect((await f.http('GET', '/v1/meters/DLMS-M1/supply')).body.status).toBe('armed_waiting_for_customer');
  });
});
