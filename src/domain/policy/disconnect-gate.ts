import type { ErrorCode } from '../../errors.js';
import type { OrderAction } from '../relay.js';
import { LIMIT_REASONS, type DisconnectReason, type OrderOrigin, type OrderReason } from '../switch-order.js';
import { FRIENDLY_SEARCH_MS, friendlyHoursEnd, isFriendly } from '../prepayment/friendly-hours.js';
import { localParts, nextPermitted, windowVerdict, type WeatherPeriod } from './calendar.js';
import { isNoticeEvidence, type MeterFlags, type NoticeRecord, type PlanFacts } from './meter-facts.js';
import type { PolicyConfig } from './policy-config.js';

/**
 * The policy gate: DOMAIN.md rules 1–10 and 12 applied to one order at one instant. Pure; the clock, the
 * meter's facts and the day's counts are arguments. It runs when an order is admitted and again right before
 * every attempt (so retries, restarts and plans pass through it too). Reconnects are never held (rule 12).
 *
 * A reason is a claim, not an authority (rule 7): each disconnect reason says what evidence it needs and which
 * rules it passes through (`REASON_RULES`); no reason lets one person go around a plan for a customer who is
 * protected or in arrears. Which roles may name a reason is `DISCONNECT_REASON_ROLES` in src/api/auth.ts.
 */

export const RULES = {
  notice: 'rule 1: effective advance notice',
  secondNotice: 'rule 2: second notice 30 minutes before',
  paymentRecheck: 'rule 3: payment re-checked at the last moment',
  dailyCap: 'rule 4: daily cap',
  window: 'rule 5: permitted windows',
  protectedCustomer: 'rule 6: protected customers',
  plan: 'rule 7: central authority, maker–checker',
  authority: 'rule 7: every disconnect has an authority',
  prepaymentAgreement: 'rule 8: prepayment needs an agreement',
  creditControl: 'rule 8: a credit cut-off comes only from credit control, while the ledger shows no credit',
  protectedMode: 'rule 9: protected mode',
  limitBeforeCut: 'rule 10: limit before cutting',
  successRate: 'rule 16: success-rate circuit breaker',
  friendlyHours: 'prepayment: friendly-credit hours',
} as const;
export type RuleId = keyof typeof RULES;

export const NON_PAYMENT_REASONS: ReadonlySet<OrderReason> = new Set(['arrears', 'credit_exhausted']);

/** What one disconnect reason needs and which rules it passes through. */
export interface ReasonRules {
  /** The evidence the order itself must carry (`reference`); null when the evidence is elsewhere (a plan, the ledger). */
  reference: string | null;
  /** Rule 6: a protected customer is refused, or waits for a supervisor's one-meter approval (all flags, or medical equipment only). */
  protectedCustomer: 'refuse' | 'approval' | 'approval_if_medical';
  /** Rules 1–3 and 10: notice, second notice, payment re-check, limit before cutting. */
  nonPayment: boolean;
  /** Rule 5, and rule 4 (it takes a slot of the day's cap). */
  windows: boolean;
  cap: boolean;
  /** Audited as an emergency. */
  emergency: boolean;
}

export const REASON_RULES: Readonly<Record<DisconnectReason, ReasonRules>> = {
  arrears: { reference: null, protectedCustomer: 'refuse', nonPayment: true, windows: true, cap: true, emergency: false },
  credit_exhausted: { reference: null, protectedCustomer: 'refuse', nonPayment: false, windows: false, cap: false, emergency: false },
  customer_request: { reference: "the customer's request", protectedCustomer: 'approval', nonPayment: false, windows: true, cap: true, emergency: false },
  vacant_premises: { reference: 'the move-out record', protectedCustomer: 'approval', nonPayment: false, windows: true, cap: true, emergency: false },
  safety: { reference: 'the incident', protectedCustomer: 'approval_if_medical', nonPayment: false, windows: false, cap: false, emergency: true },
};

const rulesOf = (reason: OrderReason): ReasonRules | undefined => REASON_RULES[reason as DisconnectReason];

