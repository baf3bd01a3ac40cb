import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * The two writes that used to take no Idempotency-Key (registering a meter, running the relay audit) take one like
 * every other write: refused without it, and a retry with the same key answers the first answer and does nothing.
 */
let f: GatewayFixture;
beforeAll(async () => {
  f = await startGatewayFixture([{ meterId: 'IK-1', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }]);
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('Idempotency-Key on every write', () => {
  const meter = { profileId: 'acme-em340-fw2.4', link: 'dc-1', region: 'north', accountId: 'ACC-IK' };
  const registrations = async () => (await f.http('GET', '/v1/audit?action=meter.register&target=IK-2', { key: f.adminKey })).body.items.length;

  it('PUT /v1/meters/{meterId}: 400 E_IDEMPOTENCY_KEY_MISSING without a key (nothing registered); a retry replays the first answer and audits once', async () => {
    const none = await f.http('PUT', '/v1/meters/IK-2', { body: meter, idempotencyKey: null });
    expect(none.status).toBe(400);
    expect(none.body.code).toBe('E_IDEMPOTENCY_KEY_MISSING');
    expect((await f.http('GET', '/v1/meters/IK-2')).status).toBe(404);
    const headers = { 'idempotency-key': 'ik-register-2' };
    const first = await f.http('PUT', '/v1/meters/IK-2', { body: meter, headers });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ meterId: 'IK-2', accountId: 'ACC-IK' });
    const again = await f.http('PUT', '/v1/meters/IK-2', { body: meter, headers });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(first.body);
    expect(await registrations()).toBe(1);
    const other = await f.http('PUT', '/v1/meters/IK-2', { body: { ...meter, region: 'south' }, headers });
    expect(other.status).toBe(409);
    expect(other.body.code).toBe('E_IDEMPOTENCY_CONFLICT');
    expect((await f.http('GET', '/v1/meters/IK-2')).body.region).toBe('north');
  });

  it('POST /v1/relay-audit/run: 400 E_IDEMPOTENCY_KEY_MISSING without a key (no run); a retry answers the same run', async () => {
    const none = await f.http('POST', '/v1/relay-audit/run', { idempotencyKey: null });
    expect(none.status).toBe(400);
    expect(none.body.code).toBe('E_IDEMPOTENCY_KEY_MISSING');
    expect((await f.http('GET', '/v1/relay-audit')).status).toBe(404);
    const headers = { 'idempotency-key': 'ik-audit-run' };
    const first = await f.http('POST', '/v1/relay-audit/run', { headers });
    expect(first.status).toBe(200);
    const again = await f.http('POST', '/v1/relay-audit/run', { headers });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.id).toBe(first.body.id);
    expect((await f.http('GET', '/v1/relay-audit')).body.id).toBe(first.body.id);
  });
});
