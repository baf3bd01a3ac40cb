import type { ErrorCode } from '../../errors.js';
import type { SwitchAction } from '../relay.js';
import type { OrderReason } from '../switch-order.js';
import { FRIENDLY_SEARCH_MS, friendlyHoursEnd, isFriendly } from '../prepayment/friendly-hours.js';
import { localParts, nextPermitted, windowVerdict, type WeatherPeriod } from './calendar.js';
import type { MeterFlags, NoticeRecord, PlanFacts } from './meter-facts.js';
import type { PolicyConfig } from './policy-config.js';

/**
 * The policy gate: DOMAIN.md rules 1–10 and 12 applied to one order at one instant. Pure; the clock, the
 * meter's facts and the day's counts are arguments. It runs when an order is admitted and again right before
 * every attempt (so retries, restarts and plans pass through it too). Reconnects are never held (rule 12).
 */

export const RULES = {
  notice: 'rule 1: effective advance notice',
  secondNotice: 'rule 2: second notice 30 minutes before',
  paymentRecheck: 'rule 3: payment re-checked at the last moment',
  dailyCap: 'rule 4: daily cap',
  window: 'rule 5: permitted windows',
  protectedCustomer: 'rule 6: protected customers',
  plan: 'rule 7: central authority, maker–checker',
  prepaymentAgreement: 'rule 8: prepayment needs an agreement',
  protectedMode: 'rule 9: protected mode',
  limitBeforeCut: 'rule 10: limit before cutting',
  successRate: 'rule 16: success-rate circuit breaker',
  friendlyHours: 'prepayment: friendly-credit hours',
} as const;
export type RuleId = keyof typeof RULES;

export const NON_PAYMENT_REASONS: ReadonlySet<OrderReason> = new Set(['arrears', 'credit_exhausted']);

