import type { OrderAction } from '../relay.js';
import type { OrderEvent, OrderOrigin, OrderReason, OrderState } from '../switch-order.js';
import { REASON_RULES, RULES, type RuleId } from './disconnect-gate.js';

/**
 * Which rules one order passed, was held or stopped by, told from what is stored about it: its events. The gate
 * (disconnect-gate.ts) stores every hold and refusal as "E_CODE: message", and an order only moves on (to queued, or
 * onto the wire) when every rule allowed it at that moment. So the latest of those words says what the rules last
 * decided; a rule after the one that held or stopped the order was not evaluated then, and is said to be `not_checked`,
 * never `passed`. Pure: no I/O.
 */

export type RuleKey = RuleId | 'reconnectWins';
export type RuleOutcome = 'passed' | 'held' | 'stopped' | 'not_checked' | 'not_applicable';

export interface RuleFinding {
  rule: RuleKey;
  /** "rule 3: payment re-checked at the last moment". */
  name: string;
  outcome: RuleOutcome;
  /** The code the rule gave (held or stopped), or the last code it held the order with before it passed. */
  code: string | null;
  detail: string | null;
}

export interface OrderRulesInput {
  action: OrderAction;
  limitW: number | null;
  reason: OrderReason;
  origin: OrderOrigin;
  state: OrderState;
  planId: string | null;
  approvedBy: string | null;
  approvedAt: number | null;
  /** In stored order (oldest first). */
  events: readonly Pick<OrderEvent, 'at' | 'from' | 'to' | 'reason'>[];
  /** Policy facts that decide whether a rule is evaluated at all (today's configuration). */
  policy: { nonPaymentRequiresPlan: boolean };
}

const RULE_NAMES: Record<RuleKey, string> = { ...RULES, reconnectWins: 'rule 12: a reconnect always wins' };

/** The rule each stored code belongs to. */
const CODE_RULE: Record<string, RuleKey> = {
  E_RECONNECT_PENDING: 'reconnectWins',
  E_PROTECTED_MODE: 'protectedMode',
  E_CREDIT_CUTOFF_RESERVED: 'creditControl',
  E_CREDIT_AVAILABLE: 'creditControl',
  E_REFERENCE_REQUIRED: 'authority',
  E_REASON_NOT_ALLOWED: 'authority',
  E_CIRCUIT_OPEN: 'successRate',
  E_PROTECTED_CUSTOMER: 'protectedCustomer',
  E_APPROVAL_REQUIRED: 'protectedCustomer',
  E_NO_PREPAYMENT_AGREEMENT: 'prepaymentAgreement',
  E_FRIENDLY_HOURS: 'friendlyHours',
  E_PLAN_REQUIRED: 'plan',
  E_PLAN_NOT_APPROVED: 'plan',
  E_PLAN_WINDOW_CLOSED: 'plan',
  E_PLAN_WINDOW_NOT_OPEN: 'plan',
  E_NO_BILLING_HOOK: 'paymentRecheck',
  E_PAID: 'paymentRecheck',
  E_BILLING_UNREACHABLE: 'paymentRecheck',
  E_LIMIT_FIRST: 'limitBeforeCut',
  E_NOTICE_TOO_RECENT: 'notice',
  E_NOTICE_STALE: 'notice',
  E_NOTICE_MISSING: 'notice',
  E_OUTSIDE_WINDOW: 'window',
  E_DAILY_CAP: 'dailyCap',
  E_SECOND_NOTICE_PENDING: 'secondNotice',
  E_SECOND_NOTICE_UNDELIVERED: 'secondNotice',
};

/**
 * One step of the evaluation, in the gate's order. A rule may be looked at twice (credit control: who asked, then the
 * ledger; the payment re-check: a hook is configured, then the billing system's answer right before the command).
 */
interface Step {
  rule: RuleKey;
  /** The codes this step gives; a code picks its step. */
  codes: readonly string[];
}

const step = (rule: RuleKey, ...codes: string[]): Step => ({ rule, codes });