/** Whether the order counts against the day's cap (rule 4): a disconnect for a reason the cap applies to; never a limit. */
export const takesCapSlot = (order: { action: OrderAction; reason: OrderReason }): boolean => order.action === 'disconnect' && (rulesOf(order.reason)?.cap ?? false);

/** The latest pre-disconnect notification of an order (rule 2) and what became of it. */
export interface SecondNoticeFacts {
  id: string;
  sentAt: number;
  /** When the customer channel accepted it (a 2xx); null while it has not. */
  deliveredAt: number | null;
  attempts: number;
  lastError: string | null;
}

export interface GateInput {
  now: number;
  /** At admission a rule that says "never" refuses; before an attempt a temporary state (protected mode) holds. */
  stage: 'admission' | 'attempt';
  order: {
    action: OrderAction;
    /** For `limit`: the limit asked for (W), null for a removal. */
    limitW: number | null;
    reason: OrderReason;
    planId: string | null;
    /** The path the order came in by: only credit control's own orders may cut off for credit. */
    origin: OrderOrigin;
    /** The evidence the reason needs (the request, the move-out record, the incident). */
    reference: string | null;
    /** When a supervisor approved this one order, if one did. */
    approvedAt: number | null;
    /** The local day this order holds a cap slot for, if it reserved one. */
    capDay: string | null;
  };
  /** The order's latest pre-disconnect notification, if one went out (arrears). */
  secondNotice: SecondNoticeFacts | null;
  /** The meter's credit ledger (credit cut-offs only). */
  credit: { noCredit: boolean; balance: number; emergencyCreditRemaining: number } | null;
  plan: PlanFacts | null;
  meter: { meterId: string; region: string; flags: MeterFlags };
  notices: readonly NoticeRecord[];
  weather: readonly WeatherPeriod[];
  /** Disconnects that reserved a slot on the local day of `now`. */
  capUsage: { overall: number; region: number };
  /** Open success-rate breakers for this meter's profile, link or region (disconnects). */
  openBreakers: readonly { id: string; scope: string; key: string; reason: string }[];
  policy: PolicyConfig;
}

export type GateDecision =
  | { verdict: 'allow' }
  | { verdict: 'refuse'; rule: RuleId; code: ErrorCode; message: string }
  /** The order is no longer wanted (the customer has credit again): it ends `cancelled`, nothing is sent. */
  | { verdict: 'cancel'; rule: RuleId; code: ErrorCode; message: string }
  | { verdict: 'hold'; rule: RuleId; code: ErrorCode; message: string; until: number }
  /** Everything else allows it: emit the pre-disconnect notification now and hold until `until`. */
  | { verdict: 'second_notice'; rule: 'secondNotice'; until: number };

const DAY_MS = 86_400_000;
const MIN_MS = 60_000;
/** A held disconnect looks again at an open breaker this often. */
export const BREAKER_RECHECK_MS = 60_000;
/** ...at an undelivered pre-disconnect notification this often (a delivery also wakes it at once). */
export const UNDELIVERED_RECHECK_MS = 60_000;
/** ...at protected mode, and at a missing approval, this often (releasing or approving wakes it at once). */
export const PROTECTION_RECHECK_MS = 15 * 60_000;

const iso = (ms: number): string => new Date(ms).toISOString();
const refuse = (rule: RuleId, code: ErrorCode, message: string): GateDecision => ({ verdict: 'refuse', rule, code, message: `${message} (${RULES[rule]})` });
const cancel = (rule: RuleId, code: ErrorCode, message: string): GateDecision => ({ verdict: 'cancel', rule, code, message: `${message} (${RULES[rule]})` });
const hold = (rule: RuleId, code: ErrorCode, message: string, until: number): GateDecision => ({
  verdict: 'hold',
  rule,
  code,
  message: `${message}; held until ${iso(until)} (${RULES[rule]})`,
  until,
});
/** A hold with no end known in advance: looked at again every `every` ms (the message stays the same, so the order's history does not fill up). */
const holdWhile = (rule: RuleId, code: ErrorCode, message: string, now: number, every: number): GateDecision => ({
  verdict: 'hold',
  rule,
  code,
  message: `${message} (${RULES[rule]})`,
  until: now + every,
});
const days = (ms: number): string => `${(ms / DAY_MS).toFixed(2).replace(/\.?0+$/, '')} days`;
const protectionWords = (f: MeterFlags): string[] =>
  [f.vulnerable && 'vulnerable', f.medicalEquipment && 'medical equipment', f.priorityRegister && 'priority register'].filter((w): w is string => typeof w === 'string');

