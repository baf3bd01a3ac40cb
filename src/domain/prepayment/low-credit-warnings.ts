import type { CreditState } from './credit-ledger.js';

/**
 * Low-credit warnings (DOMAIN.md, prepayment): each threshold (e.g. 30%, 10%, 0% of the last top-up) is sent
 * exactly once per top-up cycle, to the customer channel and, where the meter has one, its display.
 *
 * Level-triggered: what is due is every threshold the ledger says was crossed in this cycle and that was not
 * sent yet, so a warning lost in a crash goes out on the next event instead of never. One big consumption step
 * that crosses several thresholds sends all of them, highest first. A top-up starts a new cycle: when the state
 * before and after belong to different top-ups, `alreadySent` (which can only be the old cycle's) is ignored.
 */
export function dueWarnings(previousState: CreditState | null, newState: CreditState, alreadySent: readonly number[]): number[] {
  const sent = sameCycle(previousState, newState) ? new Set(alreadySent) : new Set<number>();
  return newState.thresholdsCrossed.filter((p) => !sent.has(p)).sort((a, b) => b - a);
}

/** Two states belong to the same top-up cycle when their last top-up is the same one. */
export function sameCycle(a: CreditState | null, b: CreditState): boolean {
  if (a === null) return true;
  const x = a.lastTopUp;
  const y = b.lastTopUp;
  if (x === null || y === null) return x === y;
  return x.ref === y.ref && x.at === y.at;
}
