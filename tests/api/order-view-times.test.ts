import { describe, expect, it } from 'vitest';
import type { SwitchOrder } from '../../src/domain/switch-order.js';
import { orderView } from '../../src/api/views.js';

/** An order's times in its view are its own, whatever views were made before it (views.ts keeps a few time texts). */
function order(id: string, t: number, deadline: number | null, paymentAt: number | null): SwitchOrder {
  return {
    id, meterId: `M-${id}`, action: 'reconnect', limitW: null, reason: 'payment', note: null, requestedBy: 'billing', state: 'queued',
    stateReason: null, priority: 10, urgent: false, link: 'mqtt', createdAt: t, updatedAt: t + 1, notBefore: t, deadline, paymentAt,
    attempts: 0, nextAttemptAt: t + 2, supersededBy: null, completedAt: null, resultRelay: null, planId: null, secondNoticeAt: null,
    capDay: null, escalatedAt: null, origin: 'api', reference: null, approvedBy: null, approvedAt: null,
  } as SwitchOrder;
}

describe('order view times', () => {
  it('each view shows its own order times, across many views with shared and distinct times', () => {
    const base = Date.UTC(2026, 10, 28, 12, 0, 0);
    for (let i = 0; i < 50; i++) {
      // Some orders share their times (one bulk request), some do not; deadlines and payment times vary.
      const t = base + (i % 3) * 1000 + (i % 7 === 0 ? i * 60_000 : 0);
      const deadline = i % 5 === 0 ? null : t + 3_600_000 * (1 + (i % 4));
      const paymentAt = i % 2 === 0 ? t - i * 1000 : null;
      const v = orderView(order(`o${i}`, t, deadline, paymentAt));
      expect(v.createdAt).toBe(new Date(t).toISOString());
      expect(v.updatedAt).toBe(new Date(t + 1).toISOString());
      expect(v.notBefore).toBe(new Date(t).toISOString());
      expect(v.nextAttemptAt).toBe(new Date(t + 2).toISOString());
      expect(v.deadline).toBe(deadline === null ? null : new Date(deadline).toISOString());
      expect(v.paymentReceivedAt).toBe(paymentAt === null ? null : new Date(paymentAt).toISOString());
    }
  });

  it('an impossible time still fails as before, and does not poison the next view', () => {
    expect(() => orderView(order('bad', Number.NaN, null, null))).toThrow(RangeError);
    const t = Date.UTC(2026, 0, 1);
    expect(orderView(order('ok', t, null, null)).createdAt).toBe('2026-01-01T00:00:00.000Z');
  });
});
