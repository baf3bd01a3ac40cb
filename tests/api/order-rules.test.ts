import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/** GET /v1/orders/{orderId} says which rules an order passed or was stopped by, and never calls an unchecked rule passed. */
let f: GatewayFixture;
let n = 0;
const key = () => ({ 'idempotency-key': `order-rules-${++n}` });
const byRule = (order: any) => Object.fromEntries(order.rules.map((r: any) => [r.rule, r]));

beforeAll(async () => {
  f = await startGatewayFixture([
    { meterId: 'OR-1', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' },
    { meterId: 'OR-2', profileId: 'acme-em340-fw2.4', initialRelay: 'disconnected' },
  ]);
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('the rules on an order', () => {
  it('a disconnect for arrears outside a plan: stopped by the plan rule with its code; the rules before it passed, the ones after it not checked', async () => {
    const res = await f.http('POST', '/v1/meters/OR-1/disconnect', { key: f.operatorKey, headers: key(), body: { reason: 'arrears' } });
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('E_PLAN_REQUIRED');
    const order = (await f.http('GET', `/v1/orders/${res.body.details.order.id}`)).body;
    expect(order.state).toBe('refused');
    const rules = byRule(order);
    expect(rules.plan).toMatchObject({ outcome: 'stopped', code: 'E_PLAN_REQUIRED', name: expect.stringContaining('rule 7') });
    expect(rules.plan.detail).toContain('plan approved by a supervisor');
    for (const before of ['reconnectWins', 'protectedMode', 'successRate', 'protectedCustomer']) expect(rules[before].outcome, before).toBe('passed');
    for (const after of ['paymentRecheck', 'limitBeforeCut', 'notice', 'window', 'dailyCap', 'secondNotice']) expect(rules[after].outcome, after).toBe('not_checked');
    // An arrears disconnect names no reference (its evidence is the plan) and is no credit cut-off.
    expect(rules.authority.outcome).toBe('not_applicable');
    expect(rules.friendlyHours.outcome).toBe('not_applicable');
    expect(order.rules.filter((r: any) => r.outcome === 'stopped')).toHaveLength(1);
  });

  it('a reconnect passes rule 12 and nothing else is claimed for it', async () => {
    const res = await f.http('POST', '/v1/meters/OR-2/reconnect', { key: f.billingKey, headers: key(), body: { reason: 'payment' } });
    const order = await f.waitForOrder(res.body.id);
    expect(order.state).toBe('done');
    expect(order.rules).toEqual([expect.objectContaining({ rule: 'reconnectWins', outcome: 'passed' })]);
    // Its callback to billing, found by the order's id: only that order's, and only for the client whose feed it is.
    const mine = await f.http('GET', `/v1/callbacks/deliveries?orderId=${order.id}`, { key: f.billingKey });
    expect(mine.body.items.map((e: any) => [e.orderId, e.kind])).toEqual([[order.id, 'order.done']]);
    expect((await f.http('GET', `/v1/callbacks/deliveries?orderId=${order.id}`, { key: f.operatorKey })).body.items).toEqual([]);
  });

  it('a disconnect while a reconnect is open is stopped by rule 12 before any other rule is checked', async () => {
    f.fleet.meter('OR-2').dropCommands(1);
    const reconnect = await f.http('POST', '/v1/meters/OR-2/reconnect', { key: f.billingKey, headers: key(), body: { reason: 'payment' } });
    const res = await f.http('POST', '/v1/meters/OR-2/disconnect', { key: f.operatorKey, headers: key(), body: { reason: 'customer_request', reference: 'ticket 7' } });
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('E_RECONNECT_PENDING');
    const rules = byRule((await f.http('GET', `/v1/orders/${res.body.details.order.id}`)).body);
    expect(rules.reconnectWins).toMatchObject({ outcome: 'stopped', code: 'E_RECONNECT_PENDING' });
    expect(Object.values(rules).filter((r: any) => r.outcome === 'passed')).toEqual([]);
    expect(rules.window.outcome).toBe('not_checked');
    expect(rules.notice.outcome).toBe('not_applicable');
    await f.waitForOrder(reconnect.body.id);
  });

  it('the OpenAPI document describes the rules and their outcomes', async () => {
    const spec = (await f.http('GET', '/openapi.json', { key: null })).body;
    const schema = spec.paths['/v1/orders/{orderId}'].get.responses['200'].content['application/json'].schema;
    const rule = schema.properties.rules.items;
    expect(rule.properties.outcome.enum).toEqual(['passed', 'held', 'stopped', 'not_checked', 'not_applicable']);
  });
});
