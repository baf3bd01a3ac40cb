import { HOUR_MS } from './deadlines.js';

/**
 * DOMAIN.md rule 20, abnormal consumption: readings that show excessive use (more than a household can draw, a
 * fault) or continuous use (it never stops: a leak, a heater stuck on) raise an alert for the customer. Pure:
 * works on the energy register readings of one meter, in time order.
 *
 * - **excessive**: the average rate between two consecutive readings is above `maxWhPerHour`. Even over a gap
 *   this is sound: an average above the limit means the rate was above it at some moment. Consecutive
 *   excessive intervals form one finding.
 * - **continuous**: over at least `continuousHours`, every interval shows at least `continuousMinWhPerHour`.
 *   Only intervals of at most `maxIntervalHours` count: an average over a long gap cannot prove that use never
 *   stopped, so a gap ends the run.
 * - A recorded meter swap splits the readings: the old register's final reading ends one run of readings, the new
 *   register's first reading starts the next, and no reading before the swap is compared with one after it (a
 *   new register that starts higher is not consumption).
 * - A register going down without a recorded swap (a reset, a rollover, a swap nobody recorded) says nothing
 *   about use in that interval: it is skipped, it ends a continuous run, and it is a finding of its own, a
 *   register discontinuity (`registerDiscontinuities`), never a consumption alert. A reading not later than the
 *   one before it is ignored.
 */

export interface EnergyReading {
  at: number;
  energyWh: number;
}

export interface ConsumptionLimits {
  maxWhPerHour: number;
  continuousHours: number;
  continuousMinWhPerHour: number;
  /** Longest interval between readings that can show continuous use (default 2 h). */
  maxIntervalHours?: number;
}

export interface AbnormalConsumption {
  kind: 'excessive' | 'continuous';
  from: number;
  to: number;
  /** excessive: the highest rate in the episode; continuous: the lowest (use never fell below it). */
  whPerHour: number;
  message: string;
}

/** A recorded meter swap: the old register's final reading and the new register's first, at one moment. */
export interface RegisterSwap {
  at: number;
  oldFinalWh: number;
  newFirstWh: number;
}

/** A register that went down between two readings with no swap recorded between them. */
export interface RegisterDiscontinuity {
  from: number;
  to: number;
  beforeWh: number;
  afterWh: number;
  message: string;
}

interface Interval {
  from: number;
  to: number;
  whPerHour: number;
  /** Usable as evidence of continuous use. */
  continuable: boolean;
}

/**
 * The readings as runs of one register each, in time order: a swap closes the run before it with the old
 * register's final reading and opens the next with the new register's first.
 */
export function registerRuns(readings: readonly EnergyReading[], swaps: readonly RegisterSwap[] = []): EnergyReading[][] {
  const cuts = [...swaps].filter((s) => Number.isFinite(s.at)).sort((a, b) => a.at - b.at);
  const runs: EnergyReading[][] = [[]];
  let next = 0;
  for (const r of readings) {
    while (next < cuts.length && r.at >= cuts[next]!.at) {
      const swap = cuts[next++]!;
      runs[runs.length - 1]!.push({ at: swap.at, energyWh: swap.oldFinalWh });
      runs.push([{ at: swap.at, energyWh: swap.newFirstWh }]);
    }
    runs[runs.length - 1]!.push(r);
  }
  return runs;
}

/** Consecutive readings of each run as intervals; a register going down or a new run is a break. */
function intervalsOf(runs: readonly EnergyReading[][], maxIntervalMs: number, onDrop: (from: EnergyReading, to: EnergyReading) => void = () => undefined): (Interval | 'break')[] {
  const intervals: (Interval | 'break')[] = [];
  for (const run of runs) {
    if (intervals.length > 0) intervals.push('break');
    let prev: EnergyReading | undefined;
    for (const r of run) {
      if (!Number.isFinite(r.at) || !Number.isFinite(r.energyWh)) continue;
      if (prev === undefined) {
        prev = r;
        continue;
      }
      const dt = r.at - prev.at;
      if (dt <= 0) continue;
      const dE = r.energyWh - prev.energyWh;
      if (dE < 0) {
        intervals.push('break');
        onDrop(prev, r);
      } else intervals.push({ from: prev.at, to: r.at, whPerHour: dE / (dt / HOUR_MS), continuable: dt <= maxIntervalMs });
      prev = r;
    }
  }
  return intervals;
}

