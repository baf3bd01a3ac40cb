import { describe, expect, it } from 'vitest';
import { DAY, FINAL_STATES, HOUR, MIN, bulkResults, iso, orderStory, safetyWorldForFile } from './safety-harness.js';

/**
 * DOMAIN.md rule 7 (issue 20, finding 6): a reason is a claim, not an authority. Every direct disconnect carries the
 * evidence its reason needs (a reference), arrears go only through a plan approved by a supervisor who is not its
 * author, and no reason lets one operator disconnect a protected customer: customer_request and vacant_premises wait
 * for a supervisor's approval of that one order (never the one who asked for it), recorded and audited; a safety
 * disconnect is audited as an emergency. On every path: single, bulk, plan, CLI, a retry, a restart, a plan cancelled.
 *
 * One world on one fake clock (Tuesday from 10:00, inside the weekly window all along).
 */
const METERS = ['A-OK', 'A-SINGLE', 'A-VULN', 'A-EMERG', 'A-BULK-1', 'A-BULK-2', 'A-BULK-3', 'A-PLAN', 'A-CLI', 'A-APPROVE', 'A-RETRY', 'A-RESTART', 'A-CANCEL'];
const w = safetyWorldForFile(METERS);

const audit = async (target: string): Promise<any[]> => {
  const r = await w.http('GET', `/v1/audit?target=${target}&limit=1000`, { key: w.f.supervisorKey });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.items;
};
/** The operator as a person who also holds a supervisor key (issued to the demo operator's client, by its id): made once. */
let selfKey: string | undefined;
const supervisorNamedLikeTheOperator = async (): Promise<string> => {
  if (selfKey) return selfKey;
  const made = await w.http('POST', '/v1/keys', { key: w.f.adminKey, headers: w.key(), body: { clientId: 'demo-operator', role: 'supervisor' } });
  expect(made.status, JSON.stringify(made.body)).toBe(201);
  selfKey = made.body.key as string;
  return selfKey;
};

