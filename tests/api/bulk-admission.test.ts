import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { FastifyRouteSchemaDef } from 'fastify/types/schema.js';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { bulkSerializerCompiler, bulkValidatorCompiler, fastBulkBody } from '../../src/api/bulk-admission.js';
import { BulkBody, OrderView } from '../../src/api/schemas.js';
import { orderView } from '../../src/api/views.js';
import type { SwitchOrder } from '../../src/domain/switch-order.js';

/**
 * POST /v1/orders/bulk's own validator and 202 serializer (src/api/bulk-admission.ts) against zod's, which they stand
 * in for: a body the fast check takes is one zod accepts, given back byte for byte as zod gives it back (keys, order,
 * defaults); every body it does not take goes to zod, so refusals are zod's own. The 202 answer is zod's serialised
 * answer byte for byte.
 */

const route = (schema: z.ZodType, extra: Partial<FastifyRouteSchemaDef<z.ZodType>> = {}): FastifyRouteSchemaDef<z.ZodType> =>
  ({ schema, method: 'POST', url: '/v1/orders/bulk', ...extra }) as FastifyRouteSchemaDef<z.ZodType>;

/** A small deterministic generator, so a failure names the case it failed on. */
function* rng(seed: number): Generator<number> {
  let s = seed >>> 0;
  for (;;) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    yield s / 2 ** 32;
  }
}

/** Per field: values zod takes (for some action), and values it refuses; `undefined` leaves the field out. */
const VALUES: Record<string, { good: unknown[]; bad: unknown[] }> = {
  action: { good: ['reconnect', 'disconnect', 'limit'], bad: ['Reconnect', '', 3, null] },
  meterId: { good: ['SIM-000001', 'a.b_c:d-9', 'x'.repeat(64)], bad: ['x'.repeat(65), '', 'bad id', 'é', 12, null] },
  reason: {
    good: ['payment', 'top_up', 'customer_request', 'safety_cleared', 'operator', 'arrears', 'safety', 'vacant_premises', 'credit_exhausted', undefined],
    bad: ['nope', '', null, 1],
  },
  paymentReceivedAt: {
    good: ['2026-11-25T08:12:00Z', '2026-11-25T08:12:00.123+01:00', '2024-02-29T00:00:00Z', undefined],
    bad: ['2025-02-29T00:00:00Z', '2026-11-25T08:12:00', '2026-11-25', '2026-13-01T00:00:00Z', '', null, 0],
  },
  notBefore: { good: ['2026-11-26T08:00:00+01:00', '2026-11-26T08:00:00.5Z', undefined], bad: ['2026-11-26T24:00:00Z', 'tomorrow', null] },
  urgent: { good: [true, false, undefined], bad: ['true', 0, null] },
  note: { good: ['receipt 1', '', 'n'.repeat(500), '😀'.repeat(250), undefined], bad: ['n'.repeat(501), '😀'.repeat(251), null, 5] },
  reference: { good: ['MOVE-1', 'r'.repeat(200), undefined], bad: ['', 'r'.repeat(201), null, 7] },
  limitW: { good: [1, 1500, 1_000_000, null], bad: [0, -1, 1_000_001, 1.5, '1500', 2 ** 53, undefined] },
  extra: { good: [], bad: ['unknown key'] },
};
const KEYS: Record<string, string[]> = {
  reconnect: ['reason', 'paymentReceivedAt', 'urgent', 'notBefore', 'note'],
  disconnect: ['reason', 'reference', 'notBefore', 'note'],
  limit: ['limitW', 'reason', 'reference', 'notBefore', 'note'],
};

/** A line near what zod takes: its action's fields, now and then a bad value or another action's field. */
function randomLine(next: () => number): Record<string, unknown> {
  const pick = (key: string): unknown => {
    const { good, bad } = VALUES[key]!;
    const from = next() < 0.03 || good.length === 0 ? bad : good;
    return from[Math.floor(next() * from.length)];
  };
  const action = pick('action');
  const own = KEYS[action as string] ?? KEYS.reconnect!;
  const keys = ['action', 'meterId', ...own, ...Object.keys(VALUES).filter((k) => next() < 0.01 && !own.includes(k) && k !== 'action' && k !== 'meterId')];
  // Keys in a random order: zod's answer keeps the schema's order whatever the order sent.
  keys.sort(() => next() - 0.5);
  const line: Record<string, unknown> = {};
  for (const key of keys) {
    const value = key === 'action' ? action : pick(key);
    if (value !== undefined) line[key] = value;
  }
  return line;
}

