import { describe, expect, it } from 'vitest';
import { checkMinorAmount, formatMajor, majorDecimal, majorToMinor, MoneyLimitsSchema, minorToMajor } from '../../src/domain/money.js';

/** Amounts at the edge: exact whole minor units, or a decimal in major units that converts exactly; bounded. */

const MAX = 10_000_000;

describe('majorToMinor: a decimal in major units, accepted only if it converts exactly', () => {
  it.each([
    [12.5, 1250],
    ['12.50', 1250],
    ['12.5', 1250],
    [0.1, 10],
    [0.29, 29], // 0.29 × 100 is 28.999999999999996 in floating point
    ['1.00', 100],
    [20, 2000],
    ['0.01', 1],
    [100_000, MAX],
    ['100000.00', MAX],
    ['007.10', 710],
  ] as const)('%j → %d minor units', (value, minor) => {
    expect(majorToMinor(value, MAX)).toEqual({ minor });
  });

  it.each([
    [12.345, 'invalid', /at most 2 decimal places/],
    ['12.345', 'invalid', /at most 2 decimal places/],
    [0.001, 'invalid', /at most 2 decimal places/],
    [1e-7, 'invalid', /at most 2 decimal places/],
    [0, 'invalid', /positive/],
    ['0.00', 'invalid', /positive/],
    [-5, 'invalid', /positive/],
    ['-5', 'invalid', /positive/],
    ['12,50', 'invalid', /decimal/],
    ['1e3', 'invalid', /decimal/],
    ['', 'invalid', /decimal/],
    [Number.NaN, 'invalid', /not a number/],
    [Number.POSITIVE_INFINITY, 'invalid', /not a number/],
    [100_000.01, 'over_limit', /maximum of 10000000 minor units \(100,000\.00\)/],
    ['100000.01', 'over_limit', /maximum/],
    [1e300, 'over_limit', /maximum/],
    ['9'.repeat(40), 'over_limit', /maximum/],
  ] as const)('%j → refused (%s)', (value, kind, message) => {
    const r = majorToMinor(value, MAX);
    expect(r).toMatchObject({ kind });
    expect((r as { message: string }).message).toMatch(message);
  });
});

describe('checkMinorAmount: whole minor units', () => {
  it('1 to the maximum is accepted; one over, zero, negative and fractions are not', () => {
    expect(checkMinorAmount(1, MAX)).toEqual({ minor: 1 });
    expect(checkMinorAmount(MAX, MAX)).toEqual({ minor: MAX });
    expect(checkMinorAmount(MAX + 1, MAX)).toMatchObject({ kind: 'over_limit' });
    expect(checkMinorAmount(1e300, MAX)).toMatchObject({ kind: 'over_limit' });
    for (const bad of [0, -1, 12.5, Number.NaN, Number.POSITIVE_INFINITY]) expect(checkMinorAmount(bad, MAX)).toMatchObject({ kind: 'invalid' });
  });
});

describe('showing amounts', () => {
  it('major units from whole minor units, exactly', () => {
    expect(majorDecimal(100_000)).toBe('1000.00');
    expect(majorDecimal(5)).toBe('0.05');
    expect(majorDecimal(-1250)).toBe('-12.50');
    expect(formatMajor(123_456_789)).toBe('1,234,567.89');
    expect(minorToMajor(10)).toBe(0.1);
    expect(JSON.stringify(minorToMajor(123_456_789_012_345))).toBe('1234567890123.45');
  });
});

describe('MoneyLimitsSchema', () => {
  it('limits are whole minor units from 1 to the ceiling of 1,000,000,000', () => {
    expect(MoneyLimitsSchema.safeParse({ maxAmountMinor: 10_000_000, maxCreditBalanceMinor: 100_000_000 }).success).toBe(true);
    expect(MoneyLimitsSchema.safeParse({ maxAmountMinor: 1_000_000_001, maxCreditBalanceMinor: 1 }).success).toBe(false);
    expect(MoneyLimitsSchema.safeParse({ maxAmountMinor: 0, maxCreditBalanceMinor: 1 }).success).toBe(false);
    expect(MoneyLimitsSchema.safeParse({ maxAmountMinor: 10.5, maxCreditBalanceMinor: 1 }).success).toBe(false);
  });
});