/** Rule 1: the latest delivered notice between minLead and maxLead days old. */
export function noticeDecision(meterId: string, notices: readonly NoticeRecord[], now: number, policy: PolicyConfig): GateDecision {
  const min = policy.notice.minLeadDays * DAY_MS;
  const max = policy.notice.maxLeadDays * DAY_MS;
  // Only a delivered notice with its reference is evidence; rows stored before that was checked at input are ignored.
  const evidence = notices.filter(isNoticeEvidence);
  if (evidence.some((n) => n.servedAt <= now - min && n.servedAt >= now - max)) return { verdict: 'allow' };
  const recent = evidence.filter((n) => n.servedAt > now - min && n.servedAt <= now).sort((a, b) => a.servedAt - b.servedAt)[0];
  if (recent) {
    return hold('notice', 'E_NOTICE_TOO_RECENT', `disconnect not yet allowed: the notice served ${new Date(recent.servedAt).toISOString()} for meter ${meterId} is ${days(now - recent.servedAt)} old, ${policy.notice.minLeadDays} are needed`, recent.servedAt + min);
  }
  if (evidence.length > 0) {
    return refuse('notice', 'E_NOTICE_STALE', `disconnect refused: the last delivered notice for meter ${meterId} is more than ${policy.notice.maxLeadDays} days old; serve a new notice`);
  }
  const undelivered = notices.some((n) => !isNoticeEvidence(n));
  return refuse(
    'notice',
    'E_NOTICE_MISSING',
    `disconnect refused: no delivered notice at least ${policy.notice.minLeadDays} days old for meter ${meterId}` +
      (undelivered ? '; a notice without a delivery receipt and its reference is not evidence: follow it with a phone call or a notice delivered by hand, recorded with its reference' : ''),
  );
}

/** Rule 4 on its own, so the store can re-check it atomically when it reserves the slot. */
export function capAllows(usage: { overall: number; region: number }, region: string, policy: PolicyConfig): boolean {
  const regionCap = policy.dailyCap.perRegion[region] ?? policy.dailyCap.defaultPerRegion;
  return usage.overall < policy.dailyCap.overall && usage.region < regionCap;
}

/** The first instant of the next local day. */
export function nextLocalDay(now: number, timeZone: string): number {
  const today = localParts(now, timeZone).date;
  let t = Math.ceil((now + 1) / (5 * MIN_MS)) * 5 * MIN_MS;
  while (localParts(t, timeZone).date === today) t += 5 * MIN_MS;
  return t;
}

