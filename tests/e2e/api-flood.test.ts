import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';
import { rawRequest, type RawAnswer, type RawBody } from '../harness/raw-http.js';

/**
 * Issue 14, item 1: a flood of unauthenticated and oversized requests during a switching run costs the run
 * nothing. Before the fix, eight unauthenticated 60 MB POSTs to /v1/payments/bulk were read, parsed and validated
 * before the key check, stalled the event loop for seconds and made attempts time out (their meters answered, the
 * gateway did not get to the answers in time). Now the key is checked first and each route reads at most its limit.
 *
 * The run: 300 meters, five waves of 300 reconnects through /v1/orders/bulk (1,500 orders); with each wave a round
 * of flood requests streamed over raw sockets. Judged by what the orders show: every one done at its first attempt,
 * no attempt timed out.
 */
const CLOSES = 'acme-em340-fw2.4';
const METERS = 300;
const WAVES = 5;
const meters: TestMeter[] = Array.from({ length: METERS }, (_, i) => ({ meterId: `FL-${String(i).padStart(4, '0')}`, profileId: CLOSES, initialRelay: 'disconnected' as const }));

let f: GatewayFixture;
beforeAll(async () => {
  f = await startGatewayFixture(meters);
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

const MB = 1024 * 1024;
/** `megabytes` of a JSON list whose items are all valid: the worst case for a server that parses before it checks the key. */
const list = (name: string, item: object, megabytes: number): RawBody => {
  const one = JSON.stringify(item) + ',';
  const repeat = one.repeat(Math.floor((256 * 1024) / one.length));
  return { head: `{"${name}":[`, repeat, times: Math.ceil((megabytes * MB) / repeat.length), tail: `${JSON.stringify(item)}]}` };
};
const payments = (megabytes: number) => list('payments', { meterId: 'FL-0000', amount: 10, receivedAt: '2026-11-25T08:12:00Z', reference: 'FLOOD' }, megabytes);
const orders = (megabytes: number) => list('orders', { meterId: 'FL-0000', action: 'reconnect', reason: 'payment', note: 'flood' }, megabytes);

interface FloodRequest {
  what: string;
  method: string;
  path: string;
  key: () => string | null;
  body: RawBody;
  status: number;
  code: string;
}
const FLOOD: FloodRequest[] = [
  ...Array.from({ length: 8 }, (_, i) => ({ what: `60 MB payments, no key #${i}`, method: 'POST', path: '/v1/payments/bulk', key: () => null, body: payments(60), status: 401, code: 'E_UNAUTHORIZED' })),
  ...Array.from({ length: 2 }, (_, i) => ({ what: `40 MB orders, unknown key #${i}`, method: 'POST', path: '/v1/orders/bulk', key: () => 'op_not-a-key', body: orders(40), status: 401, code: 'E_UNAUTHORIZED' })),
  ...Array.from({ length: 2 }, (_, i) => ({ what: `6 MB invalid body, no key #${i}`, method: 'POST', path: '/v1/payments/bulk', key: () => null, body: { head: '{"payments":[', repeat: '{"amount":"x"},'.repeat(10_000), times: 42, tail: '{}]}' }, status: 401, code: 'E_UNAUTHORIZED' })),
  ...Array.from({ length: 2 }, (_, i) => ({ what: `40 MB orders, operator #${i}`, method: 'POST', path: '/v1/orders/bulk', key: () => f.operatorKey, body: orders(40), status: 413, code: 'E_BODY_TOO_LARGE' })),
  ...Array.from({ length: 2 }, (_, i) => ({ what: `20 MB single reconnect, operator #${i}`, method: 'POST', path: '/v1/meters/FL-0000/reconnect', key: () => f.operatorKey, body: { head: '{"reason":"payment","note":"', repeat: 'x'.repeat(256 * 1024), times: 80, tail: '"}' }, status: 413, code: 'E_BODY_TOO_LARGE' })),
  { what: '5,000 levels deep import, billing', method: 'POST', path: '/v1/meters/facts/import', key: () => f.billingKey, body: { head: `{"rows":[{"meterId":"FL-0000","x":${'['.repeat(5000)}${']'.repeat(5000)}}]}` }, status: 400, code: 'E_BODY_TOO_DEEP' },
];

/** One round of the flood, all at once; a request left unanswered counts as an answer with no status. */
const floodRound = (wave: number): Promise<{ req: FloodRequest; res: Pick<RawAnswer, 'status' | 'json' | 'bodyBytes' | 'sentWhenAnswered'> }[]> =>
  Promise.all(
    FLOOD.map(async (req) => {
      const key = req.key();
      const res = await rawRequest(f.gateway.apiUrl, req.method, req.path, {
        headers: { 'content-type': 'application/json', 'idempotency-key': `flood-${wave}-${req.what}`, ...(key ? { authorization: `Bearer ${key}` } : {}) },
        body: req.body,
        timeoutMs: 30_000,
      }).catch((e: Error) => ({ status: null, json: { code: e.message }, bodyBytes: 0, sentWhenAnswered: 0 }));
      return { req, res };
    }),
  );

const metric = async (name: string): Promise<{ labels: string; value: number }[]> => {
  const text = (await f.http('GET', '/metrics')).body as string;
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`))
    .map((l) => ({ labels: l.slice(l.indexOf('{'), l.lastIndexOf('}') + 1), value: Number(l.slice(l.lastIndexOf(' ') + 1)) }));
};

describe('a flood at the API edge during a switching run', () => {
  it('unauthenticated and oversized requests are refused unread, and the run finishes with every order done at its first attempt', async () => {
    const created: string[] = [];
    const answers: Awaited<ReturnType<typeof floodRound>> = [];
    for (let wave = 0; wave < WAVES; wave++) {
      const flood = floodRound(wave);
      const bulk = await f.http('POST', '/v1/orders/bulk', { headers: { 'idempotency-key': `flood-run-${wave}` }, body: { orders: meters.map((m) => ({ meterId: m.meterId, action: 'reconnect', reason: 'payment' })) } });
      expect(bulk.status).toBe(202);
      expect(bulk.body.created).toBe(METERS);
      created.push(...bulk.body.results.map((r: any) => r.order.id));
      answers.push(...(await flood));
      // The next wave once this one is over (a new reconnect would supersede an open one).
      await expect
        .poll(async () => {
          const byState = (await f.http('GET', '/v1/queue')).body.byState as Record<string, number>;
          return (byState.accepted ?? 0) + (byState.queued ?? 0) + (byState.in_flight ?? 0);
        }, { timeout: 60_000, interval: 250 })
        .toBe(0);
    }

    // The run: every order done at its first attempt; nothing timed out or was sent again.
    const seen: any[] = [];
    for (let after: string | null = null; ; ) {
      const page: any = await f.http('GET', `/v1/orders?limit=1000${after ? `&after=${after}` : ''}`);
      seen.push(...page.body.items);
      after = page.body.next;
      if (!after) break;
    }
    const mine = seen.filter((o) => created.includes(o.id));
    expect(mine).toHaveLength(METERS * WAVES);
    const notClean = mine.filter((o) => o.state !== 'done' || o.attemptsUsed !== 1).map((o) => ({ id: o.id, state: o.state, attemptsUsed: o.attemptsUsed }));
    expect({ notClean: notClean.length, first: notClean.slice(0, 5) }).toEqual({ notClean: 0, first: [] });
    const attempts = await metric('meterline_switch_attempts_total');
    expect(attempts.filter((a) => !a.labels.includes('outcome="ok"') && a.value > 0)).toEqual([]);
    expect(attempts.filter((a) => a.labels.includes('outcome="ok"')).reduce((n, a) => n + a.value, 0)).toBe(METERS * WAVES);

    // Every flood request was answered with its code, before its body had been sent.
    for (const { req, res } of answers) {
      expect({ what: req.what, status: res.status, code: res.json?.code }).toEqual({ what: req.what, status: req.status, code: req.code });
      if (res.bodyBytes > MB) expect(res.sentWhenAnswered, req.what).toBeLessThan(res.bodyBytes);
    }
  }, 240_000);
});
