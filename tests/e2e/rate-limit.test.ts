import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/** Per-key rate limits with a clear 429 and stable code; one key's burst does not slow another key. */
let f: GatewayFixture;
beforeAll(async () => {
  const base = (await import('../../src/config/load-config.js')).loadConfig({});
  f = await startGatewayFixture([{ meterId: 'RL-1', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }], { api: { ...base.api, host: '127.0.0.1', port: 0, rateLimit: { max: 5, timeWindowMs: 60_000 } } });
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('rate limits', () => {
  it('the sixth request in the window gets 429 E_RATE_LIMITED with a request id; another key is not affected', async () => {
    const statuses: number[] = [];
    let last: any;
    for (let i = 0; i < 6; i++) {
      last = await f.http('GET', '/v1/meters/RL-1', { key: f.billingKey, headers: { 'x-request-id': `rl-${i}` } });
      statuses.push(last.status);
    }
    // The fixture itself used the operator key to register the meter; the billing key starts fresh.
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    expect(last.body.code).toBe('E_RATE_LIMITED');
    expect(last.body.requestId).toBe('rl-5');
    expect(last.headers.get('x-request-id')).toBe('rl-5');
    expect(Number(last.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await f.http('GET', '/v1/meters/RL-1', { key: f.supervisorKey })).status).toBe(200);
    expect((await f.http('GET', '/healthz', { key: null })).status).toBe(200);
  });
});
