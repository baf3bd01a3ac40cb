import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';
import { runCli } from './run-cli.js';

/**
 * `meterline orders` as a script or an operator on a terminal pages through a busy gateway: newest first, `--limit`,
 * `--after` the cursor the previous page printed, the filters as options, `--json` for the page itself.
 * The built CLI (dist/) as a separate process against a real gateway.
 */
const CLOSES = 'acme-em340-fw2.4';
let f: GatewayFixture;
let all: string[] = [];
let newest = '';

const meterline = (args: string[]) => runCli(args, { METERLINE_URL: f.gateway.apiUrl, METERLINE_KEY: f.operatorKey });

beforeAll(async () => {
  f = await startGatewayFixture(['CP-1', 'CP-2'].map((meterId) => ({ meterId, profileId: CLOSES, initialRelay: 'connected' as const })));
  // 25 disconnects for arrears outside a plan (refused and stored, nothing on the wire), then one reconnect: the newest.
  const orders = Array.from({ length: 25 }, (_, i) => ({ meterId: `CP-${(i % 2) + 1}`, action: 'disconnect', reason: 'arrears', reference: `ARR-${i}`, note: `bulk ${i}` }));
  expect((await f.http('POST', '/v1/orders/bulk', { headers: { 'idempotency-key': 'cp-bulk' }, body: { orders } })).status).toBeLessThan(300);
  const last = await f.http('POST', '/v1/meters/CP-2/reconnect', { key: f.billingKey, headers: { 'idempotency-key': 'cp-newest' }, body: { reason: 'payment', paymentReceivedAt: new Date().toISOString() } });
  newest = last.body.id;
  await f.waitForOrder(newest);
  all = (await f.http('GET', '/v1/orders?limit=1000')).body.items.map((o: { id: string }) => o.id);
  expect(all).toHaveLength(26);
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('meterline orders: newest first, a page at a time', () => {
  it('--json pages followed by --after hold every order once, newest first, and the last says next: null', async () => {
    const seen: string[] = [];
    let pages = 0;
    for (let after: string | null = null; ; ) {
      const r = await meterline(['orders', '--limit', '10', '--json', ...(after ? ['--after', after] : [])]);
      expect(r.code, r.stderr).toBe(0);
      const page = JSON.parse(r.stdout) as { items: { id: string }[]; next: string | null };
      seen.push(...page.items.map((o) => o.id));
      pages++;
      after = page.next;
      if (!after) break;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual(all);
    expect(seen[0]).toBe(newest);
  });

  it('as text, prints the page and the next page\'s --after on the last line; the last page says so', async () => {
    const first = await meterline(['orders', '--limit', '20']);
    expect(first.code).toBe(0);
    const lines = first.stdout.trimEnd().split('\n');
    expect(lines[2]).toContain(newest); // under the header and its rule
    expect(lines.at(-1)).toBe(`next page: --after ${all[19]}`);
    const second = await meterline(['orders', '--limit', '20', '--after', all[19]!]);
    expect(second.stdout).toContain(all[20]);
    expect(second.stdout).not.toContain(all[19]);
    expect(second.stdout.trimEnd().split('\n').at(-1)).toBe('(last page)');
  });

  it('filters by state (several), action, reason, requester, note, time and id; oldest first on request', async () => {
    const ids = async (...args: string[]) => {
      const r = await meterline(['orders', '--json', '--limit', '1000', ...args]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout).items as { id: string }[]).map((o) => o.id);
    };
    expect(await ids('--action', 'reconnect')).toEqual([newest]);
    expect(await ids('--requested-by', 'demo-billing')).toEqual([newest]);
    expect(await ids('--state', 'refused,done')).toEqual(all);
    expect(await ids('--state', 'refused', '--meter', 'CP-1', '--reason', 'arrears')).toHaveLength(13);
    expect(await ids('--note', 'bulk 24')).toEqual([all[1]]);
    expect(await ids('--id', newest)).toEqual([newest]);
    expect(await ids('--to', '2020-01-01T00:00:00Z')).toEqual([]);
    expect(await ids('--from', '2020-01-01T00:00:00Z', '--oldest-first')).toEqual([...all].reverse());
  });

  it('a bad option exits 2; so does a cursor or filter the gateway refuses (400 E_VALIDATION), named in the message', async () => {
    for (const args of [['--limit', 'ten'], ['--from', 'yesterday'], ['--bogus']]) {
      const r = await meterline(['orders', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
    }
    const cursor = await meterline(['orders', '--after', 'ord_no_such_order']);
    expect(cursor.stderr).toContain('E_VALIDATION');
    expect(cursor.stderr).toContain('after');
    const state = await meterline(['orders', '--state', 'sleeping']);
    expect(state.stderr).toContain('E_VALIDATION');
    expect(state.stderr).toContain('state');
    expect([cursor.code, state.code]).toEqual([2, 2]);
  });
});