describe('rule 7: every disconnect has an authority; no reason lets one person go around a plan or a protected customer', () => {
  it('control: an operator’s customer_request with its reference at an unprotected customer reaches the wire', async () => {
    const r = await w.single('A-OK', { reason: 'customer_request', reference: 'CRM-A-OK' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body).toMatchObject({ reference: 'CRM-A-OK', requestedBy: 'demo-operator' });
    const done = await w.pollOrderState(r.body.id, FINAL_STATES);
    expect(done.state, orderStory(done)).toBe('done');
    expect(w.disconnectsOnWire('A-OK')).toBe(1);
    expect(w.f.fleet.meter('A-OK').relay).toBe('disconnected');
  });

  it('single: no reference → 400 and nothing created; arrears outside a plan → E_PLAN_REQUIRED; billing and field keys → 403', async () => {
    for (const reason of ['customer_request', 'vacant_premises', 'safety']) {
      const r = await w.single('A-SINGLE', { reason });
      expect(r.status, `${reason}: ${JSON.stringify(r.body)}`).toBe(400);
      expect(r.body.code).toBe('E_REFERENCE_REQUIRED');
    }
    // A blank reference is no evidence either.
    const blank = await w.single('A-SINGLE', { reason: 'vacant_premises', reference: '   ' });
    expect(blank.status, JSON.stringify(blank.body)).toBe(400);
    expect(blank.body.code).toBe('E_REFERENCE_REQUIRED');
    expect(await w.ordersOf('A-SINGLE')).toEqual([]);

    const arrears = await w.single('A-SINGLE', { reason: 'arrears' });
    expect(arrears.status, JSON.stringify(arrears.body)).toBe(409);
    expect(arrears.body.code).toBe('E_PLAN_REQUIRED');

    const billing = await w.single('A-SINGLE', { reason: 'customer_request', reference: 'CRM-A-SINGLE' }, w.f.billingKey);
    expect(billing.status, JSON.stringify(billing.body)).toBe(403);
    expect(billing.body.code).toBe('E_FORBIDDEN');
    const billingArrears = await w.single('A-SINGLE', { reason: 'arrears' }, w.f.billingKey);
    expect(billingArrears.status).toBe(403);

    const field = await w.http('POST', '/v1/keys', { key: w.f.adminKey, headers: w.key(), body: { name: 'crew-a-7', role: 'field' } });
    expect(field.status, JSON.stringify(field.body)).toBe(201);
    for (const reason of ['customer_request', 'vacant_premises', 'safety']) {
      const r = await w.single('A-SINGLE', { reason, reference: 'REF-FIELD-1' }, field.body.key);
      expect(r.status, `${reason}: ${JSON.stringify(r.body)}`).toBe(403);
      expect(r.body.code).toBe('E_FORBIDDEN');
    }
    await w.settle();
    // Only the refused arrears order exists; nothing is held or queued, nothing reached the wire.
    expect((await w.ordersOf('A-SINGLE')).map((o) => o.state)).toEqual(['refused']);
    expect(w.disconnectsOnWire('A-SINGLE')).toBe(0);
    expect(w.f.fleet.meter('A-SINGLE').relay).toBe('connected');
  });

  it('finding 6: an operator’s customer_request for a vulnerable customer waits for a supervisor and is not sent; a safety disconnect is audited as an emergency', async () => {
    await w.setFlags('A-VULN', { vulnerable: true });
    const r = await w.single('A-VULN', { reason: 'customer_request', reference: 'CRM-A-VULN' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body.state).toBe('held');
    expect(r.body.stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
    await w.advance(30 * MIN, 3); // past the 15-minute re-check: still held
    const held = await w.waitForReason(r.body.id, 'E_APPROVAL_REQUIRED');
    expect(held.state, orderStory(held)).toBe('held');
    await w.settle();
    expect(w.disconnectsOnWire('A-VULN'), orderStory(held)).toBe(0);
    expect(w.f.fleet.meter('A-VULN').relay).toBe('connected');

    const s = await w.single('A-EMERG', { reason: 'safety', reference: 'INC-A-EMERG' });
    expect(s.status, JSON.stringify(s.body)).toBe(202);
    expect((await w.pollOrderState(s.body.id, FINAL_STATES)).state).toBe('done');
    expect(w.disconnectsOnWire('A-EMERG')).toBe(1);
    const entries = await audit('A-EMERG');
    const emergency = entries.filter((e) => e.action === 'order.disconnect.emergency');
    expect(emergency, JSON.stringify(entries)).toHaveLength(1);
    expect(emergency[0]).toMatchObject({ actor: 'demo-operator', details: { orderId: s.body.id, reason: 'safety', reference: 'INC-A-EMERG' } });
  });

  it('bulk: one disconnect without its reference refuses the whole request; with the references a mixed bulk passes and goes', async () => {
    const bad = await w.bulk([
      { meterId: 'A-BULK-1', action: 'disconnect', reason: 'customer_request', reference: 'CRM-A-BULK-1' },
      { meterId: 'A-BULK-2', action: 'disconnect', reason: 'vacant_premises' },
      { meterId: 'A-BULK-3', action: 'disconnect', reason: 'safety', reference: 'INC-A-BULK-3' },
    ]);
    expect(bad.status, JSON.stringify(bad.body)).toBe(400);
    expect(bad.body).toMatchObject({ code: 'E_REFERENCE_REQUIRED', details: { index: 1, meterId: 'A-BULK-2' } });
    await w.settle();
    for (const m of ['A-BULK-1', 'A-BULK-2', 'A-BULK-3']) {
      expect(await w.ordersOf(m)).toEqual([]);
      expect(w.disconnectsOnWire(m)).toBe(0);
    }

    const good = await w.bulk([
      { meterId: 'A-BULK-1', action: 'disconnect', reason: 'customer_request', reference: 'CRM-A-BULK-1' },
      { meterId: 'A-BULK-2', action: 'disconnect', reason: 'vacant_premises', reference: 'MOVE-OUT-A-BULK-2' },
      { meterId: 'A-BULK-3', action: 'disconnect', reason: 'safety', reference: 'INC-A-BULK-3' },
    ]);
    expect(good.status, JSON.stringify(good.body)).toBe(202);
    expect(good.body.created).toBe(3);
    for (const o of bulkResults(good)) expect((await w.pollOrderState(o.id, FINAL_STATES)).state, orderStory(await w.order(o.id))).toBe('done');
    for (const m of ['A-BULK-1', 'A-BULK-2', 'A-BULK-3']) expect(w.disconnectsOnWire(m)).toBe(1);
    // The safety line is audited as an emergency on the bulk path too, with its incident reference.
    const entries = await audit('A-BULK-3');
    expect(entries.filter((e) => e.action === 'order.disconnect.emergency').map((e) => e.details.reference), JSON.stringify(entries)).toEqual(['INC-A-BULK-3']);
  });

  it('plan: its author cannot approve it even with a supervisor key (E_SELF_APPROVAL), nothing is sent; a plan is for arrears only', async () => {
    await w.serveNotice('A-PLAN', 4);
    const selfSupervisor = await supervisorNamedLikeTheOperator();
    const draft = await w.http('POST', '/v1/plans', {
      key: w.f.operatorKey,
      headers: w.key(),
      body: { reason: 'arrears', windowFrom: iso(w.clock.now() - MIN), windowTo: iso(w.clock.now() + 2 * DAY), meters: ['A-PLAN'] },
    });
    expect(draft.status, JSON.stringify(draft.body)).toBe(201);
    expect(draft.body.author).toBe('demo-operator');
    const self = await w.http('POST', `/v1/plans/${draft.body.id}/approve`, { key: selfSupervisor, headers: w.key() });
    expect(self.status, JSON.stringify(self.body)).toBe(403);
    expect(self.body.code).toBe('E_SELF_APPROVAL');
    const plan = (await w.http('GET', `/v1/plans/${draft.body.id}`)).body;
    expect(plan.status).toBe('draft');
    expect(plan.items[0].orderId).toBeNull();
    await w.settle();
    expect(await w.ordersOf('A-PLAN')).toEqual([]);
    expect(w.disconnectsOnWire('A-PLAN')).toBe(0);

    const request = await w.http('POST', '/v1/plans', {
      key: w.f.operatorKey,
      headers: w.key(),
      body: { reason: 'customer_request', windowFrom: iso(w.clock.now()), windowTo: iso(w.clock.now() + DAY), meters: ['A-PLAN'] },
    });
    expect(request.status, JSON.stringify(request.body)).toBe(400);
    expect(request.body.code).toBe('E_VALIDATION');
    const plans = (await w.http('GET', '/v1/plans')).body.items.filter((p: any) => p.items.some((i: any) => i.meterId === 'A-PLAN'));
    expect(plans.map((p: any) => p.id)).toEqual([draft.body.id]);
    expect((await w.http('POST', `/v1/plans/${draft.body.id}/cancel`, { headers: w.key() })).status).toBe(200);
    await w.settle();
    expect(w.disconnectsOnWire('A-PLAN')).toBe(0);
  });

  it('CLI: no --reference → exit 2 with E_REFERENCE_REQUIRED; no --reason → exit 2 offering exactly the reasons whoami gives the key', async () => {
    const noRef = await w.cli(['disconnect', 'A-CLI', '--reason', 'customer_request']);
    expect(noRef.code, noRef.stderr).toBe(2);
    expect(noRef.stderr).toContain('E_REFERENCE_REQUIRED');

    const who = await w.http('GET', '/v1/whoami');
    expect(who.status).toBe(200);
    expect([...who.body.disconnectReasons].sort()).toEqual(['customer_request', 'safety', 'vacant_premises']);
    const noReason = await w.cli(['disconnect', 'A-CLI']);
    expect(noReason.code, noReason.stderr).toBe(2);
    const offered = /one of (.+?) \(the reasons your key may use\)/.exec(noReason.stderr)?.[1];
    expect(offered, noReason.stderr).toBeDefined();
    expect(offered!.split(', ').sort()).toEqual([...who.body.disconnectReasons].sort());

    const whoami = await w.cli(['whoami']);
    expect(whoami.code, whoami.stderr).toBe(0);
    const listed = /disconnect reasons: (.+)/.exec(whoami.stdout)?.[1];
    expect(listed, whoami.stdout).toBeDefined();
    expect(listed!.trim().split(', ').sort()).toEqual([...who.body.disconnectReasons].sort());

    // A key whose role may name no reason is told so, and nothing is offered.
    const billing = await w.cli(['disconnect', 'A-CLI'], w.f.billingKey);
    expect(billing.code, billing.stderr).toBe(5);
    expect(billing.stderr).toContain('E_REASON_NOT_ALLOWED');

    await w.settle();
    expect(await w.ordersOf('A-CLI')).toEqual([]);
    expect(w.disconnectsOnWire('A-CLI')).toBe(0);
  });

  it('approval: the one who asked cannot approve (E_SELF_APPROVAL); another supervisor’s approval is recorded and audited, then the order goes', async () => {
    await w.setFlags('A-APPROVE', { vulnerable: true });
    const r = await w.single('A-APPROVE', { reason: 'customer_request', reference: 'CRM-A-APPROVE' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body.stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
    const id = r.body.id as string;

    const self = await w.http('POST', `/v1/orders/${id}/approve`, { key: await supervisorNamedLikeTheOperator(), headers: w.key() });
    expect(self.status, JSON.stringify(self.body)).toBe(403);
    expect(self.body.code).toBe('E_SELF_APPROVAL');
    await w.settle();
    const still = await w.order(id);
    expect(still, orderStory(still)).toMatchObject({ state: 'held', approvedBy: null, approvedAt: null });
    expect(w.disconnectsOnWire('A-APPROVE')).toBe(0);

    const approved = await w.http('POST', `/v1/orders/${id}/approve`, { key: w.f.supervisorKey, headers: w.key() });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    const when = iso(w.clock.now());
    expect(approved.body).toMatchObject({ approvedBy: 'demo-supervisor', approvedAt: when });
    const done = await w.pollOrderState(id, FINAL_STATES);
    expect(done.state, orderStory(done)).toBe('done');
    expect(done).toMatchObject({ approvedBy: 'demo-supervisor', approvedAt: when });
    expect(w.disconnectsOnWire('A-APPROVE')).toBe(1);
    const entries = (await audit('A-APPROVE')).filter((e) => e.action === 'order.approve');
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ actor: 'demo-supervisor', details: { orderId: id, reference: 'CRM-A-APPROVE', requestedBy: 'demo-operator' } });
  });

  it('retry: a vacant_premises disconnect whose first command was dropped waits for approval once the customer is on the priority register; exactly one command', async () => {
    w.f.fleet.meter('A-RETRY').dropCommands(1);
    const r = await w.single('A-RETRY', { reason: 'vacant_premises', reference: 'MOVE-OUT-A-RETRY' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const id = r.body.id as string;
    await w.firstAttemptDropped(id, 'A-RETRY');
    await w.setFlags('A-RETRY', { priorityRegister: true });
    await w.advance(MIN, 1); // the retry is due
    const held = await w.waitForReason(id, 'E_APPROVAL_REQUIRED');
    expect(held.state, orderStory(held)).toBe('held');
    await w.settle();
    expect(w.disconnectsOnWire('A-RETRY'), orderStory(held)).toBe(1);
    expect(w.f.fleet.meter('A-RETRY').relay).toBe('connected');
  });

  it('restart: an order held for approval stays held across a restart; approved after it by the supervisor, it goes', async () => {
    await w.setFlags('A-RESTART', { vulnerable: true });
    const r = await w.single('A-RESTART', { reason: 'customer_request', reference: 'CRM-A-RESTART' });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const id = r.body.id as string;
    expect(r.body.stateReason).toMatch(/^E_APPROVAL_REQUIRED: /);
    await w.restart();
    await w.advance(20 * MIN, 2); // past the 15-minute re-check under the restarted gateway
    const held = await w.waitForReason(id, 'E_APPROVAL_REQUIRED');
    expect(held.state, orderStory(held)).toBe('held');
    await w.settle();
    expect(w.disconnectsOnWire('A-RESTART'), orderStory(held)).toBe(0);

    const approved = await w.http('POST', `/v1/orders/${id}/approve`, { key: w.f.supervisorKey, headers: w.key() });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    const done = await w.pollOrderState(id, FINAL_STATES);
    expect(done.state, orderStory(done)).toBe('done');
    expect(w.disconnectsOnWire('A-RESTART')).toBe(1);
  });

  it('policy change: a plan cancelled while its order waits for the second notice’s 30 minutes: the order is cancelled, nothing is sent', async () => {
    await w.serveNotice('A-CANCEL', 4);
    const plan = await w.plan(['A-CANCEL']);
    const id = plan.items['A-CANCEL']!.orderId!;
    expect(id, JSON.stringify(plan)).toBeTruthy();
    await w.waitForReason(id, 'E_SECOND_NOTICE_PENDING');
    await w.waitFor('the pre-disconnect notice delivered', async () => ((await w.order(id)).notifications ?? []).some((n: any) => n.deliveredAt !== null));

    const cancelled = await w.http('POST', `/v1/plans/${plan.id}/cancel`, { key: w.f.operatorKey, headers: w.key() });
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(200);
    expect(cancelled.body.status).toBe('cancelled');
    const order = await w.pollOrderState(id, FINAL_STATES);
    expect(order.state, orderStory(order)).toBe('cancelled');
    await w.advance(HOUR, 4);
    await w.settle();
    expect((await w.order(id)).state).toBe('cancelled');
    expect(w.disconnectsOnWire('A-CANCEL')).toBe(0);
    expect(w.f.fleet.meter('A-CANCEL').relay).toBe('connected');
  });
});
