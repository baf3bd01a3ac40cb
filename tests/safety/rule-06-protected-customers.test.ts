import { describe, expect, it } from 'vitest';
import type { TestMeter } from '../harness/gateway-fixture.js';
import { DAY, FINAL_STATES, HOUR, MIN, bulkResults, connectedMeter, iso, orderStory, safetyWorldForFile } from './safety-harness.js';

/**
 * DOMAIN.md rule 6: a customer flagged vulnerable, medical-equipment or on a priority register is never disconnected
 * for arrears (refused E_PROTECTED_CUSTOMER, the case goes to a person); a customer_request or vacant_premises
 * disconnect waits for a supervisor's approval of that one order (E_APPROVAL_REQUIRED), as does a safety disconnect
 * at a medical-equipment customer. On every path, and for flags set after the order was admitted: before a retry,
 * across a restart, while the order is held for another rule.
 *
 * One world on one fake clock (Tuesday from 10:00, inside the weekly window all along).
 */
const METERS: TestMeter[] = [
  connectedMeter('P-PLAN-VULN'),
  connectedMeter('P-PLAN-MED'),
  connectedMeter('P-PLAN-PRIO'),
  connectedMeter('P-SINGLE'),
  connectedMeter('P-BULK'),
  connectedMeter('P-BULK-OK'),
  connectedMeter('P-CLI'),
  connectedMeter('P-SAFETY-MED'),
  connectedMeter('P-SAFETY-VULN'),
  connectedMeter('P-RETRY'),
  connectedMeter('P-RESTART'),
  connectedMeter('P-CHANGE-REQ', 'hills'),
  connectedMeter('P-CHANGE-PLAN', 'hills'),
  connectedMeter('P-CHANGE-OK', 'hills'),
];
const w = safetyWorldForFile(METERS);

/** An arrears plan order that has had its pre-disconnect notice delivered: it waits for the 30 minutes. */
const planWaitingForSecondNotice = async (meterId: string): Promise<string> => {
  await w.serveNotice(meterId, 4);
  const plan = await w.plan([meterId]);
  const id = plan.items[meterId]!.orderId!;
  expect(id, JSON.stringify(plan)).toBeTruthy();
  await w.waitForReason(id, 'E_SECOND_NOTICE_PENDING');
  await w.waitFor(`${meterId}'s pre-disconnect notice delivered`, async () => ((await w.order(id)).notifications ?? []).some((n: any) => n.deliveredAt !== null));
  return id;
};