export function evaluateDisconnectGate(input: GateInput): GateDecision {
  const { now, order, meter } = input;
  if (order.action === 'reconnect') return { verdict: 'allow' }; // rule 12
  if (order.action === 'limit') return limitDecision(input);
  const f = meter.flags;
  if (f.protectedMode) {
    // Admission: refused (rule 9). An order admitted before the meter went into protected mode waits until it is
    // released, and then passes every rule again.
    if (input.stage === 'admission') return refuse('protectedMode', 'E_PROTECTED_MODE', `disconnect refused: meter ${meter.meterId} is in protected mode; release it first`);
    return holdWhile('protectedMode', 'E_PROTECTED_MODE', `disconnect waits: meter ${meter.meterId} is in protected mode; it resumes, through every rule again, once the mode is released`, now, PROTECTION_RECHECK_MS);
  }
  const rules = rulesOf(order.reason);
  if (!rules) return refuse('authority', 'E_REASON_NOT_ALLOWED', `disconnect refused: "${order.reason}" is not a disconnect reason`);
  const authority = authorityDecision(input, rules);
  if (authority) return authority;
  const breaker = input.openBreakers[0];
  if (breaker) {
    return holdWhile('successRate', 'E_CIRCUIT_OPEN', `disconnects for ${breaker.scope} ${breaker.key} are stopped: ${breaker.reason}; an operator resets breaker ${breaker.id} once the cause is fixed`, now, BREAKER_RECHECK_MS);
  }
  const protection = protectionWords(f);
  if (protection.length > 0) {
    const why = protection.join(', ');
    if (rules.protectedCustomer === 'refuse') {
      const what = order.reason === 'credit_exhausted' ? 'credit cut-off' : 'disconnect for non-payment';
      return refuse('protectedCustomer', 'E_PROTECTED_CUSTOMER', `${what} refused: the customer at meter ${meter.meterId} is protected (${why}); the case goes to a person`);
    }
    const needsApproval = rules.protectedCustomer === 'approval' || f.medicalEquipment;
    if (needsApproval && order.approvedAt === null) {
      return holdWhile(
        'protectedCustomer',
        'E_APPROVAL_REQUIRED',
        `disconnect waits for a supervisor: the customer at meter ${meter.meterId} is protected (${why}), so a ${order.reason.replace('_', ' ')} disconnect needs a supervisor's approval of this order (POST /v1/orders/{orderId}/approve), or it is cancelled`,
        now,
        PROTECTION_RECHECK_MS,
      );
    }
  }
  if (order.reason === 'credit_exhausted') return creditCutOffDecision(input);
  if (rules.nonPayment) {
    const nonPayment = nonPaymentDecision(input);
    if (nonPayment) return nonPayment;
  }
  if (rules.windows) {
    const window = windowVerdict(now, input.policy.windows, input.weather, meter.region);
    if (!window.ok) {
      const until = nextPermitted(now, input.policy.windows, input.weather, meter.region);
      if (until === null) return refuse('window', 'E_OUTSIDE_WINDOW', `disconnect refused: no permitted window in the next 60 days (${window.message})`);
      return hold('window', 'E_OUTSIDE_WINDOW', `disconnect not now: ${window.message}`, until);
    }
  }
  if (rules.cap) {
    const today = localParts(now, input.policy.windows.timezone).date;
    if (order.capDay !== today && !capAllows(input.capUsage, meter.region, input.policy)) {
      return hold('dailyCap', 'E_DAILY_CAP', `disconnect waits: today's cap for region ${meter.region} or overall is used`, nextLocalDay(now, input.policy.windows.timezone));
    }
  }
  if (rules.nonPayment) return secondNoticeDecision(input, rules);
  return { verdict: 'allow' };
}

/**
 * Rule 7 (and 8): the reason's own evidence. A credit cut-off only from credit control; a request, a move-out or
 * an incident only with its reference.
 */
function authorityDecision(input: GateInput, rules: ReasonRules): GateDecision | null {
  const { order, meter } = input;
  if (order.reason === 'credit_exhausted' && order.origin !== 'credit_control') {
    return refuse('creditControl', 'E_CREDIT_CUTOFF_RESERVED', `disconnect refused: reason credit_exhausted is the gateway's own credit control's, never a caller's; meter ${meter.meterId}'s credit is judged from its ledger`);
  }
  if (rules.reference !== null && (order.reference === null || order.reference.trim() === '')) {
    return refuse('authority', 'E_REFERENCE_REQUIRED', `disconnect refused: reason ${order.reason} needs a reference to ${rules.reference}`);
  }
  return null;
}

