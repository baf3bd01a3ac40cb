/**
 * Time for bus scheduling, injectable so tests drive it by hand. The real clock sleeps precisely: the
 * Modbus silence t3.5 is 1.75–4 ms at common baud rates, below what `setTimeout` (1 ms granularity plus
 * event-loop jitter) can hit, and every millisecond lost per transaction is ~5% of a 9,600 baud bus. So it
 * sleeps with a timer until ~1.5 ms before the target and then yields with `setImmediate` until it is reached.
 */
export interface BusClock {
  /** Milliseconds, monotonic, fractional. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

const TIMER_MARGIN_MS = 1.5;

export function preciseSleep(ms: number): Promise<void> {
  if (!(ms > 0)) return Promise.resolve();
  const target = performance.now() + ms;
  return new Promise((resolve) => {
    const spin = (): void => {
      if (performance.now() >= target) resolve();
      else setImmediate(spin);
    };
    if (ms > TIMER_MARGIN_MS + 1) setTimeout(spin, ms - TIMER_MARGIN_MS);
    else spin();
  });
}

export const realBusClock: BusClock = { now: () => performance.now(), sleep: preciseSleep };
