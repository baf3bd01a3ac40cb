import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DlmsTcpServer } from '../../simulators/dlms-tcp-server.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * DLMS meters over the TCP wrapper through the gateway, as an operator attaches a data concentrator: a `dlms.tcp`
 * link, meters registered with their logical device (wPort), reconnects through the API. While the concentrator is
 * unreachable the link is down and an order waits without spending an attempt; it goes through once the link is back.
 */
let sim: DlmsTcpServer;
let f: GatewayFixture;
let n = 0;
const k = () => ({ 'idempotency-key': `dlms-tcp-api-${++n}` });

beforeAll(async () => {
  sim = new DlmsTcpServer({
    mode: 'wrapper',
    port: 0,
    logger: pino({ level: 'silent' }),
    meters: [
      { meterId: 'DLMS-T1', physicalAddress: 31, logicalAddress: 31, controlMode: 1, password: 'kam-secret-1', initialRelay: 'disconnected' },
      { meterId: 'DLMS-T2', physicalAddress: 32, logicalAddress: 32, controlMode: 2, password: 'lgz-secret-2', initialRelay: 'disconnected' },
    ],
  });
  await sim.start();
  f = await startGatewayFixture([{ meterId: 'MQTT-NEIGHBOUR', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }], {
    dlms: {
      ports: {},
      tcp: { 'dc-1': { kind: 'wrapper', host: '127.0.0.1', port: sim.port, maxConnections: 2, connectTimeoutMs: 1000, reconnectMs: 100 } },
      passwords: { 'kam-omnipower-dlms-mode1': { value: 'kam-secret-1' }, 'lgz-e570-dlms-mode2': { value: 'lgz-secret-2' } },
    },
  });
  for (const [meterId, profileId, address] of [
    ['DLMS-T1', 'kam-omnipower-dlms-mode1', '31'],
    ['DLMS-T2', 'lgz-e570-dlms-mode2', '32'],
  ] as const) {
    const res = await f.http('PUT', `/v1/meters/${meterId}`, { body: { profileId, link: 'dc-1', region: 'north', address } });
    expect(res.status).toBe(200);
  }
}, 60_000);

afterAll(async () => {
  await f?.stop();
  await sim?.stop();
});

describe('DLMS meters over the TCP wrapper through the API', () => {
  it('a control-mode-1 meter ends armed; a control-mode-2 meter ends done with the relay read back connected', async () => {
    const m1 = await f.http('POST', '/v1/meters/DLMS-T1/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'payment' } });
    const m2 = await f.http('POST', '/v1/meters/DLMS-T2/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'payment' } });
    const o1 = await f.waitForOrder(m1.body.id, undefined, 30_000);
    const o2 = await f.waitForOrder(m2.body.id, undefined, 30_000);
    expect(o1.state).toBe('armed');
    expect(o1.result).toEqual({ relay: 'armed', verified: true });
    expect(o2.state).toBe('done');
    expect(o2.result).toEqual({ relay: 'connected', verified: true });
    expect(o2.attempts[0].evidence.readBack).toContain('"controlState"');
    expect(sim.meter('DLMS-T2').relay).toBe('connected');
  });

  it('while the concentrator is unreachable an order waits without spending attempts, and goes through when it is back', async () => {
    sim.meter('DLMS-T2').setRelay('disconnected');
    await sim.suspend();
    const res = await f.http('POST', '/v1/meters/DLMS-T2/reconnect', { key: f.billingKey, headers: k(), body: { reason: 'payment' } });
    expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
    await new Promise((r) => setTimeout(r, 1500));
    const waiting = (await f.http('GET', `/v1/orders/${res.body.id}`)).body;
    expect(waiting.state).toBe('queued');
    expect(waiting.attempts).toEqual([]);
    expect(sim.meter('DLMS-T2').relay).toBe('disconnected');
    await sim.resume();
    const done = await f.waitForOrder(res.body.id, undefined, 30_000);
    expect(done.state).toBe('done');
    expect(done.result).toEqual({ relay: 'connected', verified: true });
    expect(sim.meter('DLMS-T2').relay).toBe('connected');
  });
});
