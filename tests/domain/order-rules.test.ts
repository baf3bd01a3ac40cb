import { describe, expect, it } from 'vitest';
import { orderRules, type OrderRulesInput } from '../../src/domain/policy/order-rules.js';

const base: Omit<OrderRulesInput, 'events' | 'state'> = {
  action: 'disconnect',
  limitW: null,
  reason: 'customer_request',
  origin: 'api',
  planId: null,
  approvedBy: null,
  approvedAt: null,
  policy: { nonPaymentRequiresPlan: true },
};
const ev = (from: any, to: any, reason: string | null = null) => ({ at: 0, from, to, reason });
const outcomes = (i: OrderRulesInput) => Object.fromEntries(orderRules(i).map((r) => [r.rule, r.outcome]));

describe('orderRules: what the stored events say about the rules', () => {
  it('an order held by the windows: the rules before passed, the window holds, the cap after it is not checked', () => {
    const o = outcomes({ ...base, state: 'held', events: [ev(null, 'accepted'), ev('accepted', 'queued'), ev('queued', 'held', 'E_OUTSIDE_WINDOW: disconnect not now: Sunday')] });
    expect(o).toMatchObject({ authority: 'passed', protectedCustomer: 'passed', window: 'held', dailyCap: 'not_checked', notice: 'not_applicable' });
  });

  it('held, approved by a supervisor, then sent: every rule passed, and the approval and the earlier hold are said', () => {
    const rules = orderRules({
      ...base,
      state: 'done',
      approvedBy: 'sup-1',
      approvedAt: Date.parse('2026-11-20T10:00:00Z'),
      events: [ev(null, 'accepted'), ev('accepted', 'queued'), ev('queued', 'held', 'E_APPROVAL_REQUIRED: waits'), ev('held', 'held', 'approved by sup-1'), ev('held', 'queued', 'every rule allows it now'), ev('queued', 'in_flight', 'attempt 1'), ev('in_flight', 'done')],
    });
    const pc = rules.find((r) => r.rule === 'protectedCustomer')!;
    expect(pc).toMatchObject({ outcome: 'passed', code: 'E_APPROVAL_REQUIRED' });
    expect(pc.detail).toContain('approved by sup-1 at 2026-11-20T10:00:00.000Z');
    expect(rules.filter((r) => r.outcome !== 'passed').map((r) => r.outcome)).toEqual(rules.filter((r) => r.outcome === 'not_applicable').map(() => 'not_applicable'));
  });

  it('an arrears disconnect in a plan that the billing system finds paid right before the command: stopped by rule 3 with E_PAID', () => {
    const o = outcomes({
      ...base,
      reason: 'arrears',
      planId: 'P-1',
      state: 'cancelled',
      events: [ev(null, 'accepted'), ev('accepted', 'queued'), ev('queued', 'cancelled', 'E_PAID: account paid (rule 3: payment re-checked at the last moment)')],
    });
    expect(o).toMatchObject({ plan: 'passed', notice: 'passed', secondNotice: 'passed', paymentRecheck: 'stopped' });
  });

  it('an arrears disconnect just admitted is not said to have passed the payment re-check, which runs right before the command', () => {
    const o = outcomes({ ...base, reason: 'arrears', planId: 'P-1', state: 'queued', events: [ev(null, 'accepted'), ev('accepted', 'queued')] });
    expect(o).toMatchObject({ plan: 'passed', paymentRecheck: 'not_checked' });
  });

  it('a limit removal goes through no rule; a limit through its three', () => {
    expect(new Set(Object.values(outcomes({ ...base, action: 'limit', limitW: null, reason: 'payment', state: 'done', events: [ev(null, 'accepted'), ev('accepted', 'queued')] })))).toEqual(new Set(['not_applicable']));
    expect(outcomes({ ...base, action: 'limit', limitW: 2000, reason: 'arrears', state: 'refused', events: [ev(null, 'accepted'), ev('accepted', 'queued'), ev('queued', 'refused', 'E_PROTECTED_MODE: limit refused')] })).toEqual({
      authority: 'passed',
      protectedMode: 'stopped',
      protectedCustomer: 'not_checked',
    });
  });
});