/** Rules 1, 3, 7 and 10 for a disconnect for arrears (rule 2 comes last: secondNoticeDecision). */
function nonPaymentDecision(input: GateInput): GateDecision | null {
  const { now, order, meter, policy } = input;
  // Arrears are decided centrally, in a plan (seed 004 §2.2).
  if (policy.nonPaymentRequiresPlan) {
    const plan = input.plan;
    if (!plan || order.planId === null) {
      return refuse('plan', 'E_PLAN_REQUIRED', `disconnect for non-payment refused: it must be part of a disconnect plan approved by a supervisor (POST /v1/plans)`);
    }
    if (plan.status !== 'approved') return refuse('plan', 'E_PLAN_NOT_APPROVED', `disconnect refused: plan ${plan.id} is ${plan.status}, not approved`);
    if (now >= plan.windowTo) return refuse('plan', 'E_PLAN_WINDOW_CLOSED', `disconnect refused: plan ${plan.id}'s window closed at ${iso(plan.windowTo)}`);
    if (now < plan.windowFrom) return hold('plan', 'E_PLAN_WINDOW_NOT_OPEN', `plan ${plan.id}'s window opens later`, plan.windowFrom);
  }
  if (policy.paymentRecheck.url === null) {
    return refuse('paymentRecheck', 'E_NO_BILLING_HOOK', 'disconnect for non-payment refused: no billing re-check hook is configured (policy.paymentRecheck.url), so payment cannot be checked at the last moment');
  }
  const limit = limitBeforeCutDecision(input);
  if (limit) return limit;
  const notice = noticeDecision(meter.meterId, input.notices, now, policy);
  if (notice.verdict !== 'allow') return notice;
  return null;
}

/**
 * The rules for a demand limit (rule 10), decided at admission. A limit is a hardship measure, not a cut: the customer
 * keeps a supply up to the limit, so the notice, second notice and payment re-check (rules 1–3), the plan (rule 7),
 * the daily cap (4) and the windows (5) do not apply to it. What does: the reason and its evidence (rule 7: a customer's
 * request or a safety limit names its reference), protected mode (rule 9: a limiter opens the relay when the demand
 * goes over it, and protected mode refuses every trip) and protected customers (rule 6: limited only if the utility's
 * configuration says so, `policy.limitBeforeCut.protectedCustomers`). A removal gives supply back and is never held,
 * like a reconnect (rule 12).
 */
function limitDecision(input: GateInput): GateDecision {
  const { order, meter, policy } = input;
  if (order.limitW === null) return { verdict: 'allow' };
  if (!(LIMIT_REASONS as readonly string[]).includes(order.reason)) {
    return refuse('authority', 'E_REASON_NOT_ALLOWED', `limit refused: "${order.reason}" is not a reason to limit a meter (${LIMIT_REASONS.join(', ')})`);
  }
  const needs = rulesOf(order.reason)?.reference ?? null;
  if (needs !== null && (order.reference === null || order.reference.trim() === '')) {
    return refuse('authority', 'E_REFERENCE_REQUIRED', `limit refused: reason ${order.reason} needs a reference to ${needs}`);
  }
  if (meter.flags.protectedMode) {
    return refuse('protectedMode', 'E_PROTECTED_MODE', `limit refused: meter ${meter.meterId} is in protected mode, and a limiter opens the relay when the demand goes over the limit; release the mode first`);
  }
  const protection = protectionWords(meter.flags);
  if (protection.length > 0 && policy.limitBeforeCut.protectedCustomers !== true) {
    return refuse(
      'protectedCustomer',
      'E_PROTECTED_CUSTOMER',
      `limit refused: the customer at meter ${meter.meterId} is protected (${protection.join(', ')}) and the utility's configuration does not limit protected customers (policy.limitBeforeCut.protectedCustomers); the case goes to a person`,
    );
  }
  return { verdict: 'allow' };
}

function limitBeforeCutDecision(input: GateInput): GateDecision | null {
  const { now, meter, policy } = input;
  const f = meter.flags;
  if (policy.limitBeforeCut.enabled && f.hasLoadLimiter) {
    const needed = policy.limitBeforeCut.days * DAY_MS;
    if (f.loadLimitedSince === null || now - f.loadLimitedSince < needed) {
      return refuse('limitBeforeCut', 'E_LIMIT_FIRST', `disconnect refused: meter ${meter.meterId} has a load limiter; limit the supply for ${policy.limitBeforeCut.days} days before cutting`);
    }
  }
  return null;
}

