import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * POST /v1/alerts/{id}/acknowledge and /clear over HTTP against a running gateway: who may, the codes a caller gets,
 * the Idempotency-Key, and the list's state filter. (The stores' side, on SQLite and PostgreSQL, is in the store
 * conformance suite; METERLINE_TEST_STORE=postgres runs this file on PostgreSQL too.)
 */
let f: GatewayFixture;
let n = 0;
const key = () => ({ 'idempotency-key': `alerts-api-${++n}` });
const alertIds: string[] = [];

beforeAll(async () => {
  f = await startGatewayFixture([{ meterId: 'AL-1', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }]);
  // Alerts as the success-rate monitor records them.
  const now = Date.now();
  await f.gateway.store.recordAlert('alert.success_rate', { scope: 'link', key: 'dc-1', action: 'disconnect', kind: 'attempt', rate: 0.2, ok: 1, total: 5, windowMinutes: 5 }, now);
  await f.gateway.store.recordAlert('alert.circuit_open', { scope: 'link', key: 'dc-1', action: 'disconnect', reason: 'disconnect success 20.0% below 50%' }, now + 1);
  alertIds.push(...(await f.http('GET', '/v1/alerts')).body.items.map((a: any) => a.id));
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('alerts: acknowledge and clear over the API', () => {
  it('lists alerts open, newest first, with nobody having acted', async () => {
    const { items } = (await f.http('GET', '/v1/alerts')).body;
    expect(items.map((a: any) => [a.kind, a.state, a.acknowledgedBy, a.clearedBy])).toEqual([
      ['alert.circuit_open', 'open', null, null],
      ['alert.success_rate', 'open', null, null],
    ]);
  });

  it('billing, field and auditor keys are refused (403 E_FORBIDDEN); no key is 401; a write without an Idempotency-Key is refused', async () => {
    const [id] = alertIds;
    const auditor = (await f.http('POST', '/v1/keys', { key: f.adminKey, headers: key(), body: { name: 'aud', role: 'auditor' } })).body.key;
    for (const k of [f.billingKey, f.fieldKey, auditor, f.adminKey]) {
      const r = await f.http('POST', `/v1/alerts/${id}/acknowledge`, { key: k, headers: key(), body: {} });
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('E_FORBIDDEN');
    }
    expect((await f.http('POST', `/v1/alerts/${id}/clear`, { key: null, headers: key(), body: {} })).status).toBe(401);
    const noKey = await f.http('POST', `/v1/alerts/${id}/acknowledge`, { key: f.supervisorKey, body: {}, idempotencyKey: null });
    expect(noKey.body.code).toBe('E_IDEMPOTENCY_KEY_MISSING');
    expect((await f.http('GET', `/v1/alerts?state=open`)).body.items).toHaveLength(2);
  });

  it('a supervisor acknowledges with a note, an operator clears; a replay answers the same; acting on a cleared alert is 409 E_ALERT_CLEARED; an unknown id is 404 E_ALERT_NOT_FOUND', async () => {
    const [breakerAlert, rateAlert] = alertIds;
    const ackKey = key();
    const ack = await f.http('POST', `/v1/alerts/${rateAlert}/acknowledge`, { key: f.supervisorKey, headers: ackKey, body: { note: 'looking at dc-1' } });
    expect(ack.status).toBe(200);
    expect(ack.body).toMatchObject({ id: rateAlert, state: 'acknowledged', acknowledgedBy: 'demo-supervisor', clearedBy: null });
    const replay = await f.http('POST', `/v1/alerts/${rateAlert}/acknowledge`, { key: f.supervisorKey, headers: ackKey, body: { note: 'looking at dc-1' } });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).toEqual(ack.body);

    const clear = await f.http('POST', `/v1/alerts/${rateAlert}/clear`, { headers: key() });
    expect(clear.status, JSON.stringify(clear.body)).toBe(200);
    expect(clear.body).toMatchObject({ state: 'cleared', acknowledgedBy: 'demo-supervisor', clearedBy: 'demo-operator' });
    expect(Date.parse(clear.body.clearedAt)).toBeGreaterThanOrEqual(Date.parse(clear.body.acknowledgedAt));

    for (const act of ['acknowledge', 'clear']) {
      const again = await f.http('POST', `/v1/alerts/${rateAlert}/${act}`, { headers: key(), body: {} });
      expect(again.status).toBe(409);
      expect(again.body.code).toBe('E_ALERT_CLEARED');
    }
    const unknown = await f.http('POST', '/v1/alerts/ntf_nope/acknowledge', { headers: key(), body: {} });
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('E_ALERT_NOT_FOUND');
    const bad = await f.http('POST', `/v1/alerts/${breakerAlert}/clear`, { headers: key(), body: { note: 'x', extra: 1 } });
    expect(bad.status).toBe(400);

    expect((await f.http('GET', '/v1/alerts?state=cleared')).body.items.map((a: any) => a.id)).toEqual([rateAlert]);
    expect((await f.http('GET', '/v1/alerts?state=open')).body.items.map((a: any) => a.id)).toEqual([breakerAlert]);
    expect((await f.http('GET', '/v1/alerts?state=closed')).status).toBe(400);

    const audit = (await f.http('GET', `/v1/audit?target=${rateAlert}`, { key: f.supervisorKey })).body.items;
    expect(audit.map((e: any) => [e.action, e.actor, e.details.note])).toEqual([
      ['alert.acknowledge', 'demo-supervisor', 'looking at dc-1'],
      ['alert.clear', 'demo-operator', null],
    ]);
  });
});
