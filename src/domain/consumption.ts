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
 * - A register going down (meter replaced, register reset or rolled over) says nothing about that interval: it
 *   is skipped, and it ends a continuous run. A reading not later than the one before it is ignored.
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

interface Interval {
  from: number;
  to: number;
  whPerHour: number;
  /** Usable as evidence of continuous use. */
  continuable: boolean;
}

export function abnormalConsumption(readings: readonly EnergyReading[], config: ConsumptionLimits): AbnormalConsumption[] {
  const maxIntervalMs = (config.maxIntervalHours ?? 2) * HOUR_MS;
  const intervals: (Interval | 'break')[] = [];
  let prev: EnergyReading | undefined;
  for (const r of readings) {
    if (!Number.isFinite(r.at) || !Number.isFinite(r.energyWh)) continue;
    if (prev === undefined) {
      prev = r;
      continue;
    }
    const dt = r.at - prev.at;
    if (dt <= 0) continue;
    const dE = r.energyWh - prev.energyWh;
    if (dE < 0) intervals.push('break');
    else intervals.push({ from: prev.at, to: r.at, whPerHour: dE / (dt / HOUR_MS), continuable: dt <= maxIntervalMs });
    prev = r;
  }

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
