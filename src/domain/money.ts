import { z } from 'zod';
import { MeterlineError } from '../errors.js';

/**
 * Money (issue 14): exact whole MINOR units (cents, pence) as safe integers, end to end; never a float sum.
 *
 * - The currency's minor unit is one hundredth of the major unit (two decimals: GBP, EUR, USD, …). A currency with
 *   another minor unit (JPY: none, KWD: three) is not supported.
 * - Every amount is bounded. A payment by `payments.maxAmountMinor` (default 10,000,000 = 100,000.00), a prepayment
 *   balance by `payments.maxCreditBalanceMinor` (default 100,000,000 = 1,000,000.00); neither may be configured
 *   above MONEY_CEILING_MINOR (1,000,000,000 = 10,000,000.00). That ceiling keeps every figure the gateway keeps
 *   (a ledger pot, a consumption cost in millionths of a minor unit, a day of payments in a reconciliation) far
 *   below 2^53, so no sum can round, overflow to Infinity or become NaN.
 * - A decimal in major units ("12.50", 12.5) is accepted only when it converts exactly: at most two decimal places,
 *   positive, within the maximum. A JSON number is judged by its shortest decimal form (what `String(n)` prints):
 *   12.5 is 12.50, 0.1 is 0.10, 1e300 is over any maximum, 1e-7 has too many decimals.
 */

export const MINOR_UNIT_DIGITS = 2;
export const MINOR_PER_MAJOR = 100;
/** The hard bound on any configured limit and on every pot of a prepayment ledger, in minor units. */
export const MONEY_CEILING_MINOR = 1_000_000_000;
/** Consumption costs are kept in millionths of a minor unit (micro-minor units). */
export const MICRO_PER_MINOR = 1_000_000;

export const DEFAULT_MAX_PAYMENT_MINOR = 10_000_000;
export const DEFAULT_MAX_CREDIT_BALANCE_MINOR = 100_000_000;

/** Whole minor units, at least `min`, at most the ceiling. */
export const minorUnits = (min: number) => z.number().int().min(min).max(MONEY_CEILING_MINOR);

export const MoneyLimitsSchema = z
  .object({
    /** The largest single payment or top-up accepted, minor units. */
    maxAmountMinor: minorUnits(1),
    /** The largest credit balance a prepayment meter may hold after a top-up, minor units. */
    maxCreditBalanceMinor: minorUnits(1),
  })
  .strict();
export type MoneyLimits = z.infer<typeof MoneyLimitsSchema>;

export const DEFAULT_MONEY_LIMITS: MoneyLimits = { maxAmountMinor: DEFAULT_MAX_PAYMENT_MINOR, maxCreditBalanceMinor: DEFAULT_MAX_CREDIT_BALANCE_MINOR };

/** Why an amount was refused: its form (`invalid`) or its size (`over_limit`). */
export type AmountProblem = { kind: 'invalid' | 'over_limit'; message: string };

/** "1,234.50" for 123450: for messages and people, never parsed back. */
export function formatMajor(minor: number): string {
  const sign = minor < 0 ? '-' : '';
  const abs = Math.abs(minor);
  const whole = Math.floor(abs / MINOR_PER_MAJOR).toLocaleString('en-US');
  return `${sign}${whole}.${String(abs % MINOR_PER_MAJOR).padStart(MINOR_UNIT_DIGITS, '0')}`;
}

/** "1234.50" for 123450: the exact decimal in major units, made from the integer (no float), for CSV and text. */
export function majorDecimal(minor: number): string {
  const sign = minor < 0 ? '-' : '';
  const abs = Math.abs(minor);
  return `${sign}${Math.floor(abs / MINOR_PER_MAJOR)}.${String(abs % MINOR_PER_MAJOR).padStart(MINOR_UNIT_DIGITS, '0')}`;
}

