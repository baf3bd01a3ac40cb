import { z } from 'zod';
import { MICRO_PER_MINOR, minorUnits, MONEY_CEILING_MINOR } from '../money.js';

/**
 * The credit of one prepayment meter (issue 7) as a pure fold over its events, in the order they were recorded.
 *
 * Money is in whole MINOR currency units (pence, cents) as safe integers (money.ts, issue 14). Top-ups, emergency
 * credit, repayments and adjustments are whole minor units. A consumption's cost is kept in millionths of a minor
 * unit (`costMicro`, rounded once per reading by tariff.ts), because a half-hour's energy rarely costs whole pence.
 * **Charging rule:** costs go into a carry; each time the carry makes whole minor units, those are charged and the
 * rest (under one minor unit) is carried to the next reading (`unchargedMicro`). So nothing is lost or invented:
 * what was charged plus what is carried is exactly the sum of the costs, and the balance shown is always whole
 * minor units (the exact balance rounded up, in the customer's favour, by less than one minor unit).
 *
 * Bounds: every pot stays within MONEY_CEILING_MINOR (money.ts). An event that is not a valid event of its type
 * (a fractional or non-finite amount, a legacy row) or that would take a pot beyond the ceiling is not applied and
 * is counted in `ignored`, so a bad row can never make a balance Infinity or NaN. The API refuses such amounts
 * before they are recorded (payments.maxAmountMinor, payments.maxCreditBalanceMinor).
 *
 * Two pots:
 * - `balance` (≥ 0): the customer's own credit. Consumption takes from it first.
 * - `emergencyDebt` (≥ 0): everything used beyond it: emergency credit used, and energy used while out of
 *   credit but still on supply (friendly hours, a cut-off not yet done). It is owed back.
 *
 * Rules:
 * - **Top-up repays debt first.** Of a top-up, `min(amount, emergencyDebt)` repays the debt; only the rest is
 *   added to `balance`. When the debt reaches 0 the emergency credit ends (what was not used of it is
 *   withdrawn, so it can be offered again later). A top-up smaller than the debt leaves the meter on the rest
 *   of its emergency credit, or exhausted. A top-up starts a new warning cycle (`thresholdsCrossed` empties).
 * - **Emergency credit** (`emergency_credit_granted`) adds `amount` of usable credit once balance is spent; one
 *   grant at a time (a second grant while one is in use is ignored).
 * - `emergency_credit_repaid` is a repayment made OUTSIDE a top-up (paid on a bill, written off): it lowers the
 *   debt and never adds to the balance. Do not also record the part of a top-up that repaid the debt: the fold
 *   derives it (`lastTopUp.repaid`), and recording it again would count it twice.
 * - `adjustment` (signed): positive repays debt first, then adds to balance, like a top-up but without starting
 *   a new warning cycle (a refund of a wrong charge); negative takes from balance, then adds to debt.
 * - `consumption` events are idempotent on the register: one whose `toWh` is not above the highest `toWh`
 *   already charged is a replay and is ignored. A register that went down (tariff.ts flags it) is recorded as
 *   a consumption with `toWh < fromWh` and cost 0: it resets that mark to `toWh`.
 * - Warning thresholds are percentages of the last top-up's AMOUNT: threshold p is crossed when balance ≤
 *   p% of it. Once crossed, it stays crossed until the next top-up, even if an adjustment lifts the balance.
 */

/** The largest cost one consumption event may carry: the ceiling, in millionths (10^15, below 2^53). */
export const MAX_COST_MICRO = MONEY_CEILING_MINOR * MICRO_PER_MINOR;

const at = z.number().int();
/** Whole minor units, 1 to the ceiling. */
const amount = minorUnits(1);

export const CreditEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('top_up'), amount, at, ref: z.string().min(1) }).strict(),
  z
    .object({
      type: z.literal('consumption'),
      /** The reading's cost in millionths of a minor unit, rounded once (tariff.ts). */
      costMicro: z.number().int().min(0).max(MAX_COST_MICRO),
      at,
      fromWh: z.number().finite(),
      toWh: z.number().finite(),
    })
    .strict(),
  z.object({ type: z.literal('emergency_credit_granted'), amount, at }).strict(),
  z.object({ type: z.literal('emergency_credit_repaid'), amount, at, ref: z.string().nullable().optional() }).strict(),
  z.object({ type: z.literal('adjustment'), amount: z.number().int().min(-MONEY_CEILING_MINOR).max(MONEY_CEILING_MINOR), at, reason: z.string().min(1) }).strict(),
]);
export type CreditEvent = z.infer<typeof CreditEventSchema>;