describe('the bulk body check', () => {
  it('takes a body only when zod accepts it, and gives back exactly what zod gives back', () => {
    const gen = rng(19);
    const next = () => gen.next().value as number;
    let taken = 0;
    let accepted = 0;
    for (let n = 0; n < 20_000; n++) {
      const body = { orders: [randomLine(next)] };
      const fast = fastBulkBody(body);
      const zod = BulkBody.safeParse(body);
      // zod counts a string's length in code points; a note or reference longer in UTF-16 units than its maximum is
      // left to zod (rare), so only the other bodies zod accepts must be taken.
      const { note, reference } = body.orders[0]!;
      if (zod.success && !((typeof note === 'string' && note.length > 500) || (typeof reference === 'string' && reference.length > 200))) accepted++;
      if (fast === undefined) continue;
      taken++;
      expect(zod.success, JSON.stringify(body)).toBe(true);
      expect(JSON.stringify(fast), JSON.stringify(body)).toBe(JSON.stringify(zod.data));
      expect(fast).toStrictEqual(zod.data);
    }
    // The generator reaches both sides, and every body zod accepts here is one the check takes too.
    expect(accepted).toBeGreaterThan(5_000);
    expect(accepted).toBeLessThan(18_000);
    expect(taken).toBe(accepted);
  });

  it('takes the lines a billing system sends, defaults filled in as zod fills them', () => {
    const body = {
      orders: [
        { meterId: 'SIM-1', action: 'reconnect' },
        { action: 'reconnect', meterId: 'SIM-2', urgent: true, note: 'medical', paymentReceivedAt: '2026-11-25T08:12:00Z' },
        { meterId: 'SIM-3', action: 'disconnect', reason: 'vacant_premises', reference: 'MOVE-OUT-7731', notBefore: '2026-11-26T08:00:00+01:00' },
        { meterId: 'SIM-4', action: 'limit', limitW: 1500, reason: 'arrears' },
        { meterId: 'SIM-5', action: 'limit', limitW: null, reason: 'payment' },
      ],
    };
    const fast = fastBulkBody(body);
    expect(JSON.stringify(fast)).toBe(JSON.stringify(BulkBody.parse(body)));
    expect(fast!.orders[0]).toEqual({ reason: 'payment', urgent: false, action: 'reconnect', meterId: 'SIM-1' });
  });

  it('leaves to zod a body that is not one object with a non-empty list of orders', () => {
    for (const body of [null, 'text', [], {}, { orders: [] }, { orders: {} }, { orders: [{ meterId: 'SIM-1', action: 'reconnect' }], note: 'x' }]) {
      expect(fastBulkBody(body)).toBeUndefined();
    }
  });

  it('as the route validator: a refusal is zod\'s own, naming the line and field; an accepted body is zod\'s value', () => {
    const ours = bulkValidatorCompiler(route(BulkBody, { httpPart: 'body' })) as (data: unknown) => { value?: unknown; error?: unknown };
    const zods = validatorCompiler(route(BulkBody, { httpPart: 'body' })) as (data: unknown) => { value?: unknown; error?: unknown };
    const good = { orders: [{ meterId: 'SIM-1', action: 'reconnect' }, { meterId: 'SIM-2', action: 'limit', limitW: 20, reason: 'safety', reference: 'INC-1' }] };
    expect(JSON.stringify(ours(good))).toBe(JSON.stringify(zods(good)));
    const bad = { orders: [{ meterId: 'SIM-1', action: 'reconnect' }, { meterId: 'SIM-2', action: 'reconnect', note: 'n'.repeat(501) }, { meterId: 'SIM-3', action: 'limit', reason: 'arrears' }] };
    const refused = ours(bad);
    expect(refused.value).toBeUndefined();
    expect(JSON.stringify(refused.error)).toBe(JSON.stringify(zods(bad).error));
    expect(JSON.stringify(refused.error)).toContain('/orders/1/note');
    expect(JSON.stringify(refused.error)).toContain('/orders/2/limitW');
  });

  it('leaves a note over 500 UTF-16 units to zod, which counts code points: 250 emoji pass, 251 do not', () => {
    const line = (n: number) => ({ orders: [{ meterId: 'SIM-1', action: 'reconnect', note: '😀'.repeat(n) }] });
    expect(JSON.stringify(fastBulkBody(line(250)))).toBe(JSON.stringify(BulkBody.parse(line(250))));
    expect(fastBulkBody(line(251))).toBeUndefined();
    const ours = bulkValidatorCompiler(route(BulkBody, { httpPart: 'body' })) as (data: unknown) => { value?: unknown; error?: unknown };
    expect(JSON.stringify(ours(line(251)).value)).toBe(JSON.stringify(BulkBody.parse(line(251))));
  });
});