export interface GateInput {
  now: number;
  order: {
    action: SwitchAction;
    reason: OrderReason;
    planId: string | null;
    /** When this order's pre-disconnect notification went out, if it did. */
    secondNoticeAt: number | null;
    /** The local day this order holds a cap slot for, if it reserved one. */
    capDay: string | null;
  };
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
  | { verdict: 'hold'; rule: RuleId; code: ErrorCode; message: string; until: number }
  /** Everything else allows it: emit the pre-disconnect notification now and hold until `until`. */
  | { verdict: 'second_notice'; rule: 'secondNotice'; until: number };

const DAY_MS = 86_400_000;
/** A held disconnect looks again at an open breaker this often. */
export const BREAKER_RECHECK_MS = 60_000;
const MIN_MS = 60_000;
/** A second notice older than this no longer announces an imminent disconnect; a new one goes out. */
export const SECOND_NOTICE_VALID_MS = 24 * 3_600_000;

const refuse = (rule: RuleId, code: ErrorCode, message: string): GateDecision => ({ verdict: 'refuse', rule, code, message: `${message} (${RULES[rule]})` });
const hold = (rule: RuleId, code: ErrorCode, message: string, until: number): GateDecision => ({
  verdict: 'hold',
  rule,
  code,
  message: `${message}; held until ${new Date(until).toISOString()} (${RULES[rule]})`,
  until,
});
const days = (ms: number): string => `${(ms / DAY_MS).toFixed(2).replace(/\.?0+$/, '')} days`;

/** Rule 1: the latest delivered notice between minLead and maxLead days old. */
export function noticeDecision(meterId: string, notices: readonly NoticeRecord[], now: number, policy: PolicyConfig): GateDecision {
  const min = policy.notice.minLeadDays * DAY_MS;
  const max = policy.notice.maxLeadDays * DAY_MS;
  const evidence = notices.filter((n) => n.delivery === 'delivered');
  if (evidence.some((n) => n.servedAt <= now - min && n.servedAt >= now - max)) return { verdict: 'allow' };
  const recent = evidence.filter((n) => n.servedAt > now - min && n.servedAt <= now).sort((a, b) => a.servedAt - b.servedAt)[0];
  if (recent) {
    return hold('notice', 'E_NOTICE_TOO_RECENT', `disconnect not yet allowed: the notice served ${new Date(recent.servedAt).toISOString()} for meter ${meterId} is ${days(now - recent.servedAt)} old, ${policy.notice.minLeadDays} are needed`, recent.servedAt + min);
  }
  if (evidence.length > 0) {
    return refuse('notice', 'E_NOTICE_STALE', `disconnect refused: the last delivered notice for meter ${meterId} is more than ${policy.notice.maxLeadDays} days old; serve a new notice`);
  }
  const undelivered = notices.some((n) => n.delivery !== 'delivered');
  return refuse(
    'notice',
    'E_NOTICE_MISSING',
    `disconnect refused: no delivered notice at least ${policy.notice.minLeadDays} days old for meter ${meterId}` +
      (undelivered ? '; a notice without a delivery receipt is not evidence: follow it with a phone call or a notice delivered by hand' : ''),
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
  const { now, order, meter, policy } = input;
  if (order.action === 'reconnect') return { verdict: 'allow' }; // rule 12
  const f = meter.flags;
  if (f.protectedMode) {
    return refuse('protectedMode', 'E_PROTECTED_MODE', `disconnect refused: meter ${meter.meterId} is in protected mode; release it first`);
  }
  const breaker = input.openBreakers[0];
  if (breaker) {
    return hold('successRate', 'E_CIRCUIT_OPEN', `disconnects for ${breaker.scope} ${breaker.key} are stopped: ${breaker.reason}; an operator resets breaker ${breaker.id} once the cause is fixed`, now + BREAKER_RECHECK_MS);
  }
  if (!NON_PAYMENT_REASONS.has(order.reason)) return { verdict: 'allow' };

  if (f.vulnerable || f.medicalEquipment || f.priorityRegister) {
    const why = [f.vulnerable && 'vulnerable', f.medicalEquipment && 'medical equipment', f.priorityRegister && 'priority register'].filter(Boolean).join(', ');
    return refuse('protectedCustomer', 'E_PROTECTED_CUSTOMER', `disconnect for non-payment refused: the customer at meter ${meter.meterId} is protected (${why}); the case goes to a person`);
  }
  if (order.reason === 'credit_exhausted' && !(f.prepaymentMode && f.prepaymentAgreementRef)) {
    return refuse('prepaymentAgreement', 'E_NO_PREPAYMENT_AGREEMENT', `credit cut-off refused: meter ${meter.meterId} has no prepayment agreement on record`);
  }
  // Arrears are decided centrally, in a plan (seed 004 §2.2); a credit cut-off follows the customer's prepayment agreement.
  if (policy.nonPaymentRequiresPlan && order.reason === 'arrears') {
    const plan = input.plan;
    if (!plan || order.planId === null) {
      return refuse('plan', 'E_PLAN_REQUIRED', `disconnect for non-payment refused: it must be part of a disconnect plan approved by a supervisor (POST /v1/plans)`);
    }
    if (plan.status !== 'approved') return refuse('plan', 'E_PLAN_NOT_APPROVED', `disconnect refused: plan ${plan.id} is ${plan.status}, not approved`);
    if (now >= plan.windowTo) return refuse('plan', 'E_PLAN_WINDOW_CLOSED', `disconnect refused: plan ${plan.id}'s window closed at ${new Date(plan.windowTo).toISOString()}`);
    if (now < plan.windowFrom) return hold('plan', 'E_PLAN_WINDOW_NOT_OPEN', `plan ${plan.id}'s window opens later`, plan.windowFrom);
  }
  if (order.reason === 'arrears' && policy.paymentRecheck.url === null) {
    return refuse('paymentRecheck', 'E_NO_BILLING_HOOK', 'disconnect for non-payment refused: no billing re-check hook is configured (policy.paymentRecheck.url), so payment cannot be checked at the last moment');
  }
  if (policy.limitBeforeCut.enabled && f.hasLoadLimiter) {
    const needed = policy.limitBeforeCut.days * DAY_MS;
    if (f.loadLimitedSince === null || now - f.loadLimitedSince < needed) {
      return refuse('limitBeforeCut', 'E_LIMIT_FIRST', `disconnect refused: meter ${meter.meterId} has a load limiter; limit the supply for ${policy.limitBeforeCut.days} days before cutting`);
    }
  }
  if (order.reason === 'arrears') {
    const notice = noticeDecision(meter.meterId, input.notices, now, policy);
    if (notice.verdict !== 'allow') return notice;
  }
  if (order.reason === 'credit_exhausted') {
    // A credit cut-off follows the prepayment rules: friendly-credit hours instead of the arrears windows and caps.
    const friendly = policy.creditCutOff.friendlyHours;
    if (isFriendly(now, friendly)) {
      const end = friendlyHoursEnd(now, friendly) ?? now + FRIENDLY_SEARCH_MS;
      return hold('friendlyHours', 'E_FRIENDLY_HOURS', 'credit cut-off not inside friendly-credit hours', end);
    }
    return { verdict: 'allow' };
  }
  const window = windowVerdict(now, policy.windows, input.weather, meter.region);
  if (!window.ok) {
    const until = nextPermitted(now, policy.windows, input.weather, meter.region);
    if (until === null) return refuse('window', 'E_OUTSIDE_WINDOW', `disconnect refused: no permitted window in the next 60 days (${window.message})`);
    return hold('window', 'E_OUTSIDE_WINDOW', `disconnect not now: ${window.message}`, until);
  }
  const today = localParts(now, policy.windows.timezone).date;
  if (order.capDay !== today && !capAllows(input.capUsage, meter.region, policy)) {
    return hold('dailyCap', 'E_DAILY_CAP', `disconnect waits: today's cap for region ${meter.region} or overall is used`, nextLocalDay(now, policy.windows.timezone));
  }
  if (order.reason === 'arrears') {
    const lead = policy.notice.secondNoticeMinutes * MIN_MS;
    const sent = order.secondNoticeAt;
    if (sent === null || now - sent > SECOND_NOTICE_VALID_MS) return { verdict: 'second_notice', rule: 'secondNotice', until: now + lead };
    if (now < sent + lead) return hold('secondNotice', 'E_SECOND_NOTICE_PENDING', `pre-disconnect notification sent ${new Date(sent).toISOString()}`, sent + lead);
  }
  return { verdict: 'allow' };
}
