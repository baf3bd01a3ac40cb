import { z } from 'zod';
import { localParts, type Weekday } from '../policy/calendar.js';
import { MICRO_PER_MINOR } from '../money.js';
import { MAX_COST_MICRO } from './credit-ledger.js';
import { hhmmSchema, nextScheduleChange, timeZoneSchema, toMinutes, WEEKDAYS } from './local-schedule.js';

/**
 * Prepayment tariffs (issue 7): a flat price per kWh, or time-of-use bands in the utility's local time.
 *
 * Money: every price is in MINOR currency units (pence, cents) per kWh, with at most six decimals (24.57 p/kWh),
 * at most MAX_PRICE_PER_KWH. `costOfConsumption` returns the cost of a reading in whole millionths of a minor unit
 * (`costMicro`), rounded once, half up; the credit ledger (credit-ledger.ts) charges whole minor units out of
 * the sum of these costs and carries the rest, so rounding each half-hour to whole pence never loses or invents
 * a fraction of a penny. A reading whose cost would pass MAX_COST_MICRO (a register that jumped by a
 * nonsensical amount) is flagged `cost_out_of_bounds` and not charged.
 *
 * Bands: `from` < `to` on each listed day (a night band over midnight is two bands, "23:00"–"24:00" and
 * "00:00"–"07:00"); bands sharing a day may not overlap; outside every band `defaultPricePerKwh` applies.
 */

/** The highest price per kWh accepted, minor units (10,000.00 major units per kWh). */
export const MAX_PRICE_PER_KWH = 1_000_000;
const price = z
  .number()
  .min(0)
  .max(MAX_PRICE_PER_KWH)
  .refine((p) => /^\d+(\.\d{1,6})?$/.test(String(p)), 'at most six decimals (a millionth of a minor unit)');
const weekday = z.enum(WEEKDAYS as [Weekday, ...Weekday[]]);

export const TouBandSchema = z
  .object({
    days: z.array(weekday).min(1),
    from: hhmmSchema,
    to: hhmmSchema,
    /** Minor units per kWh. */
    pricePerKwh: price,
  })
  .strict()
  .refine((b) => toMinutes(b.from) < toMinutes(b.to), 'from must be before to; split a band over midnight in two')
  .refine((b) => new Set(b.days).size === b.days.length, 'a day is listed twice');

export const TariffSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('flat'),
      /** Minor units per kWh. */
      pricePerKwh: price,
    })
    .strict(),
  z
    .object({
      kind: z.literal('time_of_use'),
      timezone: timeZoneSchema,
      bands: z.array(TouBandSchema),
      /** Minor units per kWh outside every band. */
      defaultPricePerKwh: price,
    })
    .strict()
    .superRefine((t, ctx) => {
      t.bands.forEach((a, i) =>
        t.bands.slice(i + 1).forEach((b, k) => {
          const sharedDay = a.days.find((d) => b.days.includes(d));
          if (sharedDay && toMinutes(a.from) < toMinutes(b.to) && toMinutes(b.from) < toMinutes(a.to)) {
            ctx.addIssue({ code: 'custom', path: ['bands', i + 1 + k], message: `overlaps band ${i} on ${sharedDay}: the price would be ambiguous` });
          }
        }),
      );
    }),
]);

export type Tariff = z.infer<typeof TariffSchema>;
export type TouBand = z.infer<typeof TouBandSchema>;

export interface RegisterReading {
  at: number;
  /** Cumulative active energy import register, Wh. */
  energyWh: number;
}

export interface CostSegment {
  from: number;
  to: number;
  energyWh: number;
  pricePerKwh: number;
  /** Minor units, unrounded: for showing how the cost was made up, never summed into money. */
  cost: number;
}

export type CostFlag = 'counter_went_down' | 'time_not_forward' | 'invalid_reading' | 'cost_out_of_bounds';