export const CreditLedgerConfigSchema = z
  .object({
    /** Low-credit warnings at these percentages of the last top-up, e.g. [30, 10, 0]. */
    warnAtPercentOfLastTopUp: z
      .array(z.number().min(0).max(100))
      .max(10)
      .refine((a) => new Set(a).size === a.length, 'a threshold is listed twice'),
    emergencyCredit: z
      .object({
        /** Minor units offered as emergency credit; 0 = none. */
        amount: minorUnits(0),
        /** Offer it once the balance is below this many minor units (and always once it is spent). */
        offerWhenBelow: minorUnits(0),
      })
      .strict(),
  })
  .strict();
export type CreditLedgerConfig = z.infer<typeof CreditLedgerConfigSchema>;

export type CreditStatus = 'in_credit' | 'low' | 'emergency_available' | 'on_emergency_credit' | 'exhausted';

export interface CreditState {
  /** The customer's own credit, whole minor units, ≥ 0. */
  balance: number;
  emergencyCreditInUse: boolean;
  /** Emergency credit granted and not used yet, whole minor units. */
  emergencyCreditRemaining: number;
  /** Used beyond the customer's own credit and owed back, whole minor units. */
  emergencyDebt: number;
  /** Whole minor units. */
  lastTopUp: { amount: number; at: number; ref: string; /** Of it, repaid debt. */ repaid: number } | null;
  /** Percentages of the last top-up crossed since it, highest first. */
  thresholdsCrossed: number[];
  status: CreditStatus;
  /** Highest register value charged (idempotence mark), Wh; null before the first consumption. */
  chargedToWh: number | null;
  /** Consumption cost not charged yet because it does not make a whole minor unit: millionths of a minor unit, 0 to 999,999. */
  unchargedMicro: number;
  /** Events the fold did not apply: replayed consumption, a second emergency grant, an invalid or out-of-bounds amount. */
  ignored: number;
}

interface Book {
  balance: number;
  debt: number;
  ecInUse: boolean;
  ecRemaining: number;
  carryMicro: number;
  lastTopUp: { amount: number; at: number; ref: string; repaid: number } | null;
  crossed: Set<number>;
  chargedToWh: number | null;
  ignored: number;
}

const EMPTY: Book = { balance: 0, debt: 0, ecInUse: false, ecRemaining: 0, carryMicro: 0, lastTopUp: null, crossed: new Set(), chargedToWh: null, ignored: 0 };

const wholeAmount = (n: unknown, min: number): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= min && n <= MONEY_CEILING_MINOR;

/** Money in (top-up, positive adjustment): debt first. Returns the part that repaid debt, or null if the balance would pass the ceiling. */
function credit(b: Book, minor: number): number | null {
  const repaid = Math.min(minor, b.debt);
  if (b.balance + minor - repaid > MONEY_CEILING_MINOR) return null;
  b.debt -= repaid;
  b.balance += minor - repaid;
  if (b.debt === 0) endEmergency(b);
  return repaid;
}

/** Whether `debit(b, minor)` keeps the debt within the ceiling. */
const debitFits = (b: Book, minor: number): boolean => b.debt + (minor - Math.min(minor, b.balance)) <= MONEY_CEILING_MINOR;

/** Money out (consumption, negative adjustment): balance first, then emergency credit, the rest is debt all the same. */
function debit(b: Book, minor: number): void {
  const fromBalance = Math.min(minor, b.balance);
  b.balance -= fromBalance;
  const rest = minor - fromBalance;
  b.debt += rest;
  b.ecRemaining -= Math.min(rest, b.ecRemaining);
}

/** Charge a consumption cost: into the carry, and the whole minor units it makes out of it. False if it does not fit. */
function charge(b: Book, costMicro: number): boolean {
  const carry = b.carryMicro + costMicro;
  const whole = Math.floor(carry / MICRO_PER_MINOR);
  if (!debitFits(b, whole)) return false;
  b.carryMicro = carry - whole * MICRO_PER_MINOR;
  debit(b, whole);
  return true;
}

function endEmergency(b: Book): void {
  b.ecInUse = false;
  b.ecRemaining = 0;
}

