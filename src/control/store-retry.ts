import type { LineLog } from './lazy-log.js';
import { isStoreUnavailable } from '../store/store-availability.js';
import { sleep } from './clock.js';

export interface StoreRetryOptions {
  logger: LineLog;
  /** What is being written, for the log ("the attempt's result"). */
  what: string;
  /** First wait after a failure; doubled up to `maxDelayMs`. */
  firstDelayMs?: number;
  maxDelayMs?: number;
}

/**
 * Write something the loop cannot drop, such as an attempt's result (the meter has already acted), and retry while the
 * store says it cannot take writes (E_STORE_UNAVAILABLE: a full disk, a database that is down). The order keeps its
 * lease meanwhile, so it completes as soon as the store takes writes again, not a whole lease later through a
 * takeover. Any other error (the lease was taken over, the store was closed) ends the retries at once.
 */
export async function writeWhenStoreTakesIt<T>(write: () => Promise<T>, o: StoreRetryOptions): Promise<T> {
  const first = o.firstDelayMs ?? 200;
  const max = o.maxDelayMs ?? 2000;
  let failures = 0;
  let loggedAt = 0;
  for (let delay = first; ; delay = Math.min(max, delay * 2)) {
    try {
      const value = await write();
      if (failures > 0) o.logger.info({ retries: failures }, `${o.what} written once the store took writes again`);
      return value;
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
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
