import { describe, expect, it } from 'vitest';
import { iso, MIN, safetyWorldForFile, type ArrearsPath } from './safety-harness.js';

/**
 * DOMAIN.md rule 3: immediately before a disconnect for arrears goes on the wire, the gateway asks billing (the
 * configured re-check hook) whether the account is still in arrears. Paid → the order is cancelled (E_PAID),
 * never sent; no answer (HTTP 500, or silence) → held and asked again (E_BILLING_UNREACHABLE), never assumed paid
 * or unpaid; no hook configured → refused (E_NO_BILLING_HOOK). On every path: single, bulk, CLI, plan, a retry, a
 * restart, and the hook removed from the configuration while an order waits.
 *
 * The plan rule (rule 7) is off (`nonPaymentRequiresPlan: false`) so that single, bulk and CLI disconnects for
 * arrears reach the re-check instead of being refused by the plan rule first. Rules 1 and 2 are satisfied on the
 * way: a letter delivered 4 days ago, and the pre-disconnect notification delivered 30 minutes before.
 */
const METERS = ['P-OK', 'P-SINGLE', 'P-BULK', 'P-CLI', 'P-PLAN', 'P-DOWN-500', 'P-DOWN-SILENT', 'P-RETRY', 'P-RESTART', 'P-CHANGE'];
const w = safetyWorldForFile(METERS, { policy: { nonPaymentRequiresPlan: false } });
// The shared fake clock only moves forward in this file (w.moveClockTo), and each test stays inside a permitted window.

/** The questions billing's hook was asked about this order. */
const askedAbout = (id: string) => w.hook.asked.filter((q) => q.orderId === id);
const goes = async (id: string, meterId: string) => {
  const done = await w.f.waitForOrder(id);
  expect(done).toMatchObject({ state: 'done', result: { relay: 'disconnected', verified: true } });
  await w.waitFor('the command on the wire', () => w.disconnectsOnWire(meterId) >= 1);
  await w.settle();
  expect(w.disconnectsOnWire(meterId)).toBe(1);
  expect(w.f.fleet.meter(meterId).relay).toBe('disconnected');
};

/** Billing answers "paid": the order is cancelled E_PAID at the moment it would have gone, and nothing is sent. */
async function cancelledWhenPaid(path: ArrearsPath, meterId: string): Promise<void> {
  w.hook.paid.add(meterId);
  const id = await w.arrearsDisconnectBy(path, meterId);
  const delivered = await w.secondNoticeDeliveredAt(id);
  // 29 minutes after the delivery the order still waits for rule 2, and billing has not been asked yet.
  w.moveClockTo(delivered + 29 * MIN);
  await w.settle();
  const waiting = await w.order(id);
  expect(waiting.state).toBe('held');
  expect(waiting.stateReason).toMatch(/^E_SECOND_NOTICE_PENDING: /);
  expect(askedAbout(id)).toEqual([]);
  // At 30 minutes, the last moment: billing is asked, says paid, the order ends cancelled.
  w.moveClockTo(delivered + 30 * MIN);
  await w.waitForReason(id, 'E_PAID');
  const o = await w.order(id);
  expect(o.state).toBe('cancelled');
  expect(o.stateReason).toContain('paid at the counter');
  expect(o.attemptsUsed).toBe(0);
  expect(o.attempts).toEqual([]);
  expect((o.events as any[]).find((e) => e.to === 'cancelled').at).toBe(iso(delivered + 30 * MIN));
  expect(askedAbout(id)).toEqual([expect.objectContaining({ meterId, orderId: id, reason: 'arrears' })]);
  await w.settle();
  expect(w.disconnectsOnWire(meterId)).toBe(0);
  expect(w.f.fleet.meter(meterId).relay).toBe('connected');
}

/** Billing cannot be reached: held E_BILLING_UNREACHABLE and asked again, nothing sent; when it answers "in arrears" again, it goes. */
async function heldWhileBillingDown(mode: '500' | 'silent', meterId: string): Promise<void> {
  const id = await w.arrearsDisconnectBy('single', meterId);
  const delivered = await w.secondNoticeDeliveredAt(id);
  w.hook.mode = mode;
  try {
    w.moveClockTo(delivered + 30 * MIN);
    await w.waitForReason(id, 'E_BILLING_UNREACHABLE');
    const first = await w.order(id);
    expect(first.state).toBe('held');
    expect(first.stateReason).toContain(mode === '500' ? 'HTTP 500' : 'did not answer');
    expect(askedAbout(id)).toHaveLength(1);
    // Ten minutes on it is asked again, and again gets no answer: still held, still not assumed either way.
    await w.advance(10 * MIN, 1);
    await w.waitFor('billing asked again and the order held again', async () => {
      const o = await w.order(id);
      return askedAbout(id).length >= 2 && (o.stateReason ?? '').startsWith('E_BILLING_UNREACHABLE:') && o.nextAttemptAt === iso(w.clock.now() + 10 * MIN);
    });
    const again = await w.order(id);
    expect(again.state).toBe('held');
    expect(again.attemptsUsed).toBe(0);
    await w.settle();
    expect(w.disconnectsOnWire(meterId)).toBe(0);
    expect(w.f.fleet.meter(meterId).relay).toBe('connected');
  } finally {
    w.hook.mode = 'ok';
  }
  // Billing answers again, "in arrears": the disconnect goes, once. It was never assumed paid.
  await w.advance(10 * MIN, 1);
  await goes(id, meterId);
}

