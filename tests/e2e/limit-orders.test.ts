import { describe, expect, it } from 'vitest';
import { DAY, HOUR, bulkResults, isFinal, iso, safetyWorldForFile } from '../safety/safety-harness.js';

/**
 * Load limiting as an order (issue 16 item 5, DOMAIN.md rule 10), end to end: the API, the control loop, a real
 * mosquitto, simulated meters, on the gateway's fake clock. A limit is done only when the meter's read-back shows the
 * very limit asked for. One case per protocol: MQTT here; the Modbus limit register and the DLMS class 71 limiter add
 * their case (a profile with a limiter, one without) when their drivers land.
 */
const PROTOCOLS = [{ protocol: 'mqtt', limiter: 'acme-em340-fw2.4', noLimiter: 'volta-pp20-fw1.7' }] as const;

describe.each(PROTOCOLS)('limit orders over $protocol', ({ limiter, noLimiter }) => {
  const meter = (meterId: string, profileId: string = limiter) => ({ meterId, profileId, initialRelay: 'connected' as const });
  const w = safetyWorldForFile(
    [meter('L-SET'), meter('L-LIAR'), meter('L-NONE', noLimiter), meter('L-RULE10'), meter('L-PAID'), meter('L-PROT'), meter('L-BULK-1'), meter('L-BULK-2'), meter('L-BULK-NONE', noLimiter), meter('L-LATE-PM'), meter('L-PLAN-1'), meter('L-PLAN-2'), meter('L-PLAN-NONE', noLimiter)],
    { policy: { nonPaymentRequiresPlan: false, limitBeforeCut: { enabled: true, days: 15 } } },
  );
  const limit = (meterId: string, body: Record<string, unknown>, key?: string) => w.http('POST', `/v1/meters/${meterId}/limit`, { key: key ?? w.f.operatorKey, headers: w.key(), body });
  const done = (id: string) => w.waitUntilOrder(id, 'done', (o) => ['done', 'failed', 'refused', 'superseded', 'cancelled'].includes(o.state));
  const meterView = async (meterId: string) => (await w.http('GET', `/v1/meters/${meterId}`)).body;
  const limitOfSimulated = (meterId: string) => w.f.fleet.meter(meterId).loadLimitW;

  it('a limit is set and verified by read-back, the meter shows it in force and since when; a removal lifts it, verified the same way', async () => {
    const set = await limit('L-SET', { limitW: 1500, reason: 'arrears' });
    expect(set.status, JSON.stringify(set.body)).toBe(202);
    expect(set.body).toMatchObject({ action: 'limit', limitW: 1500, reason: 'arrears' });
    const order = await done(set.body.id);
    expect(order.state, JSON.stringify(order.events)).toBe('done');
    expect(order.attempts).toHaveLength(1);
    expect(order.attempts[0].outcome).toBe('ok');
    expect(JSON.parse(order.attempts[0].evidence.command)).toMatchObject({ result: 'ok' });
    expect(JSON.parse(order.attempts[0].evidence.readBack)).toMatchObject({ loadLimitW: 1500 });
    expect(limitOfSimulated('L-SET')).toBe(1500);
    expect(w.relayOf('L-SET')).toBe('connected'); // limited, not cut
    const limited = await meterView('L-SET');
    expect(limited.loadLimit).toEqual({ limitW: 1500, since: iso(w.clock.now()), orderId: set.body.id, reason: 'arrears' });
    expect(limited.flags).toMatchObject({ hasLoadLimiter: true, loadLimitedSince: iso(w.clock.now()) });
    expect(limited.desiredRelay).toBeNull(); // a limit says nothing of the relay

    const lift = await limit('L-SET', { limitW: null, reason: 'operator' });
    expect(lift.status, JSON.stringify(lift.body)).toBe(202);
    const removal = await done(lift.body.id);
    expect(removal.state, JSON.stringify(removal.events)).toBe('done');
    expect(JSON.parse(removal.attempts[0].evidence.readBack)).toMatchObject({ loadLimitW: null });
    expect(limitOfSimulated('L-SET')).toBeNull();
    const lifted = await meterView('L-SET');
    expect(lifted.loadLimit).toBeNull();
    expect(lifted.flags.loadLimitedSince).toBeNull();
    const timeline = (await w.http('GET', '/v1/meters/L-SET/timeline')).body.items.filter((i: any) => i.kind === 'order').map((i: any) => i.summary);
    expect(timeline.some((s: string) => s.startsWith('limit of 1500 W set: read-back shows a limit of 1500 W in force'))).toBe(true);
    expect(timeline.some((s: string) => s.startsWith('limit removed: read-back shows no limit in force'))).toBe(true);
  });

  it('a meter that claims the limit without setting it is caught by the read-back: not done, retried', async () => {
    w.f.fleet.meter('L-LIAR').setFaults({ lieAboutSuccess: true });
    const set = await limit('L-LIAR', { limitW: 900, reason: 'customer_request', reference: 'REQ-L-LIAR' });
    expect(set.status, JSON.stringify(set.body)).toBe(202);
    const o = await w.waitUntilOrder(set.body.id, 'its first attempt judged', (x) => x.attemptsUsed >= 1 && x.state !== 'in_flight');
    expect(o.state, JSON.stringify(o.events)).toBe('queued');
    expect(o.attempts[0].outcome).toBe('verify_mismatch');
    expect(JSON.parse(o.attempts[0].evidence.command)).toMatchObject({ loadLimitW: 900 }); // the claim
    expect(JSON.parse(o.attempts[0].evidence.readBack)).toMatchObject({ loadLimitW: null }); // the truth
    expect(limitOfSimulated('L-LIAR')).toBeNull();
    expect((await meterView('L-LIAR')).flags.loadLimitedSince).toBeNull();
  });

  it('a limit admitted before the meter went into protected mode is refused before the wire (the gate runs again before every attempt); nothing is sent', async () => {
    const set = await limit('L-LATE-PM', { limitW: 1000, reason: 'arrears', notBefore: iso(w.clock.now() + HOUR) });
    expect(set.status, JSON.stringify(set.body)).toBe(202);
    expect(set.body.state).toBe('queued');
    await w.setFlags('L-LATE-PM', { protectedMode: true });
    await w.advance(2 * HOUR);
    const o = await w.waitUntilOrder(set.body.id, 'refused', isFinal);
    expect(o.state).toBe('refused');
    expect(o.stateReason).toMatch(/^E_PROTECTED_MODE: /);
    expect(w.wire.commands.filter((c) => c.meterId === 'L-LATE-PM' && c.op !== 'read')).toEqual([]);
    expect(limitOfSimulated('L-LATE-PM')).toBeNull();
  });

  it('a meter whose profile has no limiter: refused at admission with E_NO_LOAD_LIMITER naming the profile; nothing is created or sent', async () => {
    const r = await limit('L-NONE', { limitW: 1000, reason: 'arrears' });
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('E_NO_LOAD_LIMITER');
    expect(r.body.message).toContain(noLimiter);
    expect(await w.ordersOf('L-NONE')).toEqual([]);
  });

  it('a limit whose reason does not fit is refused (400), and a limit out of bounds too; nothing is created', async () => {
    expect((await limit('L-SET', { limitW: 1000, reason: 'payment' })).body.code).toBe('E_VALIDATION');
    expect((await limit('L-SET', { limitW: null, reason: 'arrears' })).body.code).toBe('E_VALIDATION');
    expect((await limit('L-SET', { limitW: 0, reason: 'arrears' })).status).toBe(400);
    expect((await limit('L-SET', { limitW: 1_000_001, reason: 'arrears' })).status).toBe(400);
    expect((await limit('L-SET', { limitW: 1000, reason: 'safety' })).body.code).toBe('E_REFERENCE_REQUIRED');
  });

  it('bulk: limit lines are admitted and verified; a line for a meter without limiter refuses the whole request', async () => {
    const none = await w.bulk([
      { meterId: 'L-BULK-1', action: 'limit', limitW: 2000, reason: 'safety', reference: 'INC-7' },
      { meterId: 'L-BULK-NONE', action: 'limit', limitW: 2000, reason: 'safety', reference: 'INC-7' },
    ]);
    expect(none.status).toBe(409);
    expect(none.body.code).toBe('E_NO_LOAD_LIMITER');
    expect(await w.ordersOf('L-BULK-1')).toEqual([]);
    const ok = await w.bulk([
      { meterId: 'L-BULK-1', action: 'limit', limitW: 2000, reason: 'safety', reference: 'INC-7' },
      { meterId: 'L-BULK-2', action: 'limit', limitW: 800, reason: 'customer_request', reference: 'REQ-8' },
    ]);
    expect(ok.status, JSON.stringify(ok.body)).toBe(202);
    expect(ok.body.created).toBe(2);
    for (const { id } of bulkResults(ok)) expect((await done(id)).state).toBe('done');
    expect(limitOfSimulated('L-BULK-1')).toBe(2000);
    // Counted by action, like every attempt on the wire.
    expect(String((await w.http('GET', '/metrics')).body)).toMatch(/meterline_switch_attempts_total\{[^}]*action="limit"[^}]*outcome="ok"[^}]*\} [1-9]/);
    expect(limitOfSimulated('L-BULK-2')).toBe(800);
  });

  it('plans: a limiting plan (limitW), approved by a supervisor who is not its author, limits every meter for arrears; a meter without limiter refuses the draft', async () => {
    const draft = (meters: string[]) =>
      w.http('POST', '/v1/plans', { key: w.f.operatorKey, headers: w.key(), body: { reason: 'arrears', limitW: 1100, windowFrom: iso(w.clock.now() - 60_000), windowTo: iso(w.clock.now() + DAY), meters } });
    const none = await draft(['L-PLAN-1', 'L-PLAN-NONE']);
    expect(none.status).toBe(409);
    expect(none.body.code).toBe('E_NO_LOAD_LIMITER');
    const plan = await draft(['L-PLAN-1', 'L-PLAN-2']);
    expect(plan.status, JSON.stringify(plan.body)).toBe(201);
    expect(plan.body).toMatchObject({ action: 'limit', limitW: 1100, status: 'draft' });
    const approved = await w.http('POST', `/v1/plans/${plan.body.id}/approve`, { key: w.f.supervisorKey, headers: w.key() });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    for (const item of approved.body.items) {
      const o = await done(item.orderId);
      expect(o).toMatchObject({ action: 'limit', limitW: 1100, reason: 'arrears', planId: plan.body.id, state: 'done' });
      expect(limitOfSimulated(item.meterId)).toBe(1100);
    }
    expect(w.disconnectsOnWire('L-PLAN-1') + w.disconnectsOnWire('L-PLAN-2')).toBe(0);
  });

  it('a payment for a meter limited for arrears admits the removal, which is verified; no reconnect is made for a meter that was never cut', async () => {
    expect((await done((await limit('L-PAID', { limitW: 1200, reason: 'arrears' })).body.id)).state).toBe('done');
    expect(limitOfSimulated('L-PAID')).toBe(1200);
    const p = await w.http('POST', '/v1/payments', { key: w.f.billingKey, headers: w.key(), body: { meterId: 'L-PAID', amount: 40, receivedAt: iso(w.clock.now()), kind: 'payment', reference: 'PAY-L-1' } });
    expect(p.status, JSON.stringify(p.body)).toBe(201);
    const effect = p.body.effects[0];
    expect(effect.reconnectOrderId).toBeNull();
    expect(effect.limitRemovalOrderId).toBeTruthy();
    const removal = await done(effect.limitRemovalOrderId);
    expect(removal).toMatchObject({ state: 'done', action: 'limit', limitW: null, reason: 'payment' });
    expect(limitOfSimulated('L-PAID')).toBeNull();
    expect((await meterView('L-PAID')).flags.loadLimitedSince).toBeNull();
    // Paid again with no limit in force: nothing more to lift.
    const again = await w.http('POST', '/v1/payments', { key: w.f.billingKey, headers: w.key(), body: { meterId: 'L-PAID', amount: 5, receivedAt: iso(w.clock.now()), kind: 'payment', reference: 'PAY-L-2' } });
    expect(again.body.effects[0].limitRemovalOrderId).toBeNull();
  });

  it('rule 10: an arrears cut of a limited meter is refused E_LIMIT_FIRST until the verified limit has run its days, then admitted', async () => {
    const started = w.clock.now();
    expect((await done((await limit('L-RULE10', { limitW: 1000, reason: 'arrears' })).body.id)).state).toBe('done');
    expect((await meterView('L-RULE10')).flags.loadLimitedSince).toBe(iso(started));
    await w.serveNotice('L-RULE10', 4);
    const early = await w.single('L-RULE10', { reason: 'arrears' });
    expect(early.status, JSON.stringify(early.body)).toBe(409);
    expect(early.body.code).toBe('E_LIMIT_FIRST');
    w.moveClockTo(started + 15 * DAY);
    await w.serveNotice('L-RULE10', 4);
    const later = await w.single('L-RULE10', { reason: 'arrears' });
    expect(later.status, JSON.stringify(later.body)).toBe(202);
    expect(['queued', 'held']).toContain(later.body.state);
    expect(String(later.body.stateReason ?? '')).not.toMatch(/E_LIMIT_FIRST/);
  });

  it('protected customers: not limited by default (E_PROTECTED_CUSTOMER); limited once the policy allows it; never cut for arrears', async () => {
    await w.setFlags('L-PROT', { vulnerable: true });
    const refused = await limit('L-PROT', { limitW: 1000, reason: 'arrears' });
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('E_PROTECTED_CUSTOMER');
    expect(refused.body.message).toContain('policy.limitBeforeCut.protectedCustomers');
    await w.restart((config) => ({ ...config, policy: { ...config.policy, limitBeforeCut: { ...config.policy.limitBeforeCut, protectedCustomers: true } } }));
    const allowed = await limit('L-PROT', { limitW: 1000, reason: 'arrears' });
    expect(allowed.status, JSON.stringify(allowed.body)).toBe(202);
    expect((await done(allowed.body.id)).state).toBe('done');
    expect(limitOfSimulated('L-PROT')).toBe(1000);
    await w.serveNotice('L-PROT', 4);
    const cut = await w.single('L-PROT', { reason: 'arrears' });
    expect(cut.status).toBe(409);
    expect(cut.body.code).toBe('E_PROTECTED_CUSTOMER');
    expect(w.disconnectsOnWire('L-PROT')).toBe(0);
  });
});