/**
 * Rule 2: the command waits until the pre-disconnect notification was DELIVERED (the customer channel answered
 * 2xx) and the configured minutes have passed since the delivery. Sent but undelivered holds; it never lets the
 * order through.
 */
function secondNoticeDecision(input: GateInput, rules: ReasonRules): GateDecision {
  const { now, policy } = input;
  const lead = policy.notice.secondNoticeMinutes * MIN_MS;
  const n = input.secondNotice;
  // A notice delivered longer ago than secondNoticeValidMinutes no longer announces an imminent disconnect: a new one.
  if (n === null || (n.deliveredAt !== null && now - n.deliveredAt > policy.notice.secondNoticeValidMinutes * MIN_MS)) {
    // Never announce a disconnect that could not happen then: the notice waits for a window that is still open after its minutes.
    if (rules.windows) {
      const at = now + lead;
      const window = windowVerdict(at, policy.windows, input.weather, input.meter.region);
      if (!window.ok) {
        const until = nextPermitted(at, policy.windows, input.weather, input.meter.region);
        if (until === null) return refuse('window', 'E_OUTSIDE_WINDOW', `disconnect refused: no permitted window in the next 60 days (${window.message})`);
        return hold('window', 'E_OUTSIDE_WINDOW', `the pre-disconnect notice waits: ${policy.notice.secondNoticeMinutes} minutes from now is outside the permitted windows (${window.message})`, until);
      }
    }
    return { verdict: 'second_notice', rule: 'secondNotice', until: now + lead };
  }
  if (n.deliveredAt === null) {
    return holdWhile(
      'secondNotice',
      'E_SECOND_NOTICE_UNDELIVERED',
      `the pre-disconnect notification ${n.id} (sent ${iso(n.sentAt)}) has not been delivered to the customer; the command waits for its delivery and ${policy.notice.secondNoticeMinutes} minutes after it (its delivery attempts are on the order)`,
      now,
      UNDELIVERED_RECHECK_MS,
    );
  }
  if (now < n.deliveredAt + lead) return hold('secondNotice', 'E_SECOND_NOTICE_PENDING', `pre-disconnect notification delivered ${iso(n.deliveredAt)}`, n.deliveredAt + lead);
  return { verdict: 'allow' };
}

/**
 * A credit cut-off follows the prepayment rules (rule 8): an agreement on record, the ledger showing no credit
 * (emergency credit included) at this very moment, and friendly-credit hours instead of the arrears windows and caps.
 */
function creditCutOffDecision(input: GateInput): GateDecision {
  const { now, meter, policy } = input;
  const f = meter.flags;
  if (!(f.prepaymentMode && f.prepaymentAgreementRef)) {
    return refuse('prepaymentAgreement', 'E_NO_PREPAYMENT_AGREEMENT', `credit cut-off refused: meter ${meter.meterId} has no prepayment agreement on record`);
  }
  const limit = limitBeforeCutDecision(input);
  if (limit) return limit;
  const credit = input.credit;
  if (!credit || !credit.noCredit) {
    const what = credit ? `balance ${credit.balance}${credit.emergencyCreditRemaining > 0 ? `, emergency credit ${credit.emergencyCreditRemaining} left` : ''}` : 'the ledger could not be read';
    return cancel('creditControl', 'E_CREDIT_AVAILABLE', `credit cut-off cancelled: meter ${meter.meterId}'s ledger shows credit (${what})`);
  }
  const friendly = policy.creditCutOff.friendlyHours;
  if (isFriendly(now, friendly)) {
    const end = friendlyHoursEnd(now, friendly) ?? now + FRIENDLY_SEARCH_MS;
    return hold('friendlyHours', 'E_FRIENDLY_HOURS', 'credit cut-off not inside friendly-credit hours', end);
  }
  return { verdict: 'allow' };
}
