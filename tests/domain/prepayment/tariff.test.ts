import { describe, expect, it } from 'vitest';
import { costOfConsumption, priceAt, TariffSchema, type Tariff } from '../../../src/domain/prepayment/tariff.js';

/** Tariffs from config and the cost of the energy between two register readings, on fixed instants. */

const at = (iso: string): number => Date.parse(iso);

// London. Night every day 00:00–07:00 at 10 p/kWh; weekday peak 16:00–19:00 at 40; otherwise 25.
const tou: Tariff = TariffSchema.parse({
  kind: 'time_of_use',
  timezone: 'Europe/London',
  bands: [
    { days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], from: '00:00', to: '07:00', pricePerKwh: 10 },
    { days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '16:00', to: '19:00', pricePerKwh: 40 },
  ],
  defaultPricePerKwh: 25,
});
const flat: Tariff = TariffSchema.parse({ kind: 'flat', pricePerKwh: 24.5 });

describe('costOfConsumption', () => {
  // Tuesday 24 November 2026 is winter time (London = UTC); Tuesday 14 July 2026 is BST (UTC+1).
  const cases: { name: string; tariff: Tariff; from: [string, number]; to: [string, number]; cost: number; prices?: number[]; energies?: number[] }[] = [
    { name: 'flat price: 1 kWh at 24.5 p', tariff: flat, from: ['2026-11-24T10:00Z', 5000], to: ['2026-11-24T11:00Z', 6000], cost: 24.5, prices: [24.5] },
    { name: 'flat price keeps decimals (0.1 kWh → 2.45 p, not rounded)', tariff: flat, from: ['2026-11-24T10:00Z', 0], to: ['2026-11-24T10:30Z', 100], cost: 2.45 },
    { name: 'inside one band', tariff: tou, from: ['2026-11-24T01:00Z', 0], to: ['2026-11-24T02:00Z', 500], cost: 5, prices: [10] },
    {
      name: 'across the night→day boundary at 07:00, split by time',
      tariff: tou,
      from: ['2026-11-24T06:00Z', 0],
      to: ['2026-11-24T08:00Z', 2000],
      cost: 10 + 25,
      prices: [10, 25],
      energies: [1000, 1000],
    },
    {
      name: 'uneven split: 30 min of night, 90 min of day',
      tariff: tou,
      from: ['2026-11-24T06:30Z', 0],
      to: ['2026-11-24T08:30Z', 2000],
      cost: 0.5 * 10 + 1.5 * 25,
      prices: [10, 25],
      energies: [500, 1500],
    },
    {
      name: 'across three bands: default, peak, default',
      tariff: tou,
      from: ['2026-11-24T15:00Z', 0],
      to: ['2026-11-24T20:00Z', 5000],
      cost: 25 + 3 * 40 + 25,
      prices: [25, 40, 25],
      energies: [1000, 3000, 1000],
    },
    {
      name: 'starting exactly on a boundary prices from that boundary',
      tariff: tou,
      from: ['2026-11-24T16:00Z', 0],
      to: ['2026-11-24T17:00Z', 1000],
      cost: 40,
      prices: [40],
    },
    {
      name: 'ending exactly on a boundary does not touch the next band',
      tariff: tou,
      from: ['2026-11-24T15:00Z', 0],
      to: ['2026-11-24T16:00Z', 1000],
      cost: 25,
      prices: [25],
    },
    {
      name: 'across midnight into the night band',
      tariff: tou,
      from: ['2026-11-24T23:00Z', 0],
      to: ['2026-11-25T01:00Z', 2000],
      cost: 25 + 10,
      prices: [25, 10],
    },
    { name: 'weekday peak does not apply on Saturday', tariff: tou, from: ['2026-11-28T16:00Z', 0], to: ['2026-11-28T19:00Z', 3000], cost: 75, prices: [25] },
    {
      name: 'summer time: the night band ends at 07:00 BST = 06:00 UTC',
      tariff: tou,
      from: ['2026-07-14T05:00Z', 0],
      to: ['2026-07-14T07:00Z', 2000],
      cost: 10 + 25,
      prices: [10, 25],
      energies: [1000, 1000],
    },
    {
      name: 'clocks go forward (29 March 2026): 00:00 GMT to 07:00 BST is only 6 h of night',
      tariff: tou,
      from: ['2026-03-29T00:00Z', 0],
      to: ['2026-03-29T07:00Z', 7000],
      cost: 6 * 10 + 25,
      prices: [10, 25],
      energies: [6000, 1000],
    },
    {
      name: 'clocks go back (25 October 2026): 00:00 BST to 07:00 GMT is 8 h of night',
      tariff: tou,
      from: ['2026-10-24T23:00Z', 0],
      to: ['2026-10-25T08:00Z', 9000],
      cost: 8 * 10 + 25,
      prices: [10, 25],
      energies: [8000, 1000],
    },
    {
      name: 'a week-long gap is split at every band change and still adds up',
      tariff: tou,
      from: ['2026-11-23T00:00Z', 0],
      to: ['2026-11-30T00:00Z', 168_000],
      // 7 × 7 h night, 5 × 3 h peak, the rest (168 − 49 − 15 = 104 h) default, 1 kWh per hour.
      cost: 49 * 10 + 15 * 40 + 104 * 25,
    },
  ];

  it.each(cases)('$name', ({ tariff, from, to, cost, prices, energies }) => {
    const r = costOfConsumption({ at: at(from[0]), energyWh: from[1] }, { at: at(to[0]), energyWh: to[1] }, tariff);
    expect(r.flag).toBeNull();
    // Whole millionths of a minor unit, rounded once: exact for these prices.
    expect(r.costMicro).toBe(Math.round(cost * 1_000_000));
    expect(r.energyWh).toBe(to[1] - from[1]);
    expect(r.segments.reduce((s, x) => s + x.energyWh, 0)).toBeCloseTo(to[1] - from[1], 9);
    expect(r.segments[0]!.from).toBe(at(from[0]));
    expect(r.segments[r.segments.length - 1]!.to).toBe(at(to[0]));
    if (prices) expect(r.segments.map((s) => s.pricePerKwh)).toEqual(prices);
    if (energies) r.segments.forEach((s, i) => expect(s.energyWh).toBeCloseTo(energies[i]!, 9));
  });

  const unchargeable: { name: string; from: [number, number]; to: [number, number]; flag: string | null }[] = [
    { name: 'counter going down (meter replaced or reset) → 0 and a flag', from: [at('2026-11-24T10:00Z'), 99_000], to: [at('2026-11-24T11:00Z'), 120], flag: 'counter_went_down' },
    { name: 'no energy used → 0, no flag', from: [at('2026-11-24T10:00Z'), 500], to: [at('2026-11-24T11:00Z'), 500], flag: null },
    { name: 'readings out of time order → 0 and a flag', from: [at('2026-11-24T11:00Z'), 500], to: [at('2026-11-24T10:00Z'), 600], flag: 'time_not_forward' },
    { name: 'energy at the same instant cannot be placed in time → 0 and a flag', from: [at('2026-11-24T11:00Z'), 500], to: [at('2026-11-24T11:00Z'), 600], flag: 'time_not_forward' },
    { name: 'a non-number reading → 0 and a flag', from: [at('2026-11-24T10:00Z'), Number.NaN], to: [at('2026-11-24T11:00Z'), 600], flag: 'invalid_reading' },
  ];
  it.each(unchargeable)('$name', ({ from, to, flag }) => {
    for (const tariff of [flat, tou]) {
      const r = costOfConsumption({ at: from[0], energyWh: from[1] }, { at: to[0], energyWh: to[1] }, tariff);
      expect(r.costMicro).toBe(0);
      expect(r.flag).toBe(flag);
      expect(r.segments).toEqual([]);
    }
  });

  it('a register jump no real reading could make (a garbled or hostile value) is flagged and not charged, never Infinity', () => {
    for (const tariff of [flat, tou]) {
      for (const toWh of [1e300, Number.MAX_VALUE, 5e16]) {
        const r = costOfConsumption({ at: at('2026-11-24T10:00Z'), energyWh: 0 }, { at: at('2026-11-24T11:00Z'), energyWh: toWh }, tariff);
        expect(r).toMatchObject({ costMicro: 0, flag: 'cost_out_of_bounds' });
      }
    }
  });

  it('a fractional cost is whole millionths of a minor unit, rounded once per reading (7 Wh at 24.57 p/kWh = 0.17199 p)', () => {
    const r = costOfConsumption({ at: at('2026-11-24T10:00Z'), energyWh: 1000 }, { at: at('2026-11-24T10:30Z'), energyWh: 1007 }, TariffSchema.parse({ kind: 'flat', pricePerKwh: 24.57 }));
    expect(r.costMicro).toBe(171_990);
    expect(Number.isSafeInteger(r.costMicro)).toBe(true);
  });
});

