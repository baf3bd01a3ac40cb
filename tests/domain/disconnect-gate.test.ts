import { describe, expect, it } from 'vitest';
import { evaluateDisconnectGate, type GateDecision, type GateInput } from '../../src/domain/policy/disconnect-gate.js';
import { DEFAULT_FLAGS, type MeterFlags, type NoticeRecord } from '../../src/domain/policy/meter-facts.js';
import type { PolicyConfig } from '../../src/domain/policy/policy-config.js';

/** Every disconnect rule of DOMAIN.md 1–10 (and 12) at its boundary, on a fake clock. */

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const at = (iso: string): number => Date.parse(iso);
// Tuesday 24 November 2026, 10:00 in London (UTC+0 in winter).
const NOW = at('2026-11-24T10:00:00Z');

const policy: PolicyConfig = {
  notice: { minLeadDays: 3, maxLeadDays: 7, secondNoticeMinutes: 30, secondNoticeValidMinutes: 120 },
  paymentRecheck: { url: 'http://billing.example/recheck', timeoutMs: 2000, retryAfterMs: 300_000 },
  dailyCap: { overall: 100, perRegion: { north: 2 }, defaultPerRegion: 50 },
  windows: {
    timezone: 'Europe/London',
    weekly: { mon: ['08:00-16:00'], tue: ['08:00-16:00'], wed: ['08:00-16:00'], thu: ['08:00-16:00'], fri: ['08:00-12:00'], sat: [], sun: [] },
    holidays: ['2026-12-25', '2026-12-26'],
    holidayEveCutoff: '12:00',
  },
  nonPaymentRequiresPlan: true,
  creditCutOff: {
    friendlyHours: {
      timezone: 'Europe/London',
      weekly: { mon: ['16:00-24:00', '00:00-10:00'], tue: ['16:00-24:00', '00:00-10:00'], wed: ['16:00-24:00', '00:00-10:00'], thu: ['16:00-24:00', '00:00-10:00'], fri: ['16:00-24:00', '00:00-10:00'], sat: [], sun: [] },
      weekendsFriendly: true,
      holidays: [],
    },
  },
  limitBeforeCut: { enabled: false, days: 15 },
};

const notice = (servedAt: number, o: Partial<NoticeRecord> = {}): NoticeRecord => ({
  id: `n${servedAt}`,
  meterId: 'M-1',
  channel: 'letter',
  servedAt,
  delivery: 'delivered',
  receiptRef: 'r',
  recordedBy: 'billing',
  recordedAt: servedAt,
  ...o,
});

interface Case {
  name: string;
  now?: number;
  reason?: GateInput['order']['reason'];
  action?: GateInput['order']['action'];
  limitW?: number | null;
  flags?: Partial<MeterFlags>;
  notices?: NoticeRecord[];
  /** When the pre-disconnect notification was sent and delivered (null: none sent; deliveredAt null: not delivered). */
  secondNotice?: { sentAt: number; deliveredAt: number | null } | null;
  stage?: GateInput['stage'];
  origin?: GateInput['order']['origin'];
  reference?: string | null;
  approvedAt?: number | null;
  credit?: GateInput['credit'];
  capUsage?: { overall: number; region: number };
  capDay?: string | null;
  plan?: GateInput['plan'] | 'none';
  weather?: GateInput['weather'];
  breakers?: GateInput['openBreakers'];
  region?: string;
  policy?: Partial<PolicyConfig>;
  expect: Partial<{ verdict: GateDecision['verdict']; code: string; rule: string; until: number }>;
}

const approvedPlan = { id: 'plan-1', status: 'approved' as const, windowFrom: NOW - DAY, windowTo: NOW + 7 * DAY };
const decemberPlan = { ...approvedPlan, windowTo: at('2027-01-31T00:00:00Z') };