describe('rule 6: protected customers are never disconnected for arrears, and otherwise only with a supervisor’s approval', () => {
  it('plan: arrears for a vulnerable, a medical-equipment and a priority-register customer are refused E_PROTECTED_CUSTOMER; nothing is sent', async () => {
    await w.setFlags('P-PLAN-VULN', { vulnerable: true });
    await w.setFlags('P-PLAN-MED', { medicalEquipment: true });
    await w.setFlags('P-PLAN-PRIO', { priorityRegister: true });
    for (const m of ['P-PLAN-VULN', 'P-PLAN-MED', 'P-PLAN-PRIO']) await w.serveNotice(m, 4);
    const plan = await w.plan(['P-PLAN-VULN', 'P-PLAN-MED', 'P-PLAN-PRIO']);
    for (const m of ['P-PLAN-VULN', 'P-PLAN-MED', 'P-PLAN-PRIO']) {
      expect(plan.items[m], JSON.stringify(plan)).toMatchObject({ state: 'refused', why: expect.stringMatching(/^E_PROTECTED_CUSTOMER: /) });
    }
    await w.settle();
    for (const m of ['P-PLAN-VULN', 'P-PLAN-MED', 'P-PLAN-PRIO']) {
      expect((await w.order(plan.items[m]!.orderId!)).state).toBe('refused');
      expect(w.disconnectsOnWire(m)).toBe(0);
      expect(w.preDisconnectNoticesTo(m).length).toBe(0);
      expect(w.f.fleet.meter(m).relay).toBe('connected');
    }
  });

  it('control, single: a vulnerable customer’s request waits for a supervisor (not an operator); approved, it goes', async () => {
    await w.setFlags('P-SINGLE', { vulnerable: true });
    const r = await w.single('P-SINGLE', { reason: 'customer_request', reference: 'CRM-P-SINGLE' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body.state).toBe('held');
    expect(r.body.stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
    const id = r.body.id as string;
    await w.advance(2 * HOUR, 8); // hours pass: the order is looked at again every 15 minutes and stays held
    await w.settle();
    const waiting = await w.order(id);
    expect(waiting.state, orderStory(waiting)).toBe('held');
    expect(waiting.stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
    expect(w.disconnectsOnWire('P-SINGLE')).toBe(0);

    const byOperator = await w.http('POST', `/v1/orders/${id}/approve`, { key: w.f.operatorKey, headers: w.key() });
    expect(byOperator.status).toBe(403);
    expect(byOperator.body.code).toBe('E_FORBIDDEN');
    expect((await w.order(id)).approvedBy).toBeNull();
    const bySupervisor = await w.http('POST', `/v1/orders/${id}/approve`, { key: w.f.supervisorKey, headers: w.key() });
    expect(bySupervisor.status, JSON.stringify(bySupervisor.body)).toBe(200);
    expect(bySupervisor.body).toMatchObject({ approvedBy: 'demo-supervisor', approvedAt: iso(w.clock.now()) });
    const done = await w.pollOrderState(id, FINAL_STATES);
    expect(done.state, orderStory(done)).toBe('done');
    expect(done.approvedBy).toBe('demo-supervisor');
    expect(w.disconnectsOnWire('P-SINGLE')).toBe(1);
    expect(w.f.fleet.meter('P-SINGLE').relay).toBe('disconnected');
  });

  it('bulk: vacant_premises for a priority-register customer is held for approval and not sent (an unprotected one in the same request goes)', async () => {
    await w.setFlags('P-BULK', { priorityRegister: true });
    const r = await w.bulk([
      { meterId: 'P-BULK', action: 'disconnect', reason: 'vacant_premises', reference: 'MOVE-OUT-P-BULK' },
      { meterId: 'P-BULK-OK', action: 'disconnect', reason: 'vacant_premises', reference: 'MOVE-OUT-P-BULK-OK' },
    ]);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const [held, ok] = bulkResults(r);
    expect(held!.state).toBe('held');
    expect(held!.reason).toMatch(/^E_APPROVAL_REQUIRED: /);
    expect((await w.pollOrderState(ok!.id, FINAL_STATES)).state).toBe('done');
    await w.settle();
    const still = await w.order(held!.id);
    expect(still.state, orderStory(still)).toBe('held');
    expect(w.disconnectsOnWire('P-BULK')).toBe(0);
    expect(w.disconnectsOnWire('P-BULK-OK')).toBe(1);
    expect(w.f.fleet.meter('P-BULK').relay).toBe('connected');
  });

  it('CLI: a customer_request for a medical-equipment customer exits 0 held; nothing is sent until `meterline approve` by a supervisor', async () => {
    await w.setFlags('P-CLI', { medicalEquipment: true });
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
    const done = await w.pollOrderState(order.id, FINAL_STATES);
    expect(done.state, orderStory(done)).toBe('done');
    expect(w.disconnectsOnWire('P-CLI')).toBe(1);
  });

  it('safety: at a medical-equipment customer it waits for approval; at a vulnerable (not medical) customer it goes at once', async () => {
    await w.setFlags('P-SAFETY-MED', { medicalEquipment: true });
    await w.setFlags('P-SAFETY-VULN', { vulnerable: true });
    const med = await w.single('P-SAFETY-MED', { reason: 'safety', reference: 'INC-1' });
    expect(med.status, JSON.stringify(med.body)).toBe(202);
    expect(med.body.state).toBe('held');
    expect(med.body.stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
    const vuln = await w.single('P-SAFETY-VULN', { reason: 'safety', reference: 'INC-1' });
    expect(vuln.status, JSON.stringify(vuln.body)).toBe(202);
    const done = await w.pollOrderState(vuln.body.id, FINAL_STATES);
    expect(done.state, orderStory(done)).toBe('done');
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
    await w.firstAttemptDropped(id, 'P-RETRY');
    await w.setFlags('P-RETRY', { vulnerable: true });
    await w.advance(MIN, 1);
    const refused = await w.waitForReason(id, 'E_PROTECTED_CUSTOMER');
    expect(refused.state, orderStory(refused)).toBe('refused');
    await w.settle();
    expect(w.disconnectsOnWire('P-RETRY'), orderStory(await w.order(id))).toBe(1);
    expect(w.f.fleet.meter('P-RETRY').relay).toBe('connected');
  });

  it('restart: medical equipment flagged while an arrears order waits for its 30 minutes, then a restart: refused, nothing sent', async () => {
    const id = await planWaitingForSecondNotice('P-RESTART');
    await w.setFlags('P-RESTART', { medicalEquipment: true });
    await w.restart();
    await w.advance(HOUR, 4);
    const refused = await w.waitForReason(id, 'E_PROTECTED_CUSTOMER');
    expect(refused.state, orderStory(refused)).toBe('refused');
    await w.settle();
    expect(w.disconnectsOnWire('P-RESTART'), orderStory(refused)).toBe(0);
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
    await w.waitForReason(planOrder, 'E_OUTSIDE_WINDOW');

    await w.setFlags('P-CHANGE-REQ', { vulnerable: true });
    await w.setFlags('P-CHANGE-PLAN', { medicalEquipment: true });
    const lifted = await w.http('DELETE', `/v1/policy/weather/${freeze.body.id}`, { key: w.f.supervisorKey, headers: w.key() });
    expect(lifted.status).toBe(200);
    // Positive evidence that the lift released the held orders: the unprotected one goes.
    const done = await w.pollOrderState(ok.body.id, FINAL_STATES);
    expect(done.state, orderStory(done)).toBe('done');
    const waiting = await w.waitForReason(req.body.id, 'E_APPROVAL_REQUIRED');
    expect(waiting.state, orderStory(waiting)).toBe('held');
    const refused = await w.waitForReason(planOrder, 'E_PROTECTED_CUSTOMER');
    expect(refused.state, orderStory(refused)).toBe('refused');
    await w.settle();
    expect(w.disconnectsOnWire('P-CHANGE-REQ')).toBe(0);
    expect(w.disconnectsOnWire('P-CHANGE-PLAN')).toBe(0);
    expect(w.preDisconnectNoticesTo('P-CHANGE-PLAN').length).toBe(0);
    expect(w.disconnectsOnWire('P-CHANGE-OK')).toBe(1);
  });
});
