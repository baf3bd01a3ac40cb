/**
 * Pure pieces of the 100k bench (issue 19), kept apart so they can be unit-tested: the open-loop run's submit
 * schedule, latency percentiles with unfinished orders, the CPU lists the pinning switch takes, and the acceptance
 * verdicts.
 */

/**
 * Orders due by `elapsedMs` into an open-loop run at `ratePerS` (a steady rate, not a backlog): floor(rate × t), so a
 * tick that fires late sends what the schedule owed (the submit rate holds over the run even if single ticks slip).
 */
export function dueBy(ratePerS: number, elapsedMs: number): number {
  if (!(ratePerS > 0) || !(elapsedMs > 0)) return 0;
  return Math.floor((ratePerS * elapsedMs) / 1000 + 1e-9);
}

/**
 * How many orders each tick of `tickMs` submits at `ratePerS` over `seconds`, with the fraction carried to the next
 * tick (e.g. 3,333/s at 10 ms: 33, 33, 34, …): what the run sends if every tick fires on time.
 */
export function tickPlan(ratePerS: number, tickMs: number, seconds: number): number[] {
  const ticks = Math.round((seconds * 1000) / tickMs);
  const out: number[] = [];
  for (let k = 1; k <= ticks; k++) out.push(dueBy(ratePerS, k * tickMs) - dueBy(ratePerS, (k - 1) * tickMs));
  return out;
}

export interface LatencySummary {
  /** Orders measured (finished and unfinished). */
  count: number;
  /** Orders with no latency (not terminal when the run gave up on them): they count as slower than any finished one. */
  unfinished: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * p50, p99 and max of `latencies` (ms), where `undefined` is an order that never finished: it sorts above every
 * finished one (Infinity), so a percentile that reaches the unfinished is Infinity rather than flattering.
 * Percentile p of n sorted values: the value at index min(n−1, floor(p/100 × n)) (as `pct` in bench-common).
 */
export function latencySummary(latencies: (number | undefined)[]): LatencySummary {
  const s = latencies.map((l) => l ?? Infinity).sort((a, b) => a - b);
  const at = (p: number): number => (s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!);
  return { count: s.length, unfinished: latencies.filter((l) => l === undefined).length, p50: at(50), p99: at(99), max: s.length === 0 ? NaN : s[s.length - 1]! };
}

/** A CPU list as taskset takes it ("0", "0,1", "2-3", "0,2-3"): the CPUs in it, ascending; throws on anything else. */
export function parseCpuList(list: string): number[] {
  const text = list.trim();
  if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(text)) throw new Error(`not a CPU list: "${list}" (e.g. 0,1 or 2-3)`);
  const cpus = new Set<number>();
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map(Number) as [number, number | undefined];
    const hi = b ?? a;
    if (hi < a) throw new Error(`not a CPU list: "${list}" (range ${part} runs backwards)`);
    for (let c = a; c <= hi; c++) cpus.add(c);
  }
  return [...cpus].sort((x, y) => x - y);
}

export interface Verdict {
  name: string;
  /** The measured figure, or undefined when this run did not measure it. */
  value: number | undefined;
  /** The bar, as the acceptance states it. */
  bar: string;
  pass: boolean | undefined;
}

/** The three bars measured by this bench: ratio ≥ 0.5, main thread ≤ 120 µs per verified order, open-loop p99 < 100 ms. */
export function acceptance(m: { ratio?: number; mainUsPerOrder?: number; openLoopP99Ms?: number }): Verdict[] {
  const v = (name: string, value: number | undefined, bar: string, ok: (x: number) => boolean): Verdict => ({
    name,
    value,
    bar,
    pass: value === undefined || Number.isNaN(value) ? undefined : ok(value),
  });
  return [
    v('ratio gateway ÷ raw, same message count', m.ratio, '≥ 0.5', (x) => x >= 0.5),
    v('main-thread CPU per verified order, µs', m.mainUsPerOrder, '≤ 120', (x) => x <= 120),
    v('open-loop p99 request→verified at half the raw rate, ms', m.openLoopP99Ms, '< 100', (x) => x < 100),
  ];
}