function input(c: Case): GateInput {
  const now = c.now ?? NOW;
  const plan = c.plan === 'none' ? null : (c.plan ?? approvedPlan);
  const reason = c.reason ?? 'arrears';
  const second = c.secondNotice === undefined ? { sentAt: now - 45 * MIN, deliveredAt: now - 44 * MIN } : c.secondNotice;
  return {
    now,
    stage: c.stage ?? 'attempt',
    order: {
      action: c.action ?? 'disconnect',
      limitW: c.limitW ?? null,
      reason,
      planId: plan ? plan.id : null,
      origin: c.origin ?? (reason === 'credit_exhausted' ? 'credit_control' : plan ? 'plan' : 'api'),
      reference: c.reference === undefined ? (['customer_request', 'vacant_premises', 'safety'].includes(reason) ? 'REF-1' : null) : c.reference,
      approvedAt: c.approvedAt ?? null,
      capDay: c.capDay ?? null,
    },
    secondNotice: second === null ? null : { id: 'ntf-1', sentAt: second.sentAt, deliveredAt: second.deliveredAt, attempts: second.deliveredAt === null ? 7 : 1, lastError: second.deliveredAt === null ? 'HTTP 500' : null },
    credit: c.credit === undefined ? { noCredit: true, balance: 0, emergencyCreditRemaining: 0 } : c.credit,
    plan,
    meter: { meterId: 'M-1', region: c.region ?? 'north', flags: { ...DEFAULT_FLAGS, ...c.flags } },
    notices: c.notices ?? [notice(now - 4 * DAY)],
    weather: c.weather ?? [],
    capUsage: c.capUsage ?? { overall: 0, region: 0 },
    openBreakers: c.breakers ?? [],
    policy: { ...policy, ...c.policy },
  };
}

