import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/**
 * GET /v1/orders and its CSV export as an operator uses them on a busy gateway: newest first, page by page with the
 * `next` cursor, filtered, and exported whole, through the real HTTP API on a real store.
 */
const CLOSES = 'acme-em340-fw2.4';
let f: GatewayFixture;
let keyN = 0;
const post = (path: string, body: unknown, key?: string) => f.http('POST', path, { body, headers: { 'idempotency-key': `ol-${++keyN}` }, ...(key ? { key } : {}) });
const ids = (res: { body: { items: { id: string }[] } }) => res.body.items.map((o) => o.id);

/** Every page of a listing, followed by its `next` cursor until null. */
async function walk(query: string, limit: number): Promise<{ ids: string[]; pages: number }> {
  const seen: string[] = [];
  let pages = 0;
  for (let after: string | null = null; ; ) {
    const res = await f.http('GET', `/v1/orders?${query}&limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    seen.push(...ids(res));
    pages++;
    after = res.body.next;
    if (!after) return { ids: seen, pages };
  }
}

beforeAll(async () => {
  f = await startGatewayFixture(['OL-1', 'OL-2', 'OL-3'].map((meterId) => ({ meterId, profileId: CLOSES, initialRelay: 'disconnected' as const })));
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('the order list: newest first, cursor paging, filters, CSV export', () => {
  const created: { id: string; meterId: string; note: string | null }[] = [];
  let between = '';

  it('lists newest first; pages joined by their cursors hold every order once, also when orders arrive between pages', async () => {
    const notes = ['gate code 4411', 'paid at kiosk', '=HYPERLINK("http://x","click")', null];
    for (let i = 0; i < 4; i++) {
      const meterId = `OL-${(i % 3) + 1}`;
      const res = await post(`/v1/meters/${meterId}/reconnect`, { reason: 'payment', paymentReceivedAt: new Date().toISOString(), ...(notes[i] ? { note: notes[i] } : {}) }, f.billingKey);
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      created.push({ id: res.body.id, meterId, note: notes[i] ?? null });
      if (i === 1) {
        await new Promise((r) => setTimeout(r, 5));
        between = new Date().toISOString();
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    for (const o of created) await f.waitForOrder(o.id);
    const newestFirst = [...created].reverse().map((o) => o.id);

    const first = await f.http('GET', '/v1/orders?limit=2');
    expect(ids(first)).toEqual(newestFirst.slice(0, 2));
    expect(first.body.next).toBe(newestFirst[1]);
    // An order created now is newer than the page: the next page goes on where the first stopped.
    const late = await post('/v1/meters/OL-3/reconnect', { reason: 'top_up', paymentReceivedAt: new Date().toISOString() }, f.billingKey);
    await f.waitForOrder(late.body.id);
    const second = await f.http('GET', `/v1/orders?limit=2&after=${first.body.next}`);
    expect(ids(second)).toEqual(newestFirst.slice(2, 4));
    expect(second.body.next).toBeNull();
    expect((await walk('', 2)).ids).toEqual([late.body.id, ...newestFirst]);
    expect((await walk('order=asc', 3)).ids).toEqual([...created.map((o) => o.id), late.body.id]);
    created.push({ id: late.body.id, meterId: 'OL-3', note: null });
  });

  it('filters by meter, action, state (several), requester, reason, note, time range and order id', async () => {
    const [a, b, c, d, late] = created.map((o) => o.id);
    const list = async (query: string) => ids(await f.http('GET', `/v1/orders?${query}`));
    expect(await list('meterId=OL-1')).toEqual([d, a]);
    expect(await list('action=reconnect&reason=top_up')).toEqual([late]);
    expect(await list('action=disconnect')).toEqual([]);
    const everything = (await f.http('GET', '/v1/orders')).body.items as { id: string; state: string }[];
    const finished = everything.filter((o) => o.state === 'done' || o.state === 'superseded').map((o) => o.id);
    expect(finished.length).toBeGreaterThan(0);
    expect(await list('state=done&state=superseded')).toEqual(finished);
    expect(await list('state=done')).toEqual(everything.filter((o) => o.state === 'done').map((o) => o.id));
    expect(await list('requestedBy=demo-billing&limit=1000')).toEqual([late, d, c, b, a]);
    expect(await list('requestedBy=demo-operator')).toEqual([]);
    expect(await list('note=kiosk')).toEqual([b]);
    expect(await list('note=KIOSK')).toEqual([]);
    expect(await list(`createdTo=${encodeURIComponent(between)}`)).toEqual([b, a]);
    expect(await list(`createdFrom=${encodeURIComponent(between)}&order=asc`)).toEqual([c, d, late]);
    expect(await list(`q=${c}`)).toEqual([c]);
    expect(await list(`q=${c!.slice(0, 6)}`)).toContain(c);
    expect(await list('q=ord_nothing_like_this')).toEqual([]);
  });

  it('a bad parameter is refused with 400 E_VALIDATION naming it', async () => {
    const cases: [string, string][] = [
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['state=sleeping', 'state'],
      ['action=explode', 'action'],
      ['reason=because', 'reason'],
      ['order=sideways', 'order'],
      ['createdFrom=yesterday', 'createdFrom'],
      ['createdTo=2026-13-01', 'createdTo'],
      ['createdFrom=2026-11-02T00:00:00Z&createdTo=2026-11-01T00:00:00Z', 'createdTo'],
      ['after=ord_no_such_order', 'after'],
    ];
    for (const [query, name] of cases) {
      const res = await f.http('GET', `/v1/orders?${query}`);
      expect({ query, status: res.status, code: res.body.code }).toEqual({ query, status: 400, code: 'E_VALIDATION' });
      expect(res.body.message, query).toContain(name);
    }
    expect((await f.http('GET', '/v1/orders/export?createdFrom=soon')).status).toBe(400);
  });

  it('exports the filtered orders as spreadsheet-safe CSV, all of them, past one page of the store', async () => {
    const one = await f.http('GET', '/v1/orders/export?meterId=OL-1');
    expect(one.status).toBe(200);
    expect(one.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(one.headers.get('content-disposition')).toContain('orders.csv');
    const lines = (one.body as string).trimEnd().split('\r\n');
    expect(lines[0]).toBe('id,createdAt,meterId,action,limitW,reason,reference,note,requestedBy,origin,state,stateReason,attemptsUsed,completedAt');
    expect(lines.slice(1).map((l) => l.split(',')[0])).toEqual([created[3]!.id, created[0]!.id]);
    const hyper = await f.http('GET', '/v1/orders/export?meterId=OL-3&action=reconnect&reason=payment');
    expect(hyper.body).toContain(`,"'=HYPERLINK(""http://x"",""click"")",`);

    // 1,500 more orders (one bulk request): the export streams every one of them, newest first, past the store's pages of 1,000.
    const bulk = await post('/v1/orders/bulk', { orders: Array.from({ length: 1500 }, (_, i) => ({ meterId: `OL-${(i % 3) + 1}`, action: 'reconnect', reason: 'operator', note: `bulk ${i}` })) });
    expect(bulk.status, JSON.stringify(bulk.body).slice(0, 300)).toBeLessThan(300);
    const all = await f.http('GET', '/v1/orders/export?reason=operator');
    const rows = (all.body as string).trimEnd().split('\r\n').slice(1);
    expect(rows).toHaveLength(1500);
    expect(rows[0]).toContain('bulk 1499');
    expect(rows.at(-1)).toContain('bulk 0');
    expect(new Set(rows.map((r) => r.split(',')[0])).size).toBe(1500);
    // The API pages the same orders the same way.
    const paged = await walk('reason=operator', 1000);
    expect(paged).toEqual({ ids: rows.map((r) => r.split(',')[0]), pages: 2 });
  });
});