describe('the bulk 202 answer', () => {
  const NOW = Date.parse('2026-11-25T09:00:00Z');
  const order = (over: Partial<SwitchOrder>): SwitchOrder =>
    ({
      id: 'ord-1', meterId: 'SIM-1', action: 'reconnect', limitW: null, reason: 'payment', note: null, requestedBy: 'client-1', state: 'queued',
      stateReason: null, priority: 100, urgent: false, link: 'mqtt', createdAt: NOW, updatedAt: NOW, notBefore: NOW, deadline: NOW + 86_400_000,
      paymentAt: NOW - 60_000, attempts: 0, nextAttemptAt: NOW, supersededBy: null, completedAt: null, resultRelay: null, planId: null,
      secondNoticeAt: null, capDay: null, escalatedAt: null, origin: 'api', reference: null, approvedBy: null, approvedAt: null,
      ...over,
    }) as SwitchOrder;

  it('is byte for byte what zod\'s serializer wrote, for created, replayed and refused lines', () => {
    const Answer = z.object({
      created: z.number().int(),
      replayed: z.number().int(),
      refused: z.number().int(),
      results: z.array(z.object({ index: z.number().int(), outcome: z.enum(['created', 'replayed', 'refused']), order: OrderView })),
    });
    const orders = [
      order({}),
      order({ id: 'ord-2', action: 'disconnect', reason: 'vacant_premises', reference: 'MOVE-1', note: 'moving "out"\n', deadline: null, paymentAt: null, state: 'held', stateReason: 'E_NOTICE: notice runs' }),
      order({ id: 'ord-3', action: 'limit', limitW: 1500, reason: 'arrears', state: 'refused', stateReason: 'E_PROTECTED_MODE: refused', completedAt: NOW, resultRelay: 'connected' }),
      order({ id: 'ord-4', state: 'done', resultRelay: 'connected', completedAt: NOW + 5, attempts: 1, approvedBy: 'sup', approvedAt: NOW }),
    ];
    const results = orders.map((o, index) => ({ index, outcome: o.state === 'refused' ? ('refused' as const) : index === 3 ? ('replayed' as const) : ('created' as const), order: orderView(o) }));
    const answer = { created: 2, replayed: 1, refused: 1, results };
    const ours = bulkSerializerCompiler(route(Answer, { httpStatus: '202' }));
    const zods = serializerCompiler(route(Answer, { httpStatus: '202' }));
    expect(ours(answer)).toBe(zods(answer));
  });

  it('every other status keeps zod\'s serializer (which refuses an answer off its schema)', () => {
    const ErrorLike = z.object({ code: z.string() });
    const ours = bulkSerializerCompiler(route(ErrorLike, { httpStatus: '400' }));
    expect(ours({ code: 'E_VALIDATION', extra: 1 })).toBe('{"code":"E_VALIDATION"}');
    expect(() => ours({ code: 5 })).toThrow();
  });
});
