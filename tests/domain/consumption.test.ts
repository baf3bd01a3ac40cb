import { describe, expect, it } from 'vitest';
import { abnormalConsumption, registerDiscontinuities, type EnergyReading } from '../../src/domain/consumption.js';

const H = 3_600_000;
const T0 = Date.UTC(2026, 10, 20, 0, 0, 0);
const limits = { maxWhPerHour: 5000, continuousHours: 3, continuousMinWhPerHour: 100 };

/** Hourly readings from T0 whose consecutive differences are `perHour` (Wh in each hour). */
function hourly(perHour: number[], start = 10_000): EnergyReading[] {
  const out: EnergyReading[] = [{ at: T0, energyWh: start }];
  let e = start;
  perHour.forEach((wh, i) => {
    e += wh;
    out.push({ at: T0 + (i + 1) * H, energyWh: e });
  });
  return out;
}

type Expected = { kind: 'excessive' | 'continuous'; from: number; to: number; whPerHour: number };

const cases: { name: string; readings: EnergyReading[]; expected: Expected[] }[] = [
  { name: 'no readings', readings: [], expected: [] },
  { name: 'one reading', readings: [{ at: T0, energyWh: 5 }], expected: [] },
  { name: 'ordinary day: use that stops at night', readings: hourly([300, 0, 0, 800, 1200, 50, 900]), expected: [] },
  { name: 'exactly at the limit is not above it', readings: hourly([5000, 0]), expected: [] },
  { name: 'one Wh/h above the limit is excessive', readings: hourly([5001, 0]), expected: [{ kind: 'excessive', from: T0, to: T0 + H, whPerHour: 5001 }] },
  {
    name: 'consecutive excessive hours are one episode, reported with its peak (three of them are also use that never stopped)',
    readings: hourly([0, 6000, 9000, 7000, 0]),
    expected: [
      { kind: 'continuous', from: T0 + H, to: T0 + 4 * H, whPerHour: 6000 },
      { kind: 'excessive', from: T0 + H, to: T0 + 4 * H, whPerHour: 9000 },
    ],
  },
  {
    name: 'excessive hours separated by ordinary use are two episodes',
    readings: hourly([6000, 0, 0, 5500, 0]),
    expected: [
      { kind: 'excessive', from: T0, to: T0 + H, whPerHour: 6000 },
      { kind: 'excessive', from: T0 + 3 * H, to: T0 + 4 * H, whPerHour: 5500 },
    ],
  },
  {
    name: 'a register reset (energy going down) is skipped, not read as a huge or negative use',
    readings: [
      { at: T0, energyWh: 999_000 },
      { at: T0 + H, energyWh: 999_200 },
      { at: T0 + 2 * H, energyWh: 100 },
      { at: T0 + 3 * H, energyWh: 150 },
    ],
    expected: [],
  },
  {
    name: 'use that never falls below the minimum for exactly continuousHours, at exactly the minimum, is continuous',
    readings: hourly([0, 100, 100, 100, 0]),
    expected: [{ kind: 'continuous', from: T0 + H, to: T0 + 4 * H, whPerHour: 100 }],
  },
  { name: 'the same for one hour less is not', readings: hourly([0, 100, 100, 0]), expected: [] },
  { name: 'one hour just below the minimum breaks the run', readings: hourly([150, 150, 99, 150, 150]), expected: [] },
  {
    name: 'a long continuous run is one finding with the lowest rate seen',
    readings: hourly([400, 250, 300, 180, 600, 220]),
    expected: [{ kind: 'continuous', from: T0, to: T0 + 6 * H, whPerHour: 180 }],
  },
  {
    name: 'a reset inside a run ends it: two short runs are not one long one',
    readings: [...hourly([200, 200]), { at: T0 + 3 * H, energyWh: 0 }, { at: T0 + 4 * H, energyWh: 200 }, { at: T0 + 5 * H, energyWh: 400 }],
    expected: [],
  },
  {
    name: 'a gap longer than maxIntervalHours cannot prove use never stopped, but its average can still be excessive',
    readings: [
      { at: T0, energyWh: 0 },
      { at: T0 + H, energyWh: 200 },
      { at: T0 + 2 * H, energyWh: 400 },
      { at: T0 + 5 * H, energyWh: 18_400 }, // 3 h gap at 6000 Wh/h on average
      { at: T0 + 6 * H, energyWh: 18_600 },
      { at: T0 + 7 * H, energyWh: 18_800 },
    ],
    expected: [{ kind: 'excessive', from: T0 + 2 * H, to: T0 + 5 * H, whPerHour: 6000 }],
  },
  {
    name: 'quarter-hourly readings are rated per hour',
    readings: [0, 1, 2, 3, 4].map((i) => ({ at: T0 + i * 15 * 60_000, energyWh: i * 1500 })), // 1500 Wh per 15 min
    expected: [{ kind: 'excessive', from: T0, to: T0 + H, whPerHour: 6000 }],
  },
  {
    name: 'a reading not later than the one before it is ignored',
    readings: [
      { at: T0, energyWh: 0 },
      { at: T0, energyWh: 50_000 },
      { at: T0 - H, energyWh: 1 },
      { at: T0 + H, energyWh: 300 },
    ],
    expected: [],
  },
];