describe('rule 3: payment is re-checked with billing at the last moment before the command', () => {
  it('control: billing answers "in arrears" at the last moment; the command goes, once, and billing was asked about this order', async () => {
    const id = await w.arrearsDisconnectBy('single', 'P-OK');
    const delivered = await w.secondNoticeDeliveredAt(id);
    w.moveClockTo(delivered + 30 * MIN);
    await goes(id, 'P-OK');
    expect(askedAbout(id)).toEqual([expect.objectContaining({ meterId: 'P-OK', orderId: id, reason: 'arrears' })]);
  });

  it('single: billing answers paid: cancelled E_PAID when it would have gone, nothing on the wire', async () => {
    await cancelledWhenPaid('single', 'P-SINGLE');
  });

  it('bulk: billing answers paid: cancelled E_PAID, nothing on the wire', async () => {
    await cancelledWhenPaid('bulk', 'P-BULK');
  });

  it('CLI: billing answers paid: cancelled E_PAID, nothing on the wire', async () => {
    await cancelledWhenPaid('cli', 'P-CLI');
  });

  it('plan: billing answers paid: the approved plan’s order is cancelled E_PAID, nothing on the wire', async () => {
    await cancelledWhenPaid('plan', 'P-PLAN');
  });

  it('billing answers HTTP 500: held E_BILLING_UNREACHABLE and asked again, nothing on the wire; it goes once billing answers again', async () => {
    await heldWhileBillingDown('500', 'P-DOWN-500');
  });

  it('billing never answers: held E_BILLING_UNREACHABLE and asked again, nothing on the wire; it goes once billing answers again', async () => {
    await heldWhileBillingDown('silent', 'P-DOWN-SILENT');
  });

  it('retry: the first command is dropped; the customer pays at the counter; the retry is cancelled E_PAID, one command on the wire', async () => {
    w.moveClockTo(Date.parse('2026-11-25T09:00:00Z')); // Wednesday
    w.f.fleet.meter('P-RETRY').dropCommands(1);
    const id = await w.arrearsDisconnectBy('single', 'P-RETRY');
    const delivered = await w.secondNoticeDeliveredAt(id);
    w.moveClockTo(delivered + 30 * MIN);
    await w.firstAttemptDropped(id, 'P-RETRY');
    expect(askedAbout(id)).toHaveLength(1);
    w.hook.paid.add('P-RETRY');
    await w.advance(5 * MIN, 1);
    await w.waitForReason(id, 'E_PAID');
    const o = await w.order(id);
    expect(o.state).toBe('cancelled');
    expect(o.attemptsUsed).toBe(1);
    expect(askedAbout(id)).toHaveLength(2);
    await w.settle();
    expect(w.disconnectsOnWire('P-RETRY')).toBe(1);
    expect(w.f.fleet.meter('P-RETRY').relay).toBe('connected');
  });

  it('restart: billing silent, the order held; after a restart it is asked again and still held, nothing sent; billing back → it goes (control)', async () => {
    const id = await w.arrearsDisconnectBy('single', 'P-RESTART');
    const delivered = await w.secondNoticeDeliveredAt(id);
    w.hook.mode = 'silent';
    try {
      w.moveClockTo(delivered + 30 * MIN);
      await w.waitForReason(id, 'E_BILLING_UNREACHABLE');
      const asked = askedAbout(id).length;
      await w.restart();
      // The restarted gateway looks at every held disconnect at once: it asks billing again, gets no answer, holds.
      await w.waitFor('the restarted gateway asking billing again and holding the order', async () => {
        const o = await w.order(id);
        return askedAbout(id).length > asked && (o.stateReason ?? '').startsWith('E_BILLING_UNREACHABLE:') && o.nextAttemptAt === iso(w.clock.now() + 10 * MIN);
      });
      const o = await w.order(id);
      expect(o.state).toBe('held');
      expect(o.attemptsUsed).toBe(0);
      await w.settle();
      expect(w.disconnectsOnWire('P-RESTART')).toBe(0);
      expect(w.f.fleet.meter('P-RESTART').relay).toBe('connected');
    } finally {
      w.hook.mode = 'ok';
    }
    await w.advance(10 * MIN, 1);
    await goes(id, 'P-RESTART');
  });

  // Last in the file: the gateway runs without a billing hook from here on.
  it('policy change: the gateway restarted with no billing hook while an order waits: refused E_NO_BILLING_HOOK before any attempt, nothing sent', async () => {
    const id = await w.arrearsDisconnectBy('single', 'P-CHANGE');
    const delivered = await w.secondNoticeDeliveredAt(id);
    await w.waitFor('the order waiting out its 30 minutes', async () => ((await w.order(id)).stateReason ?? '').startsWith('E_SECOND_NOTICE_PENDING:') && (await w.order(id)).state === 'held');
    await w.restart((c) => ({ ...c, policy: { ...c.policy, paymentRecheck: { ...c.policy.paymentRecheck, url: null } } }));
    // No clock move: a restart looks at every held disconnect again under the new configuration.
    await w.waitForReason(id, 'E_NO_BILLING_HOOK');
    const o = await w.order(id);
    expect(o.state).toBe('refused');
    expect(o.attemptsUsed).toBe(0);
    expect(o.attempts).toEqual([]);
    expect(askedAbout(id)).toEqual([]);
    // Past the 30 minutes nothing changes.
    w.moveClockTo(delivered + 31 * MIN);
    await w.settle();
    expect((await w.order(id)).state).toBe('refused');
    expect(w.disconnectsOnWire('P-CHANGE')).toBe(0);
    expect(w.f.fleet.meter('P-CHANGE').relay).toBe('connected');
  });
});
