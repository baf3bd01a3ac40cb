import type { LineLog } from './lazy-log.js';
import type { MeterlineError } from '../errors.js';
import { isStoreUnavailable } from '../store/store-availability.js';
import { sleep } from './clock.js';

export interface StoreRetryOptions<T = unknown> {
  logger: LineLog;
  /** What is being written, for the log ("the attempt's result"). */
  what: string;
  /** First wait after a failure; doubled up to `maxDelayMs`. */
  firstDelayMs?: number;
  maxDelayMs?: number;
  /**
   * Whether an earlier try landed after all, asked when a retry is refused after a try whose outcome was unknown
   * (E_STORE_UNAVAILABLE with details.committed 'unknown': the store's thread died before answering, perhaps after its
   * commit, and the retry finds the order already moved). Its value then, or undefined (the refusal stands).
   */
  landed?: () => Promise<T | undefined>;
}

/** E_STORE_UNAVAILABLE for a write that may or may not have committed (sqlite-worker-store.ts). */
export function outcomeUnknown(err: unknown): boolean {
  return isStoreUnavailable(err) && ((err as MeterlineError).details as { committed?: unknown } | undefined)?.committed === 'unknown';
}

/**
 * Write something the loop cannot drop, such as an attempt's result (the meter has already acted), and retry while the
 * store says it cannot take writes (E_STORE_UNAVAILABLE: a full disk, a database that is down). The order keeps its
 * lease meanwhile, so it completes as soon as the store takes writes again, not a whole lease later through a
 * takeover. Any other error (the lease was taken over, the store was closed) ends the retries at once, unless `landed`
 * finds that a try whose outcome was unknown did land.
 */
export async function writeWhenStoreTakesIt<T>(write: () => Promise<T>, o: StoreRetryOptions<T>): Promise<T> {
  const first = o.firstDelayMs ?? 200;
  const max = o.maxDelayMs ?? 2000;
  let failures = 0;
  let loggedAt = 0;
  let uncertain = false;
  for (let delay = first; ; delay = Math.min(max, delay * 2)) {
    try {
      const value = await write();
      if (failures > 0) o.logger.info({ retries: failures }, `${o.what} written once the store took writes again`);
      return value;
    } catch (err) {
      if (!isStoreUnavailable(err)) {
        const value = uncertain && o.landed ? await o.landed() : undefined;
        if (value === undefined) throw err;
        o.logger.info({ retries: failures }, `${o.what} was written by the try whose answer was lost`);
        return value;
      }
      if (outcomeUnknown(err)) uncertain = true;
      failures++;
      // Once when it starts, then every 30 s while it lasts.
      if (Date.now() - loggedAt >= 30_000) {
        loggedAt = Date.now();
        o.logger.warn({ err: (err as Error).message, retries: failures - 1 }, `the store cannot take ${o.what}; retrying (the order keeps its lease)`);
      }
      await sleep(delay);
    }
  }
}