/** The steps a disconnect for this reason goes through, in evaluateDisconnectGate's order, then the last-moment re-check. */
function disconnectSteps(reason: OrderReason, requiresPlan: boolean): Step[] {
  const rules = REASON_RULES[reason as keyof typeof REASON_RULES];
  const steps = [step('reconnectWins', 'E_RECONNECT_PENDING'), step('protectedMode', 'E_PROTECTED_MODE')];
  if (!rules) return [...steps, step('authority', 'E_REASON_NOT_ALLOWED')];
  if (reason === 'credit_exhausted') steps.push(step('creditControl', 'E_CREDIT_CUTOFF_RESERVED'));
  if (rules.reference !== null) steps.push(step('authority', 'E_REFERENCE_REQUIRED'));
  steps.push(step('successRate', 'E_CIRCUIT_OPEN'), step('protectedCustomer', 'E_PROTECTED_CUSTOMER', 'E_APPROVAL_REQUIRED'));
  if (reason === 'credit_exhausted') {
    steps.push(step('prepaymentAgreement', 'E_NO_PREPAYMENT_AGREEMENT'), step('limitBeforeCut', 'E_LIMIT_FIRST'), step('creditControl', 'E_CREDIT_AVAILABLE'), step('friendlyHours', 'E_FRIENDLY_HOURS'));
    return steps;
  }
  if (rules.nonPayment) {
    if (requiresPlan) steps.push(step('plan', 'E_PLAN_REQUIRED', 'E_PLAN_NOT_APPROVED', 'E_PLAN_WINDOW_CLOSED', 'E_PLAN_WINDOW_NOT_OPEN'));
    steps.push(step('paymentRecheck', 'E_NO_BILLING_HOOK'), step('limitBeforeCut', 'E_LIMIT_FIRST'), step('notice', 'E_NOTICE_TOO_RECENT', 'E_NOTICE_STALE', 'E_NOTICE_MISSING'));
  }
  if (rules.windows) steps.push(step('window', 'E_OUTSIDE_WINDOW'));
  if (rules.cap) steps.push(step('dailyCap', 'E_DAILY_CAP'));
  if (rules.nonPayment) steps.push(step('secondNotice', 'E_SECOND_NOTICE_PENDING', 'E_SECOND_NOTICE_UNDELIVERED'), step('paymentRecheck', 'E_PAID', 'E_BILLING_UNREACHABLE'));
  return steps;
}

/** A demand limit's steps (limitDecision); a removal gives supply back and goes through none. */
function limitSteps(limitW: number | null): Step[] {
  if (limitW === null) return [];
  return [step('authority', 'E_REASON_NOT_ALLOWED', 'E_REFERENCE_REQUIRED'), step('protectedMode', 'E_PROTECTED_MODE'), step('protectedCustomer', 'E_PROTECTED_CUSTOMER')];
}

/** Every rule shown for a disconnect, so an operator sees which ones a reason does not go through. */
const DISCONNECT_RULES: readonly RuleKey[] = [
  'reconnectWins',
  'protectedMode',
  'authority',
  'creditControl',
  'successRate',
  'protectedCustomer',
  'prepaymentAgreement',
  'plan',
  'paymentRecheck',
  'limitBeforeCut',
  'notice',
  'window',
  'dailyCap',
  'secondNotice',
  'friendlyHours',
];

type Word = { kind: 'pass'; index: number } | { kind: 'hold' | 'stop'; code: string; message: string; index: number };

const CODED = /^(E_[A-Z_]+): ([\s\S]*)$/;
const STOPPED_STATES: ReadonlySet<OrderState> = new Set(['refused', 'cancelled']);

/** What an event says about the rules: every rule allowed the order, a rule held it, a rule stopped it, or nothing. */
function wordOf(e: OrderRulesInput['events'][number], index: number): Word | null {
  const m = e.reason === null ? null : CODED.exec(e.reason);
  if (m && CODE_RULE[m[1]!] !== undefined) return { kind: STOPPED_STATES.has(e.to) ? 'stop' : 'hold', code: m[1]!, message: m[2]!, index };
  // The gate allowed it: admitted to the queue, released from a hold, or sent (the gate runs again right before every attempt).
  if (e.to === 'in_flight' && e.from !== 'in_flight') return { kind: 'pass', index };
  if (e.to === 'queued' && (e.from === 'accepted' || e.from === 'held' || e.from === 'escalated')) return { kind: 'pass', index };
  return null;
}

