import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';

/**
 * Issue 14 item 4: an Idempotency-Key is reserved before its write acts. Every write route is sent the same request
 * 50 times at once with one Idempotency-Key, as a client that retries on a timeout (or a proxy that fans out) does:
 * exactly one effect, and every caller gets the same answer (a key's secret only in the first one, item 5).
 * The gateway is wired as in production (real HTTP, real store, real mosquitto); the effect is read from the store.
 */
const CLOSES = 'acme-em340-fw2.4';
const METERS = ['RACE-FLAGS', 'RACE-NOTICE', 'RACE-IMPORT', 'RACE-SWAP', 'RACE-PLAN', 'RACE-CANCEL', 'RACE-APPROVE', 'RACE-PRE', 'RACE-REC', 'RACE-PAY', 'RACE-WO'];
const meters: TestMeter[] = METERS.map((meterId) => ({ meterId, profileId: CLOSES, initialRelay: 'connected' }));
const PARALLEL = 50;
const HOUR = 3_600_000;

let f: GatewayFixture;
let n = 0;
const k = () => ({ 'idempotency-key': `setup-${++n}` });
const iso = (ms: number) => new Date(ms).toISOString();

beforeAll(async () => {
  const base = loadConfig({});
  f = await startGatewayFixture(meters, { api: { ...base.api, host: '127.0.0.1', port: 0, rateLimit: { max: 100_000, timeWindowMs: 1000 } } });
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

/** Audit entries of `action` about `id` (as their target or in their details). */
const audited = async (action: string, id: string): Promise<number> =>
  (await f.gateway.store.listAudit({ limit: 100_000 })).filter((e) => e.action === action && (e.target === id || JSON.stringify(e.details).includes(id))).length;

const ok = (r: { status: number; body: any }, what: string) => {
  expect(r.status, `${what}: ${JSON.stringify(r.body)}`).toBeLessThan(300);
  return r.body;
};
const plan = async (meterId: string) =>
  ok(await f.http('POST', '/v1/plans', { headers: k(), body: { reason: 'arrears', windowFrom: iso(Date.now() - HOUR), windowTo: iso(Date.now() + 24 * HOUR), meters: [meterId] } }), 'plan').id as string;
/** A protected customer's customer_request: held until a supervisor approves it, not on the wire (so it can be cancelled). */
const awaitingApproval = async (meterId: string): Promise<string> => {
  ok(await f.http('PUT', `/v1/meters/${meterId}/flags`, { key: f.billingKey, headers: k(), body: { vulnerable: true } }), 'flags');
  const o = ok(await f.http('POST', `/v1/meters/${meterId}/disconnect`, { headers: k(), body: { reason: 'customer_request', reference: `CRM-${meterId}` } }), 'disconnect');
  const until = Date.now() + 10_000;
  for (;;) {
    const now = (await f.http('GET', `/v1/orders/${o.id}`)).body;
    if ((now.stateReason ?? '').startsWith('E_APPROVAL_REQUIRED')) return o.id as string;
    if (Date.now() > until) throw new Error(`order ${o.id} not waiting for approval: ${JSON.stringify(now)}`);
    await new Promise((r) => setTimeout(r, 30));
  }
};
const workOrder = async (): Promise<string> => {
  const now = Date.now();
  const claim = await f.gateway.store.claimEpisode(
    {
      meterId: 'RACE-WO',
      kind: 'relay_audit_open_without_order',
      from: now + ++n,
      to: now + n,
      whPerHour: null,
      message: 'relay open with no order (race test)',
      details: {},
      continues: 'overlapping',
      alert: { kind: 'alert.relay_audit', payload: {} },
      inspection: { reason: 'race test', dueAt: now + HOUR, priority: 2, region: 'north' },
    },
    now,
  );
  return claim.episode.workOrderId!;
};

interface Race {
  route: string;
  key?: () => string;
  /** Make what the write acts on; returns the request. */
  setup: () => Promise<{ method: string; path: string; body?: unknown; id: string }>;
  /** How many times the write took effect. */
  effects: (id: string) => Promise<number>;
  /** The status of a replay, where the route tells it from the first answer (a payment: 201 recorded, 200 replayed). */
  replayStatus?: number;
}

const RACES: Race[] = [
  {
    route: 'POST /v1/keys',
    key: () => f.adminKey,
    setup: async () => ({ method: 'POST', path: '/v1/keys', body: { name: 'race-crew', role: 'field' }, id: 'race-crew' }),
    effects: async (name) => (await f.gateway.store.listApiKeys()).filter((x) => x.name === name).length,
  },
  {
    route: 'POST /v1/keys/{id}/rotate',
    key: () => f.adminKey,
    setup: async () => {
      const made = ok(await f.http('POST', '/v1/keys', { key: f.adminKey, headers: k(), body: { name: 'race-rotate', role: 'field' } }), 'key');
      return { method: 'POST', path: `/v1/keys/${made.id}/rotate`, id: made.id };
    },
    effects: (id) => audited('key.rotate', id),
  },
  {
    route: 'DELETE /v1/keys/{id}',
    key: () => f.adminKey,
    setup: async () => {
      const made = ok(await f.http('POST', '/v1/keys', { key: f.adminKey, headers: k(), body: { name: 'race-revoke', role: 'field' } }), 'key');
      return { method: 'DELETE', path: `/v1/keys/${made.id}`, id: made.id };
    },
    effects: (id) => audited('key.revoke', id),
  },
  {
    route: 'POST /v1/policy/weather',
    key: () => f.supervisorKey,
    setup: async () => ({ method: 'POST', path: '/v1/policy/weather', body: { kind: 'race-freeze', from: iso(Date.now() + 24 * HOUR), to: iso(Date.now() + 48 * HOUR), regions: ['north'] }, id: 'race-freeze' }),
    effects: async (kind) => (await f.gateway.store.listWeather()).filter((w) => w.kind === kind).length,
  },
  {
    route: 'DELETE /v1/policy/weather/{id}',
    key: () => f.supervisorKey,
    setup: async () => {
      const w = ok(await f.http('POST', '/v1/policy/weather', { key: f.supervisorKey, headers: k(), body: { kind: 'race-heat', from: iso(Date.now() + 24 * HOUR), to: iso(Date.now() + 48 * HOUR), regions: ['south'] } }), 'weather');
      return { method: 'DELETE', path: `/v1/policy/weather/${w.id}`, id: w.id };
    },
    effects: (id) => audited('policy.weather.lift', id),
  },
  {
    route: 'PUT /v1/meters/{id}/flags',
    key: () => f.billingKey,
    setup: async () => ({ method: 'PUT', path: '/v1/meters/RACE-FLAGS/flags', body: { priorityRegister: true }, id: 'RACE-FLAGS' }),
    effects: (id) => audited('meter.flags', id),
  },
  {
    route: 'POST /v1/meters/{id}/notices',
    key: () => f.billingKey,
    setup: async () => ({ method: 'POST', path: '/v1/meters/RACE-NOTICE/notices', body: { channel: 'letter', servedAt: iso(Date.now() - 10 * 24 * HOUR), delivery: 'delivered', receiptRef: 'TRACK-RACE' }, id: 'RACE-NOTICE' }),
    effects: async (id) => (await f.gateway.store.listNotices(id)).length,
  },
  {
    route: 'POST /v1/meters/facts/import',
    key: () => f.billingKey,
    setup: async () => ({
      method: 'POST',
      path: '/v1/meters/facts/import',
      body: { rows: [{ meterId: 'RACE-IMPORT', noticeChannel: 'phone_call', noticeServedAt: iso(Date.now() - 10 * 24 * HOUR), noticeDelivery: 'delivered', noticeReceiptRef: 'CALL-RACE' }] },
      id: 'RACE-IMPORT',
    }),
    effects: async (id) => (await f.gateway.store.listNotices(id)).length,
  },
  {
    route: 'POST /v1/meters/{id}/swaps',
    setup: async () => ({ method: 'POST', path: '/v1/meters/RACE-SWAP/swaps', body: { at: iso(Date.now() - HOUR), oldRegisterFinalWh: 5_000, newRegisterFirstWh: 10, newSerial: 'RACE-1' }, id: 'RACE-SWAP' }),
    effects: async (id) => (await f.gateway.store.listMeterSwaps(id, 100)).length,
  },
  {
    route: 'POST /v1/plans',
    setup: async () => ({ method: 'POST', path: '/v1/plans', body: { reason: 'arrears', windowFrom: iso(Date.now() - HOUR), windowTo: iso(Date.now() + 24 * HOUR), meters: ['RACE-PLAN'], note: 'race plan' }, id: 'race plan' }),
    effects: async (note) => (await f.gateway.store.listPlans()).filter((p) => p.note === note).length,
  },
  ...(['approve', 'reject', 'cancel'] as const).map(
    (verb): Race => ({
      route: `POST /v1/plans/{id}/${verb}`,
      key: () => (verb === 'cancel' ? f.operatorKey : f.supervisorKey),
      setup: async () => {
        const id = await plan('RACE-PLAN');
        return { method: 'POST', path: `/v1/plans/${id}/${verb}`, id };
      },
      effects: async (id) => (await audited(`plan.${verb}`, id)) + (verb === 'approve' ? (await f.gateway.store.listOrders({ meterId: 'RACE-PLAN', limit: 1000 })).filter((o) => o.planId === id).length - 1 : 0),
    }),
  ),
  {
    route: 'POST /v1/orders/{id}/cancel',
    setup: async () => {
      const id = await awaitingApproval('RACE-CANCEL');
      return { method: 'POST', path: `/v1/orders/${id}/cancel`, body: { reason: 'customer withdrew the request' }, id };
    },
    effects: (id) => audited('order.cancel', id),
  },
  {
    route: 'POST /v1/orders/{id}/approve',
    key: () => f.supervisorKey,
    setup: async () => {
      const id = await awaitingApproval('RACE-APPROVE');
      return { method: 'POST', path: `/v1/orders/${id}/approve`, id };
    },
    effects: (id) => audited('order.approve', id),
  },
  {
    route: 'POST /v1/work-orders/{id}/assign',
    setup: async () => {
      const id = await workOrder();
      return { method: 'POST', path: `/v1/work-orders/${id}/assign`, body: { assignee: 'crew-east-2' }, id };
    },
    effects: (id) => audited('work_order.assign', id),
  },
  {
    route: 'POST /v1/work-orders/{id}/complete',
    setup: async () => {
      const id = await workOrder();
      return { method: 'POST', path: `/v1/work-orders/${id}/complete`, body: { outcome: 'no_access', note: 'gate locked' }, id };
    },
    effects: (id) => audited('work_order.complete', id),
  },
  {
    route: 'POST /v1/stats/breakers/{id}/reset',
    setup: async () => {
      const b = await f.gateway.store.openBreaker('link', 'race-link', 'disconnect', 'race test', Date.now());
      return { method: 'POST', path: `/v1/stats/breakers/${b!.id}/reset`, id: b!.id };
    },
    effects: (id) => audited('breaker.reset', id),
  },
  {
    route: 'PUT /v1/callbacks',
    key: () => f.billingKey,
    setup: async () => ({ method: 'PUT', path: '/v1/callbacks', body: { url: 'https://billing.example/race', secret: 'a-long-shared-secret-race' }, id: 'https://billing.example/race' }),
    effects: (url) => audited('callback.set', url),
  },
  {
    route: 'POST /v1/meters/{id}/emergency-credit',
    key: () => f.billingKey,
    setup: async () => {
      ok(await f.http('PUT', '/v1/meters/RACE-PRE/flags', { key: f.billingKey, headers: k(), body: { prepaymentMode: true, prepaymentAgreementRef: 'PPA-RACE' } }), 'prepayment');
      return { method: 'POST', path: '/v1/meters/RACE-PRE/emergency-credit', id: 'RACE-PRE' };
    },
    effects: async (id) => (await f.gateway.store.creditEvents(id)).filter((e) => e.type === 'emergency_credit_granted').length,
  },
  // Switch orders and payments keep their keys in the admitting transaction (the store's own check): the same race.
  {
    route: 'POST /v1/meters/{id}/reconnect',
    key: () => f.billingKey,
    setup: async () => ({ method: 'POST', path: '/v1/meters/RACE-REC/reconnect', body: { reason: 'payment', paymentReceivedAt: iso(Date.now() - 60_000) }, id: 'RACE-REC' }),
    effects: async (id) => (await f.gateway.store.listOrders({ meterId: id, limit: 1000 })).length,
  },
  {
    route: 'POST /v1/payments',
    key: () => f.billingKey,
    setup: async () => ({ method: 'POST', path: '/v1/payments', body: { meterId: 'RACE-PAY', amount: 12.5, receivedAt: iso(Date.now() - 60_000), reference: 'BANK-RACE' }, id: 'BANK-RACE' }),
    effects: async (ref) => (await f.gateway.store.listPayments({ limit: 100_000 })).filter((p) => p.reference === ref).length,
    replayStatus: 200,
  },
];

describe(`${PARALLEL} requests at once with one Idempotency-Key, on every write route: one effect, one answer`, () => {
  it.each(RACES.map((r) => [r.route, r] as const))('%s', async (_route, race) => {
    const { method, path, body, id } = await race.setup();
    const key = race.key?.() ?? f.operatorKey;
    const idem = `race-${race.route}-${++n}`;
    const answers = await Promise.all(Array.from({ length: PARALLEL }, () => f.http(method, path, { key, headers: { 'idempotency-key': idem }, ...(body !== undefined ? { body } : {}) })));
    // One answer for all: the same status and body (a new secret only in the first, never replayed).
    const statuses = new Set(answers.map((a) => (a.status === race.replayStatus ? 'replayed' : a.status)));
    expect([...statuses], JSON.stringify(answers.map((a) => a.body).slice(0, 3))).toHaveLength(race.replayStatus ? 2 : 1);
    for (const a of answers) expect(a.status, JSON.stringify(a.body)).toBeLessThan(300);
    // A switch order or payment replayed shows the order as it is now (it may have moved on): the same one, by id.
    const sameness = (b: Record<string, unknown>) => (race.route.includes('/reconnect') || race.route.includes('/payments') ? String(b.id) : JSON.stringify({ ...b, key: undefined }));
    const withoutSecret = answers.map((a) => sameness(a.body));
    expect(new Set(withoutSecret).size, withoutSecret.slice(0, 3).join('\n')).toBe(1);
    const secrets = answers.filter((a) => typeof a.body.key === 'string' && a.body.key.includes('_') && 'role' in a.body);
    expect(secrets.length).toBe(race.route.startsWith('POST /v1/keys') ? 1 : 0);
    expect(answers.filter((a) => a.headers.get('idempotent-replayed') === 'true').length).toBe(PARALLEL - 1);
    // One effect.
    expect(await race.effects(id)).toBe(1);
  });
});

describe('a write that fails gives its Idempotency-Key back', () => {
  it('a notice for a meter not yet registered is refused; once the meter is there, the retry with the same key acts', async () => {
    const headers = { 'idempotency-key': 'notice-before-meter' };
    const body = { channel: 'letter', servedAt: iso(Date.now() - 10 * 24 * HOUR), delivery: 'delivered', receiptRef: 'TRACK-LATE' };
    const refused = await Promise.all(Array.from({ length: 10 }, () => f.http('POST', '/v1/meters/RACE-LATE/notices', { key: f.billingKey, headers, body })));
    expect(refused.map((r) => r.body.code)).toEqual(Array(10).fill('E_METER_NOT_FOUND'));
    await f.registerMeters([{ meterId: 'RACE-LATE', profileId: CLOSES, initialRelay: 'connected' }]);
    const retried = await f.http('POST', '/v1/meters/RACE-LATE/notices', { key: f.billingKey, headers, body });
    expect(retried.status, JSON.stringify(retried.body)).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
    expect((await f.http('POST', '/v1/meters/RACE-LATE/notices', { key: f.billingKey, headers, body })).headers.get('idempotent-replayed')).toBe('true');
    expect(await f.gateway.store.listNotices('RACE-LATE')).toHaveLength(1);
  });
});

describe('a key reserved by another instance', () => {
  it('a request waits for the other instance’s answer and returns it, acting on nothing', async () => {
    // What another gateway instance on the same database does: it reserved the key, acts, then saves its answer.
    const body = { medicalEquipment: true };
    const path = '/v1/meters/RACE-FLAGS/flags';
    const hash = createHash('sha256').update(`PUT ${path}\n${JSON.stringify(body)}`).digest('hex');
    expect(await f.gateway.store.reserveIdempotentWrite('demo-billing', 'other-instance', hash, Date.now())).toEqual({ reserved: true });
    const before = await audited('meter.flags', 'RACE-FLAGS');
    const waiting = f.http('PUT', path, { key: f.billingKey, headers: { 'idempotency-key': 'other-instance' }, body });
    await new Promise((r) => setTimeout(r, 300)); // the request is polling the reserved key now
    const flags = (await f.http('GET', '/v1/meters/RACE-FLAGS')).body.flags;
    await f.gateway.store.saveIdempotentResponse('demo-billing', 'other-instance', hash, 200, { ...flags, medicalEquipment: true });
    const answer = await waiting;
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body).toEqual({ ...flags, medicalEquipment: true });
    expect(answer.headers.get('idempotent-replayed')).toBe('true');
    // This instance acted on nothing: no flag change, no audit entry (the other instance's write is its own).
    expect(await audited('meter.flags', 'RACE-FLAGS')).toBe(before);
    expect((await f.http('GET', '/v1/meters/RACE-FLAGS')).body.flags.medicalEquipment).toBe(false);
  });
});
