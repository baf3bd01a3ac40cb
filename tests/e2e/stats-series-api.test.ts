import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * GET /v1/stats/series as the overview's charts use it: buckets of finished orders, their success rate and the queue
 * depth, through the real HTTP API on a real store, for orders that ran to the end; and the bad ranges it refuses.
 */
const CLOSES = 'acme-em340-fw2.4';
let f: GatewayFixture;
let keyN = 0;

beforeAll(async () => {
  f = await startGatewayFixture(['SE-1', 'SE-2', 'SE-3'].map((meterId) => ({ meterId, profileId: CLOSES, initialRelay: 'disconnected' as const })));
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('orders over time (GET /v1/stats/series)', () => {
  it('three reconnects done: three finished, all done, success 100%, and the queue empty at the end; nothing before they were asked', async () => {
    const start = Date.now();
    const ids: string[] = [];
    for (const meterId of ['SE-1', 'SE-2', 'SE-3']) {
      const res = await f.http('POST', `/v1/meters/${meterId}/reconnect`, { key: f.billingKey, headers: { 'idempotency-key': `se-${++keyN}` }, body: { reason: 'payment', paymentReceivedAt: new Date().toISOString() } });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      ids.push(res.body.id);
    }
    for (const id of ids) expect((await f.waitForOrder(id)).state).toBe('done');
    const from = new Date(start - 5 * 60_000).toISOString();
    const to = new Date(Date.now() + 60_000).toISOString();
    const res = await f.http('GET', `/v1/stats/series?from=${from}&to=${to}&stepSeconds=60`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const buckets = res.body.buckets as { at: string; finished: number; done: number; failedOrEscalated: number; successRate: number | null; queueDepth: number }[];
    expect(res.body.stepSeconds).toBe(60);
    expect(buckets.length).toBeGreaterThanOrEqual(6);
    expect(buckets[0]!.at).toBe(from);
    expect(buckets.reduce((n, b) => n + b.finished, 0)).toBe(3);
    expect(buckets.reduce((n, b) => n + b.done, 0)).toBe(3);
    expect(buckets.reduce((n, b) => n + b.failedOrEscalated, 0)).toBe(0);
    for (const b of buckets) expect(b.successRate).toBe(b.finished === 0 ? null : 1);
    // The five minutes before the orders: nothing finished, nothing open.
    expect(buckets.slice(0, 4).map((b) => [b.finished, b.queueDepth])).toEqual([[0, 0], [0, 0], [0, 0], [0, 0]]);
    expect(buckets.at(-1)!.queueDepth).toBe(0);
  });

  it('by default the last hour by the minute; a reader needs stats:read', async () => {
    const res = await f.http('GET', '/v1/stats/series');
    expect(res.status).toBe(200);
    expect(res.body.stepSeconds).toBe(60);
    expect(res.body.buckets).toHaveLength(60);
    expect(Date.parse(res.body.to) - Date.parse(res.body.from)).toBe(3_600_000);
    expect((await f.http('GET', '/v1/stats/series', { key: null })).status).toBe(401);
  });

  it('refuses more than 1,440 buckets, and a range that ends before it starts, with E_VALIDATION saying what to change', async () => {
    const week = await f.http('GET', `/v1/stats/series?from=2026-11-01T00:00:00Z&to=2026-11-08T00:00:00Z&stepSeconds=60`);
    expect(week.status).toBe(400);
    expect(week.body.code).toBe('E_VALIDATION');
    expect(week.body.message).toContain('10080 buckets');
    expect(week.body.message).toContain('at most 1440');
    const backwards = await f.http('GET', `/v1/stats/series?from=2026-11-08T00:00:00Z&to=2026-11-01T00:00:00Z`);
    expect(backwards.status).toBe(400);
    expect(backwards.body.code).toBe('E_VALIDATION');
    // A week by the hour is fine.
    const ok = await f.http('GET', `/v1/stats/series?from=2026-11-01T00:00:00Z&to=2026-11-08T00:00:00Z&stepSeconds=3600`);
    expect(ok.status).toBe(200);
    expect(ok.body.buckets).toHaveLength(168);
  });
});
