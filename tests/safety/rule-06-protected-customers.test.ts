import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestMeter } from '../harness/gateway-fixture.js';
import { CLOSES, DAY, HOUR, MIN, bulkResults, startSafetyWorld, type SafetyWorld } from './safety-harness.js';

/**
 * DOMAIN.md rule 6: a customer flagged vulnerable, medical-equipment or on a priority register is never disconnected
 * for arrears (refused E_PROTECTED_CUSTOMER, the case goes to a person); a customer_request or vacant_premises
 * disconnect waits for a supervisor's approval of that one order (E_APPROVAL_REQUIRED), as does a safety disconnect
 * at a medical-equipment customer. On every path, and for flags set after the order was admitted: before a retry,
 * across a restart, while the order is held for another rule.
 *
 * One world on one fake clock (Tuesday from 10:00, inside the weekly window all along).
 */
const meter = (meterId: string, region?: string): TestMeter => ({ meterId, profileId: CLOSES, initialRelay: 'connected', ...(region ? { region } : {}) });
const METERS: TestMeter[] = [
  meter('P-PLAN-VULN'),
  meter('P-PLAN-MED'),
  meter('P-PLAN-PRIO'),
  meter('P-SINGLE'),
  meter('P-BULK'),
  meter('P-BULK-OK'),
  meter('P-CLI'),
  meter('P-SAFETY-MED'),
  meter('P-SAFETY-VULN'),
  meter('P-RETRY'),
  meter('P-RESTART'),
  meter('P-CHANGE-REQ', 'hills'),
  meter('P-CHANGE-PLAN', 'hills'),
  meter('P-CHANGE-OK', 'hills'),
];
let w: SafetyWorld;

beforeAll(async () => {
  w = await startSafetyWorld(METERS);
}, 60_000);
afterAll(async () => {
  await w?.close();
});

const iso = (ms: number) => new Date(ms).toISOString();
const story = (o: any) => JSON.stringify({ id: o.id, state: o.state, stateReason: o.stateReason, attemptsUsed: o.attemptsUsed, approvedBy: o.approvedBy, events: o.events }, null, 1);
const reasonIs = async (id: string, code: string, timeoutMs?: number) => {
  await w.waitFor(`order ${id} to be ${code}`, async () => ((await w.order(id)).stateReason ?? '').startsWith(code), timeoutMs);
  return w.order(id);
};
const reach = async (id: string, states: string[], timeoutMs = 8_000) => {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const o = await w.order(id);
    if (states.includes(o.state) || Date.now() > until) return o;
    await new Promise((r) => setTimeout(r, 40));
  }
};
const FINAL = ['done', 'failed', 'refused', 'cancelled', 'superseded'];
const flag = async (meterId: string, flags: Record<string, boolean>) => {
  const r = await w.http('PUT', `/v1/meters/${meterId}/flags`, { key: w.f.billingKey, headers: w.key(), body: flags });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
};
/** An arrears plan order that has had its pre-disconnect notice delivered: it waits for the 30 minutes. */
const planWaitingForSecondNotice = async (meterId: string): Promise<string> => {
  await w.serveNotice(meterId, 4);
  const plan = await w.plan([meterId]);
  const id = plan.items[meterId]!.orderId!;
  expect(id, JSON.stringify(plan)).toBeTruthy();
  await reasonIs(id, 'E_SECOND_NOTICE_PENDING');
  await w.waitFor(`${meterId}'s pre-disconnect notice delivered`, async () => ((await w.order(id)).notifications ?? []).some((n: any) => n.deliveredAt !== null));
  return id;
};
const noticesTo = (meterId: string) => w.channel.received.filter((m) => m.kind === 'pre_disconnect_notice' && m.body.meterId === meterId).length;