describe('abnormal consumption (DOMAIN.md rule 20)', () => {
  it.each(cases)('$name', ({ readings, expected }) => {
    const found = abnormalConsumption(readings, limits);
    expect(found.map(({ kind, from, to, whPerHour }) => ({ kind, from, to, whPerHour }))).toEqual(expected);
  });

  it('both kinds can be found in one series, ordered by start (same start: continuous first)', () => {
    const found = abnormalConsumption(hourly([300, 300, 0, 7000, 300, 300, 300]), limits);
    expect(found.map((f) => f.kind)).toEqual(['continuous', 'excessive']);
    expect(found[0]).toMatchObject({ from: T0 + 3 * H, to: T0 + 7 * H, whPerHour: 300 });
    expect(found[1]).toMatchObject({ from: T0 + 3 * H, to: T0 + 4 * H, whPerHour: 7000 });
  });

  it('the message says what was seen, for the customer alert', () => {
    const [excessive] = abnormalConsumption(hourly([6000]), limits);
    expect(excessive?.message).toBe('Consumption of 6000 Wh/h between 2026-11-20T00:00:00.000Z and 2026-11-20T01:00:00.000Z is above the limit of 5000 Wh/h: a fault or abnormal use.');
    const [continuous] = abnormalConsumption(hourly([120, 120, 120, 120]), limits);
    expect(continuous?.message).toContain('never fell below 120 Wh/h for 4 h');
    expect(continuous?.message).toContain('a leak or a fault');
  });

  it('maxIntervalHours decides which intervals count towards continuous use', () => {
    const sixHourly = [0, 1, 2].map((i) => ({ at: T0 + i * 6 * H, energyWh: i * 1200 })); // 200 Wh/h on average
    expect(abnormalConsumption(sixHourly, limits)).toEqual([]);
    expect(abnormalConsumption(sixHourly, { ...limits, maxIntervalHours: 6 }).map((f) => f.kind)).toEqual(['continuous']);
  });
});

describe('meter swaps and register discontinuities (DOMAIN.md rule 20)', () => {
  const swap = { at: T0 + 90 * 60_000, oldFinalWh: 10_600, newFirstWh: 900_000 };
  const acrossSwap: EnergyReading[] = [
    { at: T0, energyWh: 10_000 },
    { at: T0 + H, energyWh: 10_500 },
    { at: T0 + 2 * H, energyWh: 900_300 },
    { at: T0 + 3 * H, energyWh: 900_700 },
  ];

  it('without a recorded swap, a new register that starts higher reads as excessive use (what a swap record prevents)', () => {
    expect(abnormalConsumption(acrossSwap, limits).map((x) => x.kind)).toContain('excessive');
  });

  it('a recorded swap: readings before it are never compared with readings after it; each register is judged on its own', () => {
    expect(abnormalConsumption(acrossSwap, limits, [swap])).toEqual([]);
    expect(registerDiscontinuities(acrossSwap, [swap])).toEqual([]);
    const excessAfter = [...acrossSwap, { at: T0 + 4 * H, energyWh: 906_700 }];
    expect(abnormalConsumption(excessAfter, limits, [swap]).map(({ kind, from, to, whPerHour }) => ({ kind, from, to, whPerHour }))).toEqual([{ kind: 'excessive', from: T0 + 3 * H, to: T0 + 4 * H, whPerHour: 6000 }]);
  });

  it('the old register up to its final reading and the new one from its first are still consumption', () => {
    // 5,100 Wh in the half hour before the swap (10,200 Wh/h), and 5,300 Wh in the half hour after it.
    const readings = [
      { at: T0, energyWh: 10_000 },
      { at: T0 + H, energyWh: 10_500 },
      { at: T0 + 2 * H, energyWh: 905_300 },
    ];
    const found = abnormalConsumption(readings, limits, [{ at: T0 + 90 * 60_000, oldFinalWh: 15_600, newFirstWh: 900_000 }]);
    expect(found.map(({ kind, from, to, whPerHour }) => ({ kind, from, to, whPerHour }))).toEqual([
      { kind: 'excessive', from: T0 + H, to: T0 + 90 * 60_000, whPerHour: 10_200 },
      { kind: 'excessive', from: T0 + 90 * 60_000, to: T0 + 2 * H, whPerHour: 10_600 },
    ]);
  });

  it('a register going down with no swap recorded is a register discontinuity, with the values on both sides', () => {
    const readings = [
      { at: T0, energyWh: 999_000 },
      { at: T0 + H, energyWh: 999_200 },
      { at: T0 + 2 * H, energyWh: 100 },
      { at: T0 + 3 * H, energyWh: 150 },
    ];
    const [d, ...rest] = registerDiscontinuities(readings);
    expect(rest).toEqual([]);
    expect(d).toMatchObject({ from: T0 + H, to: T0 + 2 * H, beforeWh: 999_200, afterWh: 100 });
    expect(d!.message).toContain('no meter swap recorded');
    expect(abnormalConsumption(readings, limits)).toEqual([]);
    // The same drop at a recorded swap is no discontinuity.
    expect(registerDiscontinuities(readings, [{ at: T0 + 90 * 60_000, oldFinalWh: 999_300, newFirstWh: 50 }])).toEqual([]);
  });
});