/** Apply one event; false when it was not applied (it is counted in `ignored`). */
function apply(b: Book, e: CreditEvent): boolean {
  switch (e.type) {
    case 'top_up': {
      if (!wholeAmount(e.amount, 1)) return false;
      const repaid = credit(b, e.amount);
      if (repaid === null) return false;
      b.lastTopUp = { amount: e.amount, at: e.at, ref: e.ref, repaid };
      b.crossed = new Set();
      return true;
    }
    case 'consumption': {
      const cost = e.costMicro;
      if (typeof cost !== 'number' || !Number.isSafeInteger(cost) || cost < 0 || cost > MAX_COST_MICRO) return false; // a legacy `cost` row too
      if (!Number.isFinite(e.fromWh) || !Number.isFinite(e.toWh)) return false;
      if (e.toWh < e.fromWh) {
        // The register went down: nothing to charge, start the idempotence mark again from the new value.
        if (cost > 0 && !charge(b, cost)) return false;
        b.chargedToWh = e.toWh;
        return true;
      }
      if (b.chargedToWh !== null && e.toWh <= b.chargedToWh) return false; // a replay
      if (!charge(b, cost)) return false;
      b.chargedToWh = e.toWh;
      return true;
    }
    case 'emergency_credit_granted': {
      if (b.ecInUse || !wholeAmount(e.amount, 1)) return false;
      b.ecInUse = true;
      b.ecRemaining = e.amount;
      return true;
    }
    case 'emergency_credit_repaid': {
      if (!wholeAmount(e.amount, 1)) return false;
      b.debt -= Math.min(e.amount, b.debt);
      if (b.debt === 0) endEmergency(b);
      return true;
    }
    case 'adjustment': {
      const a = e.amount;
      if (typeof a !== 'number' || !Number.isSafeInteger(a) || Math.abs(a) > MONEY_CEILING_MINOR) return false;
      if (a >= 0) return credit(b, a) !== null;
      if (!debitFits(b, -a)) return false;
      debit(b, -a);
      return true;
    }
    default:
      return false;
  }
}

/** Threshold `percent` of the last top-up is crossed when the balance is at or below it. */
const crossed = (balance: number, percent: number, topUpAmount: number): boolean => balance * 100 <= topUpAmount * percent;

export function creditState(events: readonly CreditEvent[], config: CreditLedgerConfig): CreditState {
  const b: Book = { ...EMPTY, crossed: new Set() };
  for (const e of events) {
    if (!apply(b, e)) b.ignored += 1;
    if (b.lastTopUp) {
      for (const p of config.warnAtPercentOfLastTopUp) if (crossed(b.balance, p, b.lastTopUp.amount)) b.crossed.add(p);
    }
  }
  return {
    balance: b.balance,
    emergencyCreditInUse: b.ecInUse,
    emergencyCreditRemaining: b.ecRemaining,
    emergencyDebt: b.debt,
    lastTopUp: b.lastTopUp,
    thresholdsCrossed: [...b.crossed].sort((x, y) => y - x),
    status: statusOf(b, config),
    chargedToWh: b.chargedToWh,
    unchargedMicro: b.carryMicro,
    ignored: b.ignored,
  };
}

function statusOf(b: Book, config: CreditLedgerConfig): CreditStatus {
  if (b.balance <= 0) return b.ecInUse && b.ecRemaining > 0 ? 'on_emergency_credit' : 'exhausted';
  if (emergencyCreditAvailable(b.ecInUse, b.balance, config)) return 'emergency_available';
  const highest = Math.max(-1, ...config.warnAtPercentOfLastTopUp);
  if (b.lastTopUp && highest >= 0 && crossed(b.balance, highest, b.lastTopUp.amount)) return 'low';
  return 'in_credit';
}

/**
 * The balance a top-up of `amount` would leave (debt repaid first), from the state before it: what the API
 * compares with `payments.maxCreditBalanceMinor`.
 */
export const balanceAfterTopUp = (state: Pick<CreditState, 'balance' | 'emergencyDebt'>, amount: number): number => state.balance + amount - Math.min(amount, state.emergencyDebt);

const GRADING_FREE: CreditLedgerConfig = { warnAtPercentOfLastTopUp: [], emergencyCredit: { amount: 0, offerWhenBelow: 0 } };

/**
 * DOMAIN.md rule 8: whether the ledger shows no credit at all, emergency credit included: the only state in
 * which a credit cut-off may run. It needs no configuration: warning thresholds and the offer level only grade
 * credit that exists.
 */
export function ledgerShowsNoCredit(events: readonly CreditEvent[]): { noCredit: boolean; balance: number; emergencyCreditRemaining: number } {
  const s = creditState(events, GRADING_FREE);
  return { noCredit: s.status === 'exhausted', balance: s.balance, emergencyCreditRemaining: s.emergencyCreditRemaining };
}

/** The two pots a top-up meets (its debt repaid first, then the balance), without grading. */
export function ledgerBalances(events: readonly CreditEvent[]): Pick<CreditState, 'balance' | 'emergencyDebt'> {
  const s = creditState(events, GRADING_FREE);
  return { balance: s.balance, emergencyDebt: s.emergencyDebt };
}

/**
 * Whether emergency credit can be offered now: configured, not in use (nor owed from an earlier grant), and the
 * balance below the offer level or spent.
 */
export function emergencyCreditAvailable(inUse: boolean, balance: number, config: CreditLedgerConfig): boolean {
  return !inUse && config.emergencyCredit.amount > 0 && (balance < config.emergencyCredit.offerWhenBelow || balance <= 0);
}
