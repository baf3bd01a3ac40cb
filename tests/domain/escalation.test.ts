import { describe, expect, it } from 'vitest';
import type { AttemptVerdict } from '../../src/domain/attempt-verdict.js';
import { cannotFinishInTime, escalateVerdict, NO_REMOTE_ATTEMPT, workOrderPriority } from '../../src/domain/escalation.js';

/** Field escalation on a fake clock (DOMAIN.md rule 11). */
const H = 3_600_000;
const NOW = Date.parse('2026-11-24T10:00:00Z');
const policy = { fieldLeadMs: 8 * H, dueMarginMs: H, slowRetryMs: 30 * 60_000, escalateDisconnects: false };
const none = { medicalEquipment: false, vulnerable: false, priorityRegister: false };
const failed: AttemptVerdict = { outcome: 'timeout', next: 'failed', reason: '5 of 5 attempts used; last: timeout' };
const retry: AttemptVerdict = { outcome: 'timeout', next: 'queued', nextAttemptAt: NOW + 4000, reason: 'retry in 4000 ms' };

describe('escalation', () => {
  it('a reconnect whose attempts are exhausted gets a work order due one hour before the deadline, and keeps retrying slowly', () => {
    const v = escalateVerdict({ action: 'reconnect', deadline: NOW + 20 * H, escalatedAt: null }, failed, none, NOW, policy);
    expect(v.next).toBe('escalated');
    expect(v.nextAttemptAt).toBe(NOW + 30 * 60_000);
    expect(v.escalation).toMatchObject({ dueAt: NOW + 19 * H, priority: 4 });
    expect(v.escalation!.reason).toContain('remote attempts exhausted');
  });

  it('8 h and 1 minute left: not yet; exactly 8 h left: the crew must go', () => {
    expect(cannotFinishInTime({ action: 'reconnect', deadline: NOW + 8 * H + 60_000 }, NOW, policy)).toBe(false);
    expect(cannotFinishInTime({ action: 'reconnect', deadline: NOW + 8 * H }, NOW, policy)).toBe(true);
    const v = escalateVerdict({ action: 'reconnect', deadline: NOW + 8 * H, escalatedAt: null }, retry, none, NOW, policy);
    expect(v.escalation!.reason).toContain('cannot finish remotely in time: 480 min left');
  });

  it('a failed disconnect is not escalated unless configured', () => {
    expect(escalateVerdict({ action: 'disconnect', deadline: null, escalatedAt: null }, failed, none, NOW, policy).next).toBe('failed');
    expect(escalateVerdict({ action: 'disconnect', deadline: null, escalatedAt: null }, failed, none, NOW, { ...policy, escalateDisconnects: true }).next).toBe('escalated');
  });

  it('an escalated order that fails again stays with the field; a success ends it', () => {
    const again = escalateVerdict({ action: 'reconnect', deadline: NOW + 5 * H, escalatedAt: NOW - H }, retry, none, NOW, policy);
    expect(again).toMatchObject({ next: 'escalated', nextAttemptAt: NOW + 30 * 60_000 });
    expect(again.escalation).toBeUndefined();
    const ok: AttemptVerdict = { outcome: 'ok', next: 'done', reason: 'read-back shows the relay connected' };
    expect(escalateVerdict({ action: 'reconnect', deadline: NOW + 5 * H, escalatedAt: NOW - H }, ok, none, NOW, policy).next).toBe('done');
  });

  it('priority: medical equipment first, then vulnerable or little time left', () => {
    expect(workOrderPriority({ ...none, medicalEquipment: true }, 20 * H)).toBe(1);
    expect(workOrderPriority(none, 90 * 60_000)).toBe(1);
    expect(workOrderPriority({ ...none, vulnerable: true }, 20 * H)).toBe(2);
    expect(workOrderPriority(none, 5 * H)).toBe(2);
    expect(workOrderPriority(none, 10 * H)).toBe(3);
    expect(workOrderPriority(none, 20 * H)).toBe(4);
  });
});