/** The exact major-unit value of whole minor units as a JSON number (1250 → 12.5; its JSON text is exact below 10^15). */
export const minorToMajor = (minor: number): number => minor / MINOR_PER_MAJOR;

const overLimit = (shown: string, max: number): AmountProblem => ({
  kind: 'over_limit',
  message: `${shown} is over the maximum of ${max} minor units (${formatMajor(max)}) per payment (payments.maxAmountMinor); split it or have the operator raise the limit`,
});

/** Whole minor units as given in `amountMinor`. */
export function checkMinorAmount(value: number, max: number): { minor: number } | AmountProblem {
  if (!Number.isFinite(value) || !Number.isInteger(value)) {
    return { kind: 'invalid', message: `amountMinor ${String(value)} is not a whole number of minor units; send an integer (1250 for 12.50)` };
  }
  if (value <= 0) return { kind: 'invalid', message: `amountMinor ${value} must be positive` };
  if (value > max) return overLimit(`amountMinor ${value}`, max);
  return { minor: value };
}

const PLAIN_DECIMAL = /^(\d+)(?:\.(\d+))?$/;

/** A decimal in major units, given as a JSON number or a string. */
export function majorToMinor(value: number | string, max: number): { minor: number } | AmountProblem {
  const shown = `amount ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`;
  if (typeof value === 'number' && !Number.isFinite(value)) return { kind: 'invalid', message: `${shown} is not a number` };
  const text = typeof value === 'number' ? String(value) : value.trim();
  const m = PLAIN_DECIMAL.exec(text);
  if (!m) {
    if (typeof value === 'number' && value >= 1e21) return overLimit(shown, max);
    if (typeof value === 'number' && value > 0) return { kind: 'invalid', message: `${shown} has more decimals than the currency's minor unit allows: send at most ${MINOR_UNIT_DIGITS} decimal places, or amountMinor in whole minor units` };
    return { kind: 'invalid', message: `${shown} must be a positive decimal in major units with at most ${MINOR_UNIT_DIGITS} decimal places ("12.50"), or send amountMinor in whole minor units (1250)` };
  }
  const [, whole, fraction = ''] = m;
  if (fraction.length > MINOR_UNIT_DIGITS) {
    return { kind: 'invalid', message: `${shown} has more decimals than the currency's minor unit allows: send at most ${MINOR_UNIT_DIGITS} decimal places, or amountMinor in whole minor units` };
  }
  // Digits only, so the conversion is exact: "12.5" → "1250". More than 15 digits is over any maximum.
  const digits = (whole! + fraction.padEnd(MINOR_UNIT_DIGITS, '0')).replace(/^0+(?=\d)/, '');
  if (digits.length > 15) return overLimit(shown, max);
  const minor = Number(digits);
  if (minor <= 0) return { kind: 'invalid', message: `${shown} must be positive` };
  if (minor > max) return overLimit(shown, max);
  return { minor };
}

/** 400 E_CREDIT_BALANCE_LIMIT for top-ups that would take a prepayment balance over `maxMinor` (by row index in a file). */
export function creditBalanceLimitError(over: readonly { index: number; meterId: string; balanceAfterMinor: number }[], maxMinor: number): MeterlineError {
  const first = over[0]!;
  const which =
    over.length === 1
      ? `the top-up would take meter ${first.meterId}'s credit balance to ${first.balanceAfterMinor} minor units (${formatMajor(first.balanceAfterMinor)})`
      : `${over.length} top-ups would take a prepayment balance too high, the first at index ${first.index} (meter ${first.meterId}, to ${first.balanceAfterMinor} minor units)`;
  return new MeterlineError(
    'E_CREDIT_BALANCE_LIMIT',
    `${which}, over the maximum of ${maxMinor} minor units (${formatMajor(maxMinor)}) a prepayment meter may hold (payments.maxCreditBalanceMinor); nothing was recorded`,
    { maxCreditBalanceMinor: maxMinor, overLimit: over.slice(0, 100) },
  );
}
