import { z } from 'zod';

/**
 * The credit of one prepayment meter (issue 7) as a pure fold over its events, in the order they were recorded.
 *
 * Money is in MINOR currency units (pence, cents). Top-ups and emergency credit are whole minor units;
 * consumption costs may have decimals (tariff.ts). The fold books every amount in integer millionths of a minor
 * unit, so a year of half-hourly costs adds up exactly, and reports minor units (up to six decimals).
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

const minor = z.number().finite();
const wholeMinor = z.number().int();
const at = z.number().int();

export const CreditEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('top_up'), amount: wholeMinor.positive(), at, ref: z.string().min(1) }).strict(),
  z.object({ type: z.literal('consumption'), cost: minor.min(0), at, fromWh: z.number().finite(), toWh: z.number().finite() }).strict(),
  z.object({ type: z.literal('emergency_credit_granted'), amount: wholeMinor.positive(), at }).strict(),
  z.object({ type: z.literal('emergency_credit_repaid'), amount: minor.positive(), at, ref: z.string().nullable().optional() }).strict(),
  z.object({ type: z.literal('adjustment'), amount: minor, at, reason: z.string().min(1) }).strict(),
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
        amount: wholeMinor.min(0),
        /** Offer it once the balance is below this many minor units (and always once it is spent). */
        offerWhenBelow: wholeMinor.min(0),
      })
      .strict(),
  })
  .strict();
export type CreditLedgerConfig = z.infer<typeof CreditLedgerConfigSchema>;

export type CreditStatus = 'in_credit' | 'low' | 'emergency_available' | 'on_emergency_credit' | 'exhausted';

export interface CreditState {
  /** The customer's own credit, minor units, ≥ 0. */
  balance: number;
  emergencyCreditInUse: boolean;
  /** Emergency credit granted and not used yet, minor units. */
  emergencyCreditRemaining: number;
  /** Used beyond the customer's own credit and owed back, minor units. */
  emergencyDebt: number;
  lastTopUp: { amount: number; at: number; ref: string; /** Of it, repaid debt. */ repaid: number } | null;
  /** Percentages of the last top-up crossed since it, highest first. */
  thresholdsCrossed: number[];
  status: CreditStatus;
  /** Highest register value charged (idempotence mark), Wh; null before the first consumption. */
  chargedToWh: number | null;
  /** Events the fold ignored: replayed consumption, a second emergency grant, non-finite amounts. */
  ignored: number;
}

const MICRO = 1_000_000;
const toMicro = (minorUnits: number): number => Math.round(minorUnits * MICRO);
const fromMicro = (micro: number): number => micro / MICRO;

interface Book {
  balance: number;
  debt: number;
  ecInUse: boolean;
  ecRemaining: number;
  lastTopUp: { amount: number; at: number; ref: string; repaid: number } | null;
  crossed: Set<number>;
  chargedToWh: number | null;
  ignored: number;
}

const EMPTY: Book = { balance: 0, debt: 0, ecInUse: false, ecRemaining: 0, lastTopUp: null, crossed: new Set(), chargedToWh: null, ignored: 0 };

/** Money in (top-up, positive adjustment): debt first. Returns the part that repaid debt. */
function credit(b: Book, micro: number): number {
  const repaid = Math.min(micro, b.debt);
  b.debt -= repaid;
  b.balance += micro - repaid;
  if (b.debt === 0) endEmergency(b);
  return repaid;
}

/** Money out (consumption, negative adjustment): balance first, then emergency credit, the rest is debt all the same. */
function debit(b: Book, micro: number): void {
  const fromBalance = Math.min(micro, b.balance);
  b.balance -= fromBalance;
  const rest = micro - fromBalance;
  b.debt += rest;
  b.ecRemaining -= Math.min(rest, b.ecRemaining);
}

function endEmergency(b: Book): void {
  b.ecInUse = false;
  b.ecRemaining = 0;
}

function apply(b: Book, e: CreditEvent): void {
  switch (e.type) {
    case 'top_up': {
      if (!Number.isFinite(e.amount) || e.amount <= 0) break;
      const repaid = credit(b, toMicro(e.amount));
      b.lastTopUp = { amount: e.amount, at: e.at, ref: e.ref, repaid: fromMicro(repaid) };
      b.crossed = new Set();
      return;
    }
    case 'consumption': {
      if (!Number.isFinite(e.cost) || e.cost < 0) break;
      if (e.toWh < e.fromWh) {
        // The register went down: nothing to charge, start the idempotence mark again from the new value.
        b.chargedToWh = e.toWh;
        if (e.cost > 0) debit(b, toMicro(e.cost));
        return;
      }
      if (b.chargedToWh !== null && e.toWh <= b.chargedToWh) break; // a replay
      b.chargedToWh = e.toWh;
      debit(b, toMicro(e.cost));
      return;
    }
    case 'emergency_credit_granted': {
      if (b.ecInUse || !Number.isFinite(e.amount) || e.amount <= 0) break;
      b.ecInUse = true;
      b.ecRemaining = toMicro(e.amount);
      return;
    }
    case 'emergency_credit_repaid': {
      if (!Number.isFinite(e.amount) || e.amount <= 0) break;
      b.debt -= Math.min(toMicro(e.amount), b.debt);
      if (b.debt === 0) endEmergency(b);
      return;
    }
    case 'adjustment': {
      if (!Number.isFinite(e.amount)) break;
      const micro = toMicro(e.amount);
      if (micro >= 0) credit(b, micro);
      else debit(b, -micro);
      return;
    }
  }
  b.ignored += 1;
}

/** The amount (micro-units) at or below which threshold `percent` is crossed. */
const thresholdMicro = (percent: number, topUpAmount: number): number => Math.round((toMicro(topUpAmount) * percent) / 100);

export function creditState(events: readonly CreditEvent[], config: CreditLedgerConfig): CreditState {
  const b: Book = { ...EMPTY, crossed: new Set() };
  for (const e of events) {
    apply(b, e);
    if (b.lastTopUp) {
      for (const p of config.warnAtPercentOfLastTopUp) if (b.balance <= thresholdMicro(p, b.lastTopUp.amount)) b.crossed.add(p);
    }
  }
  return {
    balance: fromMicro(b.balance),
    emergencyCreditInUse: b.ecInUse,
    emergencyCreditRemaining: fromMicro(b.ecRemaining),
    emergencyDebt: fromMicro(b.debt),
    lastTopUp: b.lastTopUp,
    thresholdsCrossed: [...b.crossed].sort((x, y) => y - x),
    status: statusOf(b, config),
    chargedToWh: b.chargedToWh,
    ignored: b.ignored,
  };
}

function statusOf(b: Book, config: CreditLedgerConfig): CreditStatus {
  if (b.balance <= 0) return b.ecInUse && b.ecRemaining > 0 ? 'on_emergency_credit' : 'exhausted';
  if (emergencyCreditAvailable(b.ecInUse, fromMicro(b.balance), config)) return 'emergency_available';
  const highest = Math.max(-1, ...config.warnAtPercentOfLastTopUp);
  if (b.lastTopUp && highest >= 0 && b.balance <= thresholdMicro(highest, b.lastTopUp.amount)) return 'low';
  return 'in_credit';
}

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

/**
 * Whether emergency credit can be offered now: configured, not in use (nor owed from an earlier grant), and the
 * balance below the offer level or spent.
 */
export function emergencyCreditAvailable(inUse: boolean, balance: number, config: CreditLedgerConfig): boolean {
  return !inUse && config.emergencyCredit.amount > 0 && (balance < config.emergencyCredit.offerWhenBelow || balance <= 0);
}