describe('escalation of a meter that refuses the gateway’s keys (auth_failed)', () => {
  const refused: AttemptVerdict = { outcome: 'auth_failed', next: 'failed', reason: "the meter refused the gateway's credentials (authenticationFailure (13)); retrying with the same keys cannot succeed" };
  const medical = { ...none, medicalEquipment: true };

  it('a reconnect goes to the field at once with a credentials work order due before the deadline, and no remote attempt ever comes due', () => {
    const v = escalateVerdict({ action: 'reconnect', deadline: NOW + 20 * H, escalatedAt: null }, refused, none, NOW, policy);
    expect(v).toMatchObject({ outcome: 'auth_failed', next: 'escalated', nextAttemptAt: NO_REMOTE_ATTEMPT });
    expect(v.escalation).toMatchObject({ kind: 'credentials', dueAt: NOW + 19 * H, priority: 4 });
    expect(v.escalation!.reason).toMatch(/^meter refuses the gateway's keys: restore the supply on site, then check the key file or renew the keys \(the meter refused/);
    expect(new Date(NO_REMOTE_ATTEMPT).toISOString()).toBe('+275760-09-13T00:00:00.000Z'); // still a valid time
  });

  it('priority by urgency as for every work order: medical equipment first', () => {
    expect(escalateVerdict({ action: 'reconnect', deadline: NOW + 20 * H, escalatedAt: null }, refused, medical, NOW, policy).escalation!.priority).toBe(1);
  });

  it('a disconnect ends failed (a crew never disconnects on its own account) with a work order that says the disconnect was not done', () => {
    for (const escalateDisconnects of [false, true]) {
      const v = escalateVerdict({ action: 'disconnect', deadline: null, escalatedAt: null }, refused, none, NOW, { ...policy, escalateDisconnects });
      expect(v.next).toBe('failed');
      expect(v.escalation).toMatchObject({ kind: 'credentials' });
      expect(v.escalation!.reason).toContain('the disconnect was not done and this order has ended');
    }
  });

  it('an order already with the field keeps its work order and gets no further remote attempt', () => {
    const v = escalateVerdict({ action: 'reconnect', deadline: NOW + 5 * H, escalatedAt: NOW - H }, refused, none, NOW, policy);
    expect(v).toMatchObject({ next: 'escalated', nextAttemptAt: NO_REMOTE_ATTEMPT });
    expect(v.escalation).toBeUndefined();
    expect(v.reason).toContain('no further remote attempt');
  });
});

describe('an order marked urgent (medical emergency, rule 15) raises a priority-1 work order', () => {
  it('an urgent reconnect with a whole day left and no flags on the meter: priority 1, not 4', () => {
    const v = escalateVerdict({ action: 'reconnect', deadline: NOW + 20 * H, escalatedAt: null, urgent: true }, failed, none, NOW, policy);
    expect(v.escalation).toMatchObject({ dueAt: NOW + 19 * H, priority: 1 });
    const plain = escalateVerdict({ action: 'reconnect', deadline: NOW + 20 * H, escalatedAt: null, urgent: false }, failed, none, NOW, policy);
    expect(plain.escalation).toMatchObject({ priority: 4 });
  });

  it('an urgent reconnect that cannot finish in time, or whose meter refuses the keys, is priority 1 too', () => {
    const late = escalateVerdict({ action: 'reconnect', deadline: NOW + 8 * H, escalatedAt: null, urgent: true }, retry, none, NOW, policy);
    expect(late.escalation!.priority).toBe(1);
    const refused: AttemptVerdict = { outcome: 'auth_failed', next: 'failed', reason: 'the meter refused the gateway’s credentials' };
    const keys = escalateVerdict({ action: 'reconnect', deadline: NOW + 20 * H, escalatedAt: null, urgent: true }, refused, none, NOW, policy);
    expect(keys.escalation).toMatchObject({ kind: 'credentials', priority: 1 });
  });

  it('workOrderPriority takes the order’s urgency into account', () => {
    expect(workOrderPriority(none, 20 * H, true)).toBe(1);
    expect(workOrderPriority(none, 20 * H, false)).toBe(4);
  });
});
