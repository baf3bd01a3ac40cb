import { describe, expect, it } from 'vitest';
import { admitOrder } from '../../src/domain/admission.js';
import type { SwitchOrder } from '../../src/domain/switch-order.js';

const base: SwitchOrder = {
  id: 'o1',
  meterId: 'M-1',
  action: 'disconnect',
  limitW: null,
  reason: 'arrears',
  note: null,
  requestedBy: 'ops',
  state: 'queued',
  stateReason: null,
  priority: 100,
  urgent: false,
  link: 'l1',
  createdAt: 0,
  updatedAt: 0,
  notBefore: 0,
  deadline: null,
  paymentAt: null,
  attempts: 0,
  nextAttemptAt: 0,
  supersededBy: null,
  completedAt: null,
  resultRelay: null,
  planId: null,
  secondNoticeAt: null,
  capDay: null,
  escalatedAt: null,
  origin: 'api',
  reference: null,
  approvedBy: null,
  approvedAt: null,
};
const order = (o: Partial<SwitchOrder>): SwitchOrder => ({ ...base, ...o });

describe('latest intent wins (admitOrder)', () => {
  it('per dimension: a limit supersedes an earlier limit, not a relay order; a reconnect supersedes no limit', () => {
    const limit = admitOrder({ action: 'limit', reason: 'operator', urgent: false, deadline: null }, [order({ id: 'd1' }), order({ id: 'l1', action: 'limit', limitW: 1000 }), order({ id: 'l2', action: 'limit', limitW: 800, state: 'in_flight' })]);
    expect(limit).toMatchObject({ state: 'queued', supersedeNow: ['l1'], supersedeAfterAttempt: ['l2'] });
    const reconnect = admitOrder({ action: 'reconnect', reason: 'payment', urgent: false, deadline: 100 }, [order({ id: 'l1', action: 'limit', limitW: 1000 })]);
    expect(reconnect).toMatchObject({ state: 'queued', supersedeNow: [], supersedeAfterAttempt: [] });
  });

  it('an open limit removal does not refuse a disconnect (rule 12 is about reconnects)', () => {
    const d = admitOrder({ action: 'disconnect', reason: 'arrears', urgent: false, deadline: null }, [order({ id: 'l1', action: 'limit', limitW: null, reason: 'payment' })]);
    expect(d.state).toBe('queued');
  });

  it('a reconnect supersedes a queued disconnect before it is sent', () => {
    const d = admitOrder({ action: 'reconnect', reason: 'payment', urgent: false, deadline: 100 }, [order({ id: 'd1' })]);
    expect(d.state).toBe('queued');
    expect(d.supersedeNow).toEqual(['d1']);
    expect(d.supersedeAfterAttempt).toEqual([]);
  });

  it('an order on the wire is not interrupted: it is superseded once its attempt ends', () => {
    const d = admitOrder({ action: 'reconnect', reason: 'payment', urgent: false, deadline: 100 }, [order({ id: 'd1', state: 'in_flight' })]);
    expect(d.supersedeNow).toEqual([]);
    expect(d.supersedeAfterAttempt).toEqual(['d1']);
  });

  it('a disconnect is refused while a reconnect is open, naming the rule', () => {
    const d = admitOrder({ action: 'disconnect', reason: 'arrears', urgent: false, deadline: null }, [
      order({ id: 'r1', action: 'reconnect', reason: 'payment', deadline: 50 }),
    ]);
    expect(d.state).toBe('refused');
    expect(d.refusal?.code).toBe('E_RECONNECT_PENDING');
    expect(d.refusal?.message).toContain('r1');
    expect(d.supersedeNow).toEqual([]);
  });

  it('a second reconnect keeps the first payment’s earlier deadline and any urgency', () => {
    const d = admitOrder({ action: 'reconnect', reason: 'payment', urgent: false, deadline: 500 }, [
      order({ id: 'r1', action: 'reconnect', reason: 'payment', deadline: 200, urgent: true }),
    ]);
    expect(d.deadline).toBe(200);
    expect(d.urgent).toBe(true);
    expect(d.supersedeNow).toEqual(['r1']);
  });

  it('finished orders play no part', () => {
    const d = admitOrder({ action: 'disconnect', reason: 'arrears', urgent: false, deadline: null }, [
      order({ id: 'r1', action: 'reconnect', state: 'done' }),
    ]);
    expect(d.state).toBe('queued');
    expect(d.supersedeNow).toEqual([]);
  });
});