/** Every place the register went down with no swap recorded in between: a reset, a rollover or an unrecorded swap. */
export function registerDiscontinuities(readings: readonly EnergyReading[], swaps: readonly RegisterSwap[] = []): RegisterDiscontinuity[] {
  const found: RegisterDiscontinuity[] = [];
  intervalsOf(registerRuns(readings, swaps), Infinity, (a, b) =>
    found.push({
      from: a.at,
      to: b.at,
      beforeWh: a.energyWh,
      afterWh: b.energyWh,
      message: `The energy register went down from ${fmt(a.energyWh)} Wh (${iso(a.at)}) to ${fmt(b.energyWh)} Wh (${iso(b.at)}) with no meter swap recorded: a register reset, a rollover or a swap nobody recorded. Record the swap (POST /v1/meters/{id}/swaps) if the meter was replaced.`,
    }),
  );
  return found;
}

export function abnormalConsumption(readings: readonly EnergyReading[], config: ConsumptionLimits, swaps: readonly RegisterSwap[] = []): AbnormalConsumption[] {
  const maxIntervalMs = (config.maxIntervalHours ?? 2) * HOUR_MS;
  const intervals = intervalsOf(registerRuns(readings, swaps), maxIntervalMs);

  const findings: AbnormalConsumption[] = [];
  let excessive: { from: number; to: number; peak: number } | undefined;
  let run: { from: number; to: number; low: number } | undefined;
  const endExcessive = (): void => {
    if (!excessive) return;
    findings.push({
      kind: 'excessive',
      from: excessive.from,
      to: excessive.to,
      whPerHour: excessive.peak,
      message: `Consumption of ${fmt(excessive.peak)} Wh/h between ${iso(excessive.from)} and ${iso(excessive.to)} is above the limit of ${fmt(config.maxWhPerHour)} Wh/h: a fault or abnormal use.`,
    });
    excessive = undefined;
  };
  const endRun = (): void => {
    if (run && run.to - run.from >= config.continuousHours * HOUR_MS) {
      findings.push({
        kind: 'continuous',
        from: run.from,
        to: run.to,
        whPerHour: run.low,
        message: `Consumption never fell below ${fmt(run.low)} Wh/h for ${fmt((run.to - run.from) / HOUR_MS)} h (${iso(run.from)} to ${iso(run.to)}): use that never stops, a leak or a fault.`,
      });
    }
    run = undefined;
  };

  for (const iv of intervals) {
    if (iv === 'break') {
      endExcessive();
      endRun();
      continue;
    }
    if (iv.whPerHour > config.maxWhPerHour) {
      if (excessive) {
        excessive.to = iv.to;
        excessive.peak = Math.max(excessive.peak, iv.whPerHour);
      } else excessive = { from: iv.from, to: iv.to, peak: iv.whPerHour };
    } else endExcessive();

    if (iv.continuable && iv.whPerHour >= config.continuousMinWhPerHour) {
      if (run) {
        run.to = iv.to;
        run.low = Math.min(run.low, iv.whPerHour);
      } else run = { from: iv.from, to: iv.to, low: iv.whPerHour };
    } else endRun();
  }
  endExcessive();
  endRun();
  return findings.sort((a, b) => a.from - b.from || a.kind.localeCompare(b.kind));
}

const iso = (ms: number): string => new Date(ms).toISOString();
const fmt = (n: number): string => String(Math.round(n * 10) / 10);