const cases: Case[] = [
  // Rule 1: notice, with delivery evidence, between 3 and 7 days old.
  { name: 'rule 1: notice 2 days 23 h old is not enough: held until it is 3 days old', notices: [notice(NOW - 3 * DAY + HOUR)], expect: { verdict: 'hold', code: 'E_NOTICE_TOO_RECENT', rule: 'notice', until: NOW + HOUR } },
  { name: 'rule 1: notice exactly 3 days old is enough', notices: [notice(NOW - 3 * DAY)], expect: { verdict: 'allow' } },
  { name: 'rule 1: notice exactly 7 days old is still valid', notices: [notice(NOW - 7 * DAY)], expect: { verdict: 'allow' } },
  { name: 'rule 1: notice 7 days and 1 minute old is stale', notices: [notice(NOW - 7 * DAY - MIN)], expect: { verdict: 'refuse', code: 'E_NOTICE_STALE' } },
  { name: 'rule 1: no notice at all is refused', notices: [], expect: { verdict: 'refuse', code: 'E_NOTICE_MISSING', rule: 'notice' } },
  { name: 'rule 1: an SMS with no delivery receipt is not evidence', notices: [notice(NOW - 4 * DAY, { channel: 'sms', delivery: 'unknown', receiptRef: null })], expect: { verdict: 'refuse', code: 'E_NOTICE_MISSING' } },
  { name: 'rule 1: a failed SMS followed by a phone call 3 days ago is evidence', notices: [notice(NOW - 5 * DAY, { channel: 'sms', delivery: 'failed' }), notice(NOW - 3 * DAY, { channel: 'phone_call' })], expect: { verdict: 'allow' } },
  // Rule 2: the pre-disconnect notification 30 minutes before the command.
  { name: 'rule 1: an SMS recorded as delivered with no receipt reference is not evidence', notices: [notice(NOW - 4 * DAY, { channel: 'sms', receiptRef: null })], expect: { verdict: 'refuse', code: 'E_NOTICE_MISSING' } },
  { name: 'rule 1: a letter recorded as delivered with a blank reference is not evidence', notices: [notice(NOW - 4 * DAY, { channel: 'letter', receiptRef: '  ' })], expect: { verdict: 'refuse', code: 'E_NOTICE_MISSING' } },
  { name: 'rule 1: an e-mail delivered with its receipt reference is evidence', notices: [notice(NOW - 4 * DAY, { channel: 'email', receiptRef: 'MSG-1' })], expect: { verdict: 'allow' } },
  // Rule 2: the pre-disconnect notification delivered 30 minutes before the command.
  { name: 'rule 2: no second notice yet: emit it and hold 30 minutes', secondNotice: null, expect: { verdict: 'second_notice', until: NOW + 30 * MIN } },
  { name: 'rule 2: 29 minutes after the delivery: not sent', secondNotice: { sentAt: NOW - 29 * MIN, deliveredAt: NOW - 29 * MIN }, expect: { verdict: 'hold', code: 'E_SECOND_NOTICE_PENDING', until: NOW + MIN } },
  { name: 'rule 2: 30 minutes after the delivery: sent', secondNotice: { sentAt: NOW - 30 * MIN, deliveredAt: NOW - 30 * MIN }, expect: { verdict: 'allow' } },
  { name: 'rule 2: sent 2 hours ago but delivered 10 minutes ago: the 30 minutes run from the delivery', secondNotice: { sentAt: NOW - 2 * HOUR, deliveredAt: NOW - 10 * MIN }, expect: { verdict: 'hold', code: 'E_SECOND_NOTICE_PENDING', until: NOW + 20 * MIN } },
  { name: 'rule 2: sent 45 minutes ago and never delivered: held, never let through', secondNotice: { sentAt: NOW - 45 * MIN, deliveredAt: null }, expect: { verdict: 'hold', code: 'E_SECOND_NOTICE_UNDELIVERED', rule: 'secondNotice', until: NOW + MIN } },
  { name: 'rule 2: undelivered for three days: still held, no new notice instead', secondNotice: { sentAt: NOW - 3 * DAY, deliveredAt: null }, expect: { verdict: 'hold', code: 'E_SECOND_NOTICE_UNDELIVERED' } },
  { name: 'rule 2: a second notice delivered 3 hours ago (the order was held since) no longer announces it: a new one', secondNotice: { sentAt: NOW - 3 * HOUR, deliveredAt: NOW - 3 * HOUR }, expect: { verdict: 'second_notice', until: NOW + 30 * MIN } },
  { name: 'rule 2: a second notice delivered 2 hours ago still counts (policy.notice.secondNoticeValidMinutes, 120)', secondNotice: { sentAt: NOW - 2 * HOUR, deliveredAt: NOW - 2 * HOUR }, expect: { verdict: 'allow' } },
  { name: 'rule 2: no notice is sent at 15:40 for a disconnect that could only come after 16:00: it waits for the next window', now: at('2026-11-24T15:40:00Z'), secondNotice: null, expect: { verdict: 'hold', code: 'E_OUTSIDE_WINDOW', until: at('2026-11-25T08:00:00Z') } },
  { name: 'rule 2: at 15:25 the notice goes, its 30 minutes end inside the window', now: at('2026-11-24T15:25:00Z'), secondNotice: null, expect: { verdict: 'second_notice', until: at('2026-11-24T15:55:00Z') } },
  { name: 'rule 2: a second notice delivered a day and more ago is sent again', secondNotice: { sentAt: NOW - 25 * HOUR, deliveredAt: NOW - 25 * HOUR }, expect: { verdict: 'second_notice' } },
  // Rule 3: no re-check hook, no disconnect for non-payment.
  { name: 'rule 3: no billing re-check hook configured: refused', policy: { paymentRecheck: { url: null, timeoutMs: 1000, retryAfterMs: 60_000 } }, expect: { verdict: 'refuse', code: 'E_NO_BILLING_HOOK', rule: 'paymentRecheck' } },
  // Rule 4: daily cap, per region and overall.
  { name: "rule 4: the region cap's last slot is allowed", capUsage: { overall: 10, region: 1 }, expect: { verdict: 'allow' } },
  { name: 'rule 4: the one after the region cap waits for the next day', capUsage: { overall: 10, region: 2 }, expect: { verdict: 'hold', code: 'E_DAILY_CAP', until: at('2026-11-25T00:00:00Z') } },
  { name: 'rule 4: the overall cap binds too', region: 'south', capUsage: { overall: 100, region: 0 }, expect: { verdict: 'hold', code: 'E_DAILY_CAP' } },
  { name: 'rule 4: an order that already holds a slot today is not counted twice', capUsage: { overall: 10, region: 2 }, capDay: '2026-11-24', expect: { verdict: 'allow' } },
  // Rule 5: permitted windows.
  { name: 'rule 5: 07:55 on a Tuesday is before the window: held until 08:00', now: at('2026-11-24T07:55:00Z'), secondNotice: { sentAt: at('2026-11-24T07:00:00Z'), deliveredAt: at('2026-11-24T07:00:00Z') }, expect: { verdict: 'hold', code: 'E_OUTSIDE_WINDOW', until: at('2026-11-24T08:00:00Z') } },
  { name: 'rule 5: 15:55 on a Tuesday is inside', now: at('2026-11-24T15:55:00Z'), expect: { verdict: 'allow' } },
  { name: 'rule 5: 16:00 on a Tuesday (night): held until Wednesday 08:00', now: at('2026-11-24T16:00:00Z'), expect: { verdict: 'hold', code: 'E_OUTSIDE_WINDOW', until: at('2026-11-25T08:00:00Z') } },
  { name: 'rule 5: Friday 11:55 is inside', now: at('2026-11-27T11:55:00Z'), expect: { verdict: 'allow' } },
  { name: 'rule 5: Friday 12:00, eve of the weekend: held until Monday 08:00', now: at('2026-11-27T12:00:00Z'), expect: { verdict: 'hold', until: at('2026-11-30T08:00:00Z') } },
  { name: 'rule 5: Saturday is closed', now: at('2026-11-28T10:00:00Z'), expect: { verdict: 'hold', code: 'E_OUTSIDE_WINDOW' } },
  { name: 'rule 5: Christmas Day (a holiday, a Friday) is closed', plan: decemberPlan, now: at('2026-12-25T10:00:00Z'), expect: { verdict: 'hold', until: at('2026-12-28T08:00:00Z') } },
  { name: 'rule 5: the eve of a holiday before noon is inside', plan: decemberPlan, now: at('2026-12-24T11:55:00Z'), expect: { verdict: 'allow' } },
  { name: 'rule 5: the eve of a holiday after noon is closed', plan: decemberPlan, now: at('2026-12-24T12:00:00Z'), expect: { verdict: 'hold', code: 'E_OUTSIDE_WINDOW' } },
  { name: 'rule 5: summer time: 08:00 London is 07:00 UTC', now: at('2026-06-02T07:00:00Z'), notices: [notice(at('2026-05-29T00:00:00Z'))], plan: { ...approvedPlan, windowFrom: at('2026-06-01T00:00:00Z'), windowTo: at('2026-06-30T00:00:00Z') }, expect: { verdict: 'allow' } },
  {
    name: 'rule 5: a declared freeze in the region holds until it ends (and the window allows)',
    weather: [{ id: 'w1', kind: 'freeze', from: NOW - HOUR, to: at('2026-11-24T13:02:00Z'), regions: ['north'] }],
    expect: { verdict: 'hold', code: 'E_OUTSIDE_WINDOW', until: at('2026-11-24T13:05:00Z') },
  },
  { name: 'rule 5: a freeze declared for another region does not apply', weather: [{ id: 'w1', kind: 'freeze', from: NOW - HOUR, to: NOW + HOUR, regions: ['south'] }], expect: { verdict: 'allow' } },
  // Rule 6: protected customers.
  { name: 'rule 6: vulnerable customer: refused, to a person', flags: { vulnerable: true }, expect: { verdict: 'refuse', code: 'E_PROTECTED_CUSTOMER' } },
  { name: 'rule 6: medical equipment: refused', flags: { medicalEquipment: true }, expect: { verdict: 'refuse', code: 'E_PROTECTED_CUSTOMER' } },
  { name: 'rule 6: priority register: refused', flags: { priorityRegister: true }, expect: { verdict: 'refuse', code: 'E_PROTECTED_CUSTOMER' } },
  { name: 'rule 6: a protected customer asking to be disconnected waits for a supervisor', flags: { vulnerable: true }, reason: 'customer_request', plan: 'none', expect: { verdict: 'hold', code: 'E_APPROVAL_REQUIRED', rule: 'protectedCustomer' } },
  { name: "rule 6: a protected customer's request approved by a supervisor goes", flags: { vulnerable: true }, reason: 'customer_request', plan: 'none', approvedAt: NOW - MIN, expect: { verdict: 'allow' } },
  { name: 'rule 6: a vacant-premises disconnect of a priority-register customer waits for a supervisor', flags: { priorityRegister: true }, reason: 'vacant_premises', plan: 'none', expect: { verdict: 'hold', code: 'E_APPROVAL_REQUIRED' } },
  { name: 'rule 6: a safety disconnect at a medical-equipment customer waits for a supervisor', flags: { medicalEquipment: true }, reason: 'safety', plan: 'none', expect: { verdict: 'hold', code: 'E_APPROVAL_REQUIRED' } },
  { name: 'rule 6: a safety disconnect at a medical-equipment customer, approved, goes', flags: { medicalEquipment: true }, reason: 'safety', plan: 'none', approvedAt: NOW - MIN, expect: { verdict: 'allow' } },
  { name: 'rule 6: a safety disconnect at a vulnerable customer (no medical equipment) goes at once', flags: { vulnerable: true }, reason: 'safety', plan: 'none', expect: { verdict: 'allow' } },
  { name: 'rule 6: approval does not help a protected customer in arrears', flags: { vulnerable: true }, approvedAt: NOW - MIN, expect: { verdict: 'refuse', code: 'E_PROTECTED_CUSTOMER' } },
  // Rule 7: central authority, maker–checker.
  { name: 'rule 7: a non-payment disconnect outside a plan is refused', plan: 'none', expect: { verdict: 'refuse', code: 'E_PLAN_REQUIRED', rule: 'plan' } },
  { name: 'rule 7: a plan not yet approved does not count', plan: { ...approvedPlan, status: 'draft' }, expect: { verdict: 'refuse', code: 'E_PLAN_NOT_APPROVED' } },
  { name: "rule 7: after the plan's window closes: refused", plan: { ...approvedPlan, windowTo: NOW }, expect: { verdict: 'refuse', code: 'E_PLAN_WINDOW_CLOSED' } },
  { name: "rule 7: before the plan's window opens: held until it opens", plan: { ...approvedPlan, windowFrom: NOW + HOUR }, expect: { verdict: 'hold', code: 'E_PLAN_WINDOW_NOT_OPEN', until: NOW + HOUR } },
  // Rule 7: every disconnect has an authority: a reason is a claim, with its evidence.
  { name: 'rule 7: a customer request with no reference is refused', reason: 'customer_request', plan: 'none', reference: null, expect: { verdict: 'refuse', code: 'E_REFERENCE_REQUIRED', rule: 'authority' } },
  { name: 'rule 7: a vacant-premises disconnect with a blank reference is refused', reason: 'vacant_premises', plan: 'none', reference: ' ', expect: { verdict: 'refuse', code: 'E_REFERENCE_REQUIRED' } },
  { name: 'rule 7: a safety disconnect with no incident reference is refused', reason: 'safety', plan: 'none', reference: null, expect: { verdict: 'refuse', code: 'E_REFERENCE_REQUIRED' } },
  { name: 'rule 5: a customer request on a Saturday waits for the window', reason: 'customer_request', plan: 'none', now: at('2026-11-28T10:00:00Z'), expect: { verdict: 'hold', code: 'E_OUTSIDE_WINDOW', until: at('2026-11-30T08:00:00Z') } },
  { name: 'rule 4: a vacant-premises disconnect counts against the cap', reason: 'vacant_premises', plan: 'none', capUsage: { overall: 10, region: 2 }, expect: { verdict: 'hold', code: 'E_DAILY_CAP' } },
  { name: 'rule 5: a safety disconnect goes at night on a holiday with the cap used (an emergency)', reason: 'safety', plan: 'none', now: at('2026-12-25T23:00:00Z'), capUsage: { overall: 1000, region: 1000 }, expect: { verdict: 'allow' } },
  { name: 'rule 8: an API caller naming credit_exhausted is refused, whatever the ledger says', reason: 'credit_exhausted', origin: 'api', flags: { prepaymentMode: true, prepaymentAgreementRef: 'PPA-77' }, notices: [], expect: { verdict: 'refuse', code: 'E_CREDIT_CUTOFF_RESERVED', rule: 'creditControl' } },
  { name: 'rule 8: a plan cannot cut off for credit either', reason: 'credit_exhausted', origin: 'plan', flags: { prepaymentMode: true, prepaymentAgreementRef: 'PPA-77' }, notices: [], expect: { verdict: 'refuse', code: 'E_CREDIT_CUTOFF_RESERVED' } },
  { name: "rule 8: credit control's cut-off with the ledger in credit is cancelled", reason: 'credit_exhausted', flags: { prepaymentMode: true, prepaymentAgreementRef: 'PPA-77' }, notices: [], credit: { noCredit: false, balance: 5000, emergencyCreditRemaining: 0 }, expect: { verdict: 'cancel', code: 'E_CREDIT_AVAILABLE' } },
  { name: "rule 8: credit control's cut-off with emergency credit left is cancelled", reason: 'credit_exhausted', flags: { prepaymentMode: true, prepaymentAgreementRef: 'PPA-77' }, notices: [], credit: { noCredit: false, balance: 0, emergencyCreditRemaining: 300 }, expect: { verdict: 'cancel', code: 'E_CREDIT_AVAILABLE' } },
  { name: 'rule 8: a cut-off whose ledger could not be read is cancelled, never sent', reason: 'credit_exhausted', flags: { prepaymentMode: true, prepaymentAgreementRef: 'PPA-77' }, notices: [], credit: null, expect: { verdict: 'cancel', code: 'E_CREDIT_AVAILABLE' } },
  // Rule 8: prepayment needs an agreement.
  { name: 'rule 8: a credit cut-off without an agreement on record is refused', reason: 'credit_exhausted', flags: { prepaymentMode: true }, expect: { verdict: 'refuse', code: 'E_NO_PREPAYMENT_AGREEMENT' } },
  { name: 'rule 8: a credit cut-off with the agreement is allowed', reason: 'credit_exhausted', flags: { prepaymentMode: true, prepaymentAgreementRef: 'PPA-77' }, notices: [], expect: { verdict: 'allow' } },
  { name: 'rule 7: a credit cut-off follows the prepayment agreement, not a plan', reason: 'credit_exhausted', plan: 'none', flags: { prepaymentMode: true, prepaymentAgreementRef: 'PPA-77' }, notices: [], expect: { verdict: 'allow' } },
  // Prepayment: friendly-credit hours instead of the arrears windows.
  { name: 'prepayment: out of credit at 17:00 on a Friday, the cut-off waits until Monday 10:00', reason: 'credit_exhausted', now: at('2026-11-27T17:00:00Z'), flags: { prepaymentMode: true, prepaymentAgreementRef: 'PPA-1' }, notices: [], expect: { verdict: 'hold', code: 'E_FRIENDLY_HOURS', until: at('2026-11-30T10:00:00Z') } },
  { name: 'prepayment: at 10:00 on a Tuesday the cut-off may go', reason: 'credit_exhausted', flags: { prepaymentMode: true, prepaymentAgreementRef: 'PPA-1' }, notices: [], expect: { verdict: 'allow' } },
  // Rule 9: protected mode refuses every trip.
  { name: 'rule 9: protected mode refuses a disconnect for arrears at admission', stage: 'admission', flags: { protectedMode: true }, expect: { verdict: 'refuse', code: 'E_PROTECTED_MODE' } },
  { name: 'rule 9: protected mode refuses even a customer-requested disconnect', stage: 'admission', flags: { protectedMode: true }, reason: 'customer_request', plan: 'none', expect: { verdict: 'refuse', code: 'E_PROTECTED_MODE' } },
  { name: 'rule 9: protected mode refuses even a safety disconnect', stage: 'admission', flags: { protectedMode: true }, reason: 'safety', plan: 'none', expect: { verdict: 'refuse', code: 'E_PROTECTED_MODE' } },
  { name: 'rule 9: an order admitted before protected mode waits, before its attempt, until the mode is released', stage: 'attempt', flags: { protectedMode: true }, expect: { verdict: 'hold', code: 'E_PROTECTED_MODE', until: NOW + 15 * MIN } },
  // Rule 10: limit before cutting, where enabled and the meter can.
  { name: 'rule 10: limited for 14 days only: refused', policy: { limitBeforeCut: { enabled: true, days: 15 } }, flags: { hasLoadLimiter: true, loadLimitedSince: NOW - 14 * DAY }, expect: { verdict: 'refuse', code: 'E_LIMIT_FIRST' } },
  { name: 'rule 10: limited for 15 days: allowed', policy: { limitBeforeCut: { enabled: true, days: 15 } }, flags: { hasLoadLimiter: true, loadLimitedSince: NOW - 15 * DAY }, expect: { verdict: 'allow' } },
  { name: 'rule 10: a meter without a limiter is not held to it', policy: { limitBeforeCut: { enabled: true, days: 15 } }, expect: { verdict: 'allow' } },
  // Rule 10: a limit is a hardship measure, not a cut: no notice, plan, window or cap; its reason, protection and protected mode.
  { name: 'limit: an arrears limit needs no notice, plan or window', action: 'limit', limitW: 1500, plan: 'none', notices: [], now: at('2026-11-28T23:00:00Z'), expect: { verdict: 'allow' } },
  { name: 'limit: a protected customer is not limited by default', action: 'limit', limitW: 1500, flags: { vulnerable: true }, expect: { verdict: 'refuse', code: 'E_PROTECTED_CUSTOMER' } },
  { name: 'limit: a protected customer is limited where the policy says so', action: 'limit', limitW: 1500, flags: { medicalEquipment: true }, policy: { limitBeforeCut: { enabled: true, days: 15, protectedCustomers: true } }, expect: { verdict: 'allow' } },
  { name: 'limit: protected mode refuses a limit (the limiter trips the relay)', action: 'limit', limitW: 1500, stage: 'attempt', flags: { protectedMode: true }, expect: { verdict: 'refuse', code: 'E_PROTECTED_MODE' } },
  { name: 'limit: a safety limit needs its incident reference', action: 'limit', limitW: 1500, reason: 'safety', reference: null, expect: { verdict: 'refuse', code: 'E_REFERENCE_REQUIRED' } },
  { name: 'limit: vacant premises is no reason to limit', action: 'limit', limitW: 1500, reason: 'vacant_premises', expect: { verdict: 'refuse', code: 'E_REASON_NOT_ALLOWED' } },
  { name: 'limit: a removal is never held, whatever the flags (rule 12)', action: 'limit', limitW: null, reason: 'payment', flags: { protectedMode: true, vulnerable: true }, expect: { verdict: 'allow' } },
  // Rule 16: a collapse of disconnect success stops disconnects for the population (not reconnects).
  { name: 'rule 16: an open breaker for the meter’s profile holds any disconnect', reason: 'customer_request', plan: 'none', breakers: [{ id: 'brk1', scope: 'profile', key: 'p1', reason: 'first-attempt success 12% < 50%' }], expect: { verdict: 'hold', code: 'E_CIRCUIT_OPEN', until: NOW + MIN } },
  // Rule 12: reconnects are never held by any of it.
  {
    name: 'rule 12: a reconnect passes even at night on a holiday, for a protected customer with no notice, no plan and the cap used',
    action: 'reconnect',
    reason: 'payment',
    now: at('2026-12-25T23:00:00Z'),
    flags: { vulnerable: true },
    notices: [],
    plan: 'none',
    capUsage: { overall: 1000, region: 1000 },
    breakers: [{ id: 'brk1', scope: 'profile', key: 'p1', reason: 'collapsed' }],
    expect: { verdict: 'allow' },
  },
];

describe('disconnect policy gate (DOMAIN.md rules 1–10, 12)', () => {
  it.each(cases)('$name', (c) => {
    const d = evaluateDisconnectGate(input(c));
    expect(d.verdict).toBe(c.expect.verdict);
    if (c.expect.code) expect('code' in d ? d.code : undefined).toBe(c.expect.code);
    if (c.expect.rule) expect('rule' in d ? d.rule : undefined).toBe(c.expect.rule);
    if (c.expect.until !== undefined) expect('until' in d ? d.until : undefined).toBe(c.expect.until);
    if (d.verdict === 'refuse' || d.verdict === 'hold') expect(d.message).toMatch(/\((rule \d+|prepayment): /);
  });
});