describe('priceAt', () => {
  it.each([
    ['2026-11-24T06:59:59Z', 10],
    ['2026-11-24T07:00:00Z', 25],
    ['2026-11-24T18:59:00Z', 40],
    ['2026-11-24T19:00:00Z', 25],
    ['2026-07-14T06:30:00Z', 25], // 07:30 BST
  ] as const)('at %s the price is %d', (iso, p) => {
    expect(priceAt(at(iso), tou)).toBe(p);
  });
  it('a flat tariff has one price', () => expect(priceAt(0, flat)).toBe(24.5));
});

describe('TariffSchema', () => {
  const base = { kind: 'time_of_use', timezone: 'Europe/London', defaultPricePerKwh: 25 };
  const band = (o: object) => ({ days: ['mon'], from: '00:00', to: '07:00', pricePerKwh: 10, ...o });
  it.each([
    { name: 'a flat tariff', value: { kind: 'flat', pricePerKwh: 30 }, ok: true },
    { name: 'a band ending at 24:00', value: { ...base, bands: [band({ from: '23:00', to: '24:00' })] }, ok: true },
    { name: 'bands touching at a boundary', value: { ...base, bands: [band({}), band({ from: '07:00', to: '09:00' })] }, ok: true },
    { name: 'overlapping bands on a shared day', value: { ...base, bands: [band({ days: ['mon', 'tue'] }), band({ days: ['tue'], from: '06:00', to: '08:00' })] }, ok: false },
    { name: 'a band over midnight (must be split)', value: { ...base, bands: [band({ from: '23:00', to: '07:00' })] }, ok: false },
    { name: 'an empty band', value: { ...base, bands: [band({ from: '07:00', to: '07:00' })] }, ok: false },
    { name: 'an unknown time zone', value: { ...base, timezone: 'Mars/Olympus', bands: [] }, ok: false },
    { name: 'a negative price', value: { kind: 'flat', pricePerKwh: -1 }, ok: false },
    { name: 'a band with no days', value: { ...base, bands: [band({ days: [] })] }, ok: false },
    { name: 'a day listed twice', value: { ...base, bands: [band({ days: ['mon', 'mon'] })] }, ok: false },
    { name: 'an unknown field', value: { kind: 'flat', pricePerKwh: 30, currency: 'GBP' }, ok: false },
    { name: 'a price with six decimals (a millionth of a minor unit)', value: { kind: 'flat', pricePerKwh: 24.123456 }, ok: true },
    { name: 'a price with seven decimals (not a whole millionth)', value: { kind: 'flat', pricePerKwh: 24.1234567 }, ok: false },
    { name: 'a price beyond any real one', value: { kind: 'flat', pricePerKwh: 1e300 }, ok: false },
    { name: 'an infinite price', value: { kind: 'flat', pricePerKwh: Number.POSITIVE_INFINITY }, ok: false },
  ])('$name → valid: $ok', ({ value, ok }) => {
    expect(TariffSchema.safeParse(value).success).toBe(ok);
  });
});
