import { describe, expect, it } from 'vitest';
import { bulkBodyLimit, jsonNestsDeeperThan, MAX_JSON_DEPTH } from '../../src/api/request-body.js';
import { PAYMENT_ITEM_BYTES, PAYMENTS_BULK_LIMIT } from '../../src/api/routes/billing.js';
import { PLAN_LIMIT, PLAN_METER_BYTES } from '../../src/api/routes/plans.js';
import { BULK_LIMIT, BulkOrderItem, ORDER_ITEM_BYTES } from '../../src/api/schemas.js';

/** Request bodies: the JSON depth scan, and bulk limits that fit what their routes may be asked for. */
describe('jsonNestsDeeperThan', () => {
  const nest = (n: number) => '['.repeat(n) + ']'.repeat(n);
  it.each([
    ['{}', 1, false],
    ['{"a":[{"b":1}]}', 3, false],
    ['{"a":[{"b":1}]}', 2, true],
    [nest(32), 32, false],
    [nest(33), 32, true],
    [nest(5000), 32, true],
    // Brackets inside strings are text.
    [`{"note":"${'[{'.repeat(100)}"}`, 1, false],
    // An escaped quote does not end the string; an escaped backslash before a quote does.
    [`{"n":"\\"[[[["}`, 1, false],
    [`{"n":"\\\\"}`, 1, false],
    [`["\\\\",[[1]]]`, 2, true],
    // Not JSON: judged on its brackets all the same; an unterminated string ends the scan.
    ['[[[', 2, true],
    ['["[[[[', 1, false],
  ] as const)('%s, max %i → %s', (text, max, deeper) => {
    expect(jsonNestsDeeperThan(text, max)).toBe(deeper);
  });

  it('scans a 10 MB bulk body in a time of the order of JSON.parse (one linear pass, no recursion)', () => {
    const body = JSON.stringify({ orders: Array.from({ length: 10_000 }, (_, i) => ({ meterId: `M-${i}`, action: 'reconnect', reason: 'payment', note: 'x[{'.repeat(300) })) });
    const t0 = performance.now();
    expect(jsonNestsDeeperThan(body, MAX_JSON_DEPTH)).toBe(false);
    const scan = performance.now() - t0;
    const t1 = performance.now();
    JSON.parse(body);
    const parse = performance.now() - t1;
    expect(body.length).toBeGreaterThan(9_000_000);
    expect(scan).toBeLessThan(Math.max(4 * parse, 200));
  });
});

describe('bulk body limits', () => {
  const longest = (n: number) => 'x'.repeat(n);
  const at = '2026-11-25T08:12:00.000+00:00';

  it('a bulk of 10,000 orders with every field at its longest fits /v1/orders/bulk', () => {
    const disconnect = { meterId: longest(64), action: 'disconnect', reason: 'customer_request', reference: longest(200), notBefore: at, note: longest(500) };
    const reconnect = { meterId: longest(64), action: 'reconnect', reason: 'customer_request', paymentReceivedAt: at, urgent: false, notBefore: at, note: longest(500) };
    for (const item of [disconnect, reconnect]) {
      expect(BulkOrderItem.safeParse(item).success).toBe(true);
      expect(JSON.stringify(item, null, 2).length + 4).toBeLessThanOrEqual(ORDER_ITEM_BYTES);
    }
    expect(JSON.stringify({ orders: Array(BULK_LIMIT).fill(disconnect) }).length).toBeLessThanOrEqual(bulkBodyLimit(BULK_LIMIT, ORDER_ITEM_BYTES));
  });

  it('a file of 50,000 payments with every field at its longest fits /v1/payments/bulk', () => {
    const payment = { accountId: longest(64), amount: 12345678.9, receivedAt: at, posted: false, kind: 'top_up', reference: longest(100) };
    expect(JSON.stringify(payment, null, 2).length + 4).toBeLessThanOrEqual(PAYMENT_ITEM_BYTES);
    expect(JSON.stringify({ payments: Array(PAYMENTS_BULK_LIMIT).fill(payment) }).length).toBeLessThanOrEqual(bulkBodyLimit(PAYMENTS_BULK_LIMIT, PAYMENT_ITEM_BYTES));
  });

  it('a plan of 10,000 meter ids of 64 characters, indented, fits /v1/plans', () => {
    const plan = { reason: 'arrears', windowFrom: at, windowTo: at, meters: Array(PLAN_LIMIT).fill(longest(64)), note: longest(500) };
    expect(JSON.stringify(plan, null, 2).length).toBeLessThanOrEqual(bulkBodyLimit(PLAN_LIMIT, PLAN_METER_BYTES));
  });
});