export interface ConsumptionCost {
  /** Millionths of a minor unit, a safe integer (the sum of the segments' costs rounded once, half up); 0 when `flag` is set. */
  costMicro: number;
  energyWh: number;
  /** Why nothing was charged: the register went down (meter replaced, reset, rolled over), the readings are
   * not in time order, a value is not a finite number, or the cost is beyond any real reading's (MAX_COST_MICRO).
   * The caller keeps the newer reading as its baseline. */
  flag: CostFlag | null;
  /** The interval split where the price changes, in time order. */
  segments: CostSegment[];
}

function bandAt(ms: number, tariff: Extract<Tariff, { kind: 'time_of_use' }>): { pricePerKwh: number } {
  const local = localParts(ms, tariff.timezone);
  const band = tariff.bands.find((b) => b.days.includes(local.weekday) && toMinutes(b.from) <= local.minutes && local.minutes < toMinutes(b.to));
  return { pricePerKwh: band?.pricePerKwh ?? tariff.defaultPricePerKwh };
}

/** The price in force at an instant, minor units per kWh. */
export function priceAt(ms: number, tariff: Tariff): number {
  return tariff.kind === 'flat' ? tariff.pricePerKwh : bandAt(ms, tariff).pricePerKwh;
}

/**
 * The cost of the energy between two register readings. The energy is assumed uniform over the interval, so
 * the part of the interval in each band gets its share of the energy in proportion to its duration.
 */
export function costOfConsumption(fromReading: RegisterReading, toReading: RegisterReading, tariff: Tariff): ConsumptionCost {
  const none = (flag: CostFlag | null, energyWh = 0): ConsumptionCost => ({ costMicro: 0, energyWh, flag, segments: [] });
  if (![fromReading.at, fromReading.energyWh, toReading.at, toReading.energyWh].every(Number.isFinite)) return none('invalid_reading');
  const energyWh = toReading.energyWh - fromReading.energyWh;
  if (energyWh < 0) return none('counter_went_down');
  const duration = toReading.at - fromReading.at;
  if (duration < 0 || (duration === 0 && energyWh > 0)) return none('time_not_forward');
  if (energyWh === 0) return none(null);

  const pieces: { from: number; to: number; pricePerKwh: number }[] = [];
  if (tariff.kind === 'flat') pieces.push({ from: fromReading.at, to: toReading.at, pricePerKwh: tariff.pricePerKwh });
  else {
    const edges = (day: Weekday): number[] => tariff.bands.filter((b) => b.days.includes(day)).flatMap((b) => [toMinutes(b.from), toMinutes(b.to)]);
    for (let t = fromReading.at; t < toReading.at; ) {
      const end = Math.min(toReading.at, nextScheduleChange(t, tariff.timezone, (l) => edges(l.weekday)));
      const p = bandAt(t, tariff).pricePerKwh;
      const last = pieces[pieces.length - 1];
      if (last && last.pricePerKwh === p) last.to = end; // midnight inside one band, or a DST change
      else pieces.push({ from: t, to: end, pricePerKwh: p });
      t = end;
    }
  }

  let allotted = 0;
  const segments = pieces.map((p, i): CostSegment => {
    // The last piece takes what is left so the parts add up to the whole exactly.
    const e = i === pieces.length - 1 ? energyWh - allotted : (energyWh * (p.to - p.from)) / duration;
    allotted += e;
    return { ...p, energyWh: e, cost: (e / 1000) * p.pricePerKwh };
  });
  // Prices in whole millionths per kWh (exact: at most six decimals), so a flat price over whole Wh is exact below 2^53.
  const costMicro = Math.round(segments.reduce((s, x) => s + (x.energyWh * Math.round(x.pricePerKwh * MICRO_PER_MINOR)) / 1000, 0));
  if (!Number.isSafeInteger(costMicro) || costMicro > MAX_COST_MICRO) return none('cost_out_of_bounds', energyWh);
  return { costMicro, energyWh, flag: null, segments };
}