export function orderRules(input: OrderRulesInput): RuleFinding[] {
  if (input.action === 'reconnect') {
    return [{ rule: 'reconnectWins', name: RULE_NAMES.reconnectWins, outcome: 'passed', code: null, detail: 'a reconnect is never held by the disconnect rules; it supersedes an open disconnect' }];
  }
  const steps = input.action === 'limit' ? limitSteps(input.limitW) : disconnectSteps(input.reason, input.policy.nonPaymentRequiresPlan);
  const shown: readonly RuleKey[] = input.action === 'limit' ? ['authority', 'protectedMode', 'protectedCustomer'] : DISCONNECT_RULES;
  const words = input.events.map(wordOf).filter((w): w is Word => w !== null);
  const latest = words[words.length - 1];
  // The step the latest hold or stop came from; every step before it allowed the order at that moment.
  const at = latest && latest.kind !== 'pass' ? steps.findIndex((s) => s.codes.includes(latest.code)) : -1;
  const everHeld = new Map<RuleKey, string>();
  for (const w of words) if (w.kind !== 'pass') everHeld.set(CODE_RULE[w.code]!, w.code);

  return shown.map((rule): RuleFinding => {
    const name = RULE_NAMES[rule];
    const positions = steps.flatMap((s, i) => (s.rule === rule ? [i] : []));
    if (positions.length === 0) return { rule, name, outcome: 'not_applicable', code: null, detail: notApplicableWhy(rule, input) };
    const earlier = everHeld.get(rule) ?? null;
    const earlierNote = earlier ? `it held the order earlier (${earlier})` : null;
    if (!latest) return { rule, name, outcome: 'not_checked', code: null, detail: 'the rules have not been evaluated for this order yet' };
    if (latest.kind === 'pass') {
      // Admitted, not yet sent: the billing system is asked only right before the command.
      const recheckPending = positions.some((p) => steps[p]!.codes.includes('E_PAID')) && input.events[latest.index]!.from === 'accepted';
      if (recheckPending) return { rule, name, outcome: 'not_checked', code: earlier, detail: join('a billing hook is configured; the billing system is asked right before the command', earlierNote) };
      return { rule, name, outcome: 'passed', code: earlier, detail: join(passedDetail(rule, input), earlierNote) };
    }
    if (at < 0) return { rule, name, outcome: 'not_checked', code: null, detail: null };
    if (steps[at]!.rule === rule && positions.includes(at)) {
      const outcome = latest.kind === 'stop' ? 'stopped' : 'held';
      const ended = latest.kind === 'hold' && (STOPPED_STATES.has(input.state) || input.state === 'superseded' || input.state === 'failed') ? ` (it was holding the order when the order ended ${input.state})` : '';
      return { rule, name, outcome, code: latest.code, detail: `${latest.message}${ended}` };
    }
    // Passed only if every look at it came before the rule that held or stopped the order.
    if (positions.every((p) => p < at)) return { rule, name, outcome: 'passed', code: earlier, detail: join(passedDetail(rule, input), earlierNote) };
    return { rule, name, outcome: 'not_checked', code: null, detail: `not evaluated: ${RULE_NAMES[steps[at]!.rule]} ${latest.kind === 'stop' ? 'stopped' : 'held'} the order first` };
  });
}

const join = (...parts: (string | null)[]): string | null => parts.filter(Boolean).join('; ') || null;

function passedDetail(rule: RuleKey, input: OrderRulesInput): string | null {
  if (rule === 'protectedCustomer' && input.approvedBy !== null && input.approvedAt !== null) return `approved by ${input.approvedBy} at ${new Date(input.approvedAt).toISOString()}`;
  if (rule === 'plan' && input.planId !== null) return `part of plan ${input.planId}`;
  if (rule === 'paymentRecheck' && input.events.some((e) => e.to === 'in_flight')) return 'the billing system said unpaid right before the command';
  return null;
}

function notApplicableWhy(rule: RuleKey, input: OrderRulesInput): string {
  if (input.action === 'limit') return input.limitW === null ? 'a limit removal gives supply back and is never held' : 'a demand limit is not a cut';
  if (rule === 'plan' && !input.policy.nonPaymentRequiresPlan && REASON_RULES[input.reason as keyof typeof REASON_RULES]?.nonPayment) return 'the policy does not require a plan';
  return `a ${input.reason.replaceAll('_', ' ')} disconnect does not go through this rule`;
}