describe('rule 6: protected customers are never disconnected for arrears, and otherwise only with a supervisor’s approval', () => {
  it('plan: arrears for a vulnerable, a medical-equipment and a priority-register customer are refused E_PROTECTED_CUSTOMER; nothing is sent', async () => {
    await flag('P-PLAN-VULN', { vulnerable: true });
    await flag('P-PLAN-MED', { medicalEquipment: true });
    await flag('P-PLAN-PRIO', { priorityRegister: true });
    for (const m of ['P-PLAN-VULN', 'P-PLAN-MED', 'P-PLAN-PRIO']) await w.serveNotice(m, 4);
    const plan = await w.plan(['P-PLAN-VULN', 'P-PLAN-MED', 'P-PLAN-PRIO']);
    for (const m of ['P-PLAN-VULN', 'P-PLAN-MED', 'P-PLAN-PRIO']) {
      expect(plan.items[m], JSON.stringify(plan)).toMatchObject({ state: 'refused', why: expect.stringMatching(/^E_PROTECTED_CUSTOMER: /) });
    }
    await w.settle();
    for (const m of ['P-PLAN-VULN', 'P-PLAN-MED', 'P-PLAN-PRIO']) {
      expect((await w.order(plan.items[m]!.orderId!)).state).toBe('refused');
      expect(w.disconnectsOnWire(m)).toBe(0);
      expect(noticesTo(m)).toBe(0);
      expect(w.f.fleet.meter(m).relay).toBe('connected');
    }
  });

  it('control, single: a vulnerable customer’s request waits for a supervisor (not an operator); approved, it goes', async () => {
    await flag('P-SINGLE', { vulnerable: true });
    const r = await w.single('P-SINGLE', { reason: 'customer_request', reference: 'CRM-P-SINGLE' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body.state).toBe('held');
    expect(r.body.stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
    const id = r.body.id as string;
    await w.advance(2 * HOUR, 8); // hours pass: the order is looked at again every 15 minutes and stays held
    await w.settle();
    const waiting = await w.order(id);
    expect(waiting.state, story(waiting)).toBe('held');
    expect(waiting.stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
    expect(w.disconnectsOnWire('P-SINGLE')).toBe(0);

    const byOperator = await w.http('POST', `/v1/orders/${id}/approve`, { key: w.f.operatorKey, headers: w.key() });
    expect(byOperator.status).toBe(403);
    expect(byOperator.body.code).toBe('E_FORBIDDEN');
    expect((await w.order(id)).approvedBy).toBeNull();
    const bySupervisor = await w.http('POST', `/v1/orders/${id}/approve`, { key: w.f.supervisorKey, headers: w.key() });
    expect(bySupervisor.status, JSON.stringify(bySupervisor.body)).toBe(200);
    expect(bySupervisor.body).toMatchObject({ approvedBy: 'demo-supervisor', approvedAt: iso(w.clock.now()) });
    const done = await reach(id, FINAL);
    expect(done.state, story(done)).toBe('done');
    expect(done.approvedBy).toBe('demo-supervisor');
    expect(w.disconnectsOnWire('P-SINGLE')).toBe(1);
    expect(w.f.fleet.meter('P-SINGLE').relay).toBe('disconnected');
  });

  it('bulk: vacant_premises for a priority-register customer is held for approval and not sent (an unprotected one in the same request goes)', async () => {
    await flag('P-BULK', { priorityRegister: true });
    const r = await w.bulk([
      { meterId: 'P-BULK', action: 'disconnect', reason: 'vacant_premises', reference: 'MOVE-OUT-P-BULK' },
      { meterId: 'P-BULK-OK', action: 'disconnect', reason: 'vacant_premises', reference: 'MOVE-OUT-P-BULK-OK' },
    ]);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const [held, ok] = bulkResults(r);
    expect(held!.state).toBe('held');
    expect(held!.reason).toMatch(/^E_APPROVAL_REQUIRED: /);
    expect((await reach(ok!.id, FINAL)).state).toBe('done');
    await w.settle();
    const still = await w.order(held!.id);
    expect(still.state, story(still)).toBe('held');
    expect(w.disconnectsOnWire('P-BULK')).toBe(0);
    expect(w.disconnectsOnWire('P-BULK-OK')).toBe(1);
    expect(w.f.fleet.meter('P-BULK').relay).toBe('connected');
  });

  it('CLI: a customer_request for a medical-equipment customer exits 0 held; nothing is sent until `meterline approve` by a supervisor', async () => {
    await flag('P-CLI', { medicalEquipment: true });
    const r = await w.cli(['disconnect', 'P-CLI', '--reason', 'customer_request', '--reference', 'CRM-P-CLI', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const order = JSON.parse(r.stdout);
    expect(order.state).toBe('held');
    expect(order.stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
    await w.settle();
    expect(w.disconnectsOnWire('P-CLI')).toBe(0);

    const approved = await w.cli(['approve', order.id, '--json'], w.f.supervisorKey);
    expect(approved.code, approved.stderr).toBe(0);
    expect(JSON.parse(approved.stdout).approvedBy).toBe('demo-supervisor');
    const done = await reach(order.id, FINAL);
    expect(done.state, story(done)).toBe('done');
    expect(w.disconnectsOnWire('P-CLI')).toBe(1);
  });

  it('safety: at a medical-equipment customer it waits for approval; at a vulnerable (not medical) customer it goes at once', async () => {
    await flag('P-SAFETY-MED', { medicalEquipment: true });
    await flag('P-SAFETY-VULN', { vulnerable: true });
    const med = await w.single('P-SAFETY-MED', { reason: 'safety', reference: 'INC-1' });
    expect(med.status, JSON.stringify(med.body)).toBe(202);
    expect(med.body.state).toBe('held');
    expect(med.body.stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
    const vuln = await w.single('P-SAFETY-VULN', { reason: 'safety', reference: 'INC-1' });
    expect(vuln.status, JSON.stringify(vuln.body)).toBe(202);
    const done = await reach(vuln.body.id, FINAL);
    expect(done.state, story(done)).toBe('done');
    expect(w.disconnectsOnWire('P-SAFETY-VULN')).toBe(1);
    await w.settle();
    expect((await w.order(med.body.id)).state).toBe('held');
    expect(w.disconnectsOnWire('P-SAFETY-MED')).toBe(0);
    expect(w.f.fleet.meter('P-SAFETY-MED').relay).toBe('connected');
  });

  it('retry: an arrears order whose first command was dropped is refused once the customer is flagged vulnerable; exactly one command', async () => {
    const id = await planWaitingForSecondNotice('P-RETRY');
    w.f.fleet.meter('P-RETRY').dropCommands(1);
    await w.advance(31 * MIN, 2);
    await w.waitFor('the first attempt to fail', async () => {
      const o = await w.order(id);
      return o.attemptsUsed >= 1 && o.state === 'queued';
    });
    await w.waitFor('the dropped command on the wire', () => w.disconnectsOnWire('P-RETRY') >= 1);
    await flag('P-RETRY', { vulnerable: true });
    await w.advance(MIN, 1);
    const refused = await reasonIs(id, 'E_PROTECTED_CUSTOMER');
    expect(refused.state, story(refused)).toBe('refused');
    await w.settle();
    expect(w.disconnectsOnWire('P-RETRY'), story(await w.order(id))).toBe(1);
    expect(w.f.fleet.meter('P-RETRY').relay).toBe('connected');
  });

  it('restart: medical equipment flagged while an arrears order waits for its 30 minutes, then a restart: refused, nothing sent', async () => {
    const id = await planWaitingForSecondNotice('P-RESTART');
    await flag('P-RESTART', { medicalEquipment: true });
    await w.restart();
    await w.advance(HOUR, 4);
    const refused = await reasonIs(id, 'E_PROTECTED_CUSTOMER');
    expect(refused.state, story(refused)).toBe('refused');
    await w.settle();
    expect(w.disconnectsOnWire('P-RESTART'), story(refused)).toBe(0);
    expect(w.f.fleet.meter('P-RESTART').relay).toBe('connected');
  });

  it('policy change: flags set while orders are held for a freeze: when it is lifted, the request waits for approval and the arrears order is refused; nothing is sent', async () => {
    const now = w.clock.now();
    const freeze = await w.http('POST', '/v1/policy/weather', { key: w.f.supervisorKey, headers: w.key(), body: { kind: 'freeze', from: iso(now - MIN), to: iso(now + 2 * DAY), regions: ['hills'] } });
    expect(freeze.status, JSON.stringify(freeze.body)).toBe(201);
    const req = await w.single('P-CHANGE-REQ', { reason: 'customer_request', reference: 'CRM-P-CHANGE' });
    expect(req.body.stateReason).toMatch(/^E_OUTSIDE_WINDOW: /);
    const ok = await w.single('P-CHANGE-OK', { reason: 'customer_request', reference: 'CRM-P-CHANGE-OK' });
    expect(ok.body.stateReason).toMatch(/^E_OUTSIDE_WINDOW: /);
    await w.serveNotice('P-CHANGE-PLAN', 4);
    const plan = await w.plan(['P-CHANGE-PLAN']);
    const planOrder = plan.items['P-CHANGE-PLAN']!.orderId!;
    await reasonIs(planOrder, 'E_OUTSIDE_WINDOW');

    await flag('P-CHANGE-REQ', { vulnerable: true });
    await flag('P-CHANGE-PLAN', { medicalEquipment: true });
    const lifted = await w.http('DELETE', `/v1/policy/weather/${freeze.body.id}`, { key: w.f.supervisorKey, headers: w.key() });
    expect(lifted.status).toBe(200);
    // Positive evidence that the lift released the held orders: the unprotected one goes.
    const done = await reach(ok.body.id, FINAL);
    expect(done.state, story(done)).toBe('done');
    const waiting = await reasonIs(req.body.id, 'E_APPROVAL_REQUIRED');
    expect(waiting.state, story(waiting)).toBe('held');
    const refused = await reasonIs(planOrder, 'E_PROTECTED_CUSTOMER');
    expect(refused.state, story(refused)).toBe('refused');
    await w.settle();
    expect(w.disconnectsOnWire('P-CHANGE-REQ')).toBe(0);
    expect(w.disconnectsOnWire('P-CHANGE-PLAN')).toBe(0);
    expect(noticesTo('P-CHANGE-PLAN')).toBe(0);
    expect(w.disconnectsOnWire('P-CHANGE-OK')).toBe(1);
  });
});
