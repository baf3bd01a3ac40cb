/** Deadline arithmetic. Pure: the clock is always an argument. */

export const HOUR_MS = 3_600_000;

/**
 * DOMAIN.md rule 11: from the moment a payment (or top-up) is reported, the customer must be back on supply
 * within the limit (24 h by default). Without a payment time, the clock starts when the order is accepted.
 */
export function reconnectDeadline(paymentAt: number | null, acceptedAt: number, limitHours: number): number {
  return (paymentAt ?? acceptedAt) + limitHours * HOUR_MS;
}

/**
 * Delay before retry number `failedAttempts` + 1: exponential from `baseDelayMs`, capped at `maxDelayMs`, with
 * "equal jitter" (half fixed, half random) so that a fleet that failed together does not retry together.
 * `random` is a number in [0, 1).
 */
export function retryDelay(failedAttempts: number, baseDelayMs: number, maxDelayMs: number, random: number): number {
  const exp = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.max(0, failedAttempts - 1));
  return Math.round(exp / 2 + (exp / 2) * random);
}
