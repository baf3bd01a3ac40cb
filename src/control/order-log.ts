import type { Logger } from 'pino';
import type { LineLog } from './lazy-log.js';
import { isTerminal, type SwitchOrder } from '../domain/switch-order.js';

/**
 * The log of an attempt's end (issue 17: one line per order at `info`): every attempt at `debug` (outcome, latency,
 * state, reason); one line when the order finishes (id, meter, action, final state, attempts, ms since it was
 * created), `warn` when it failed, `info` otherwise; and a `warn` when it goes to the field (once: its slow remote
 * retries afterwards are debug detail).
 */
export function logAttemptEnd(log: LineLog, order: Pick<SwitchOrder, 'action' | 'escalatedAt'>, updated: SwitchOrder, outcome: string, latencyMs: number | null, now: number): void {
  // The lines' fields are only gathered for a line that is written (at level warn, a verified order writes none: issue 19).
  if (log.isLevelEnabled('debug')) log.debug({ outcome, latencyMs, state: updated.state, reason: updated.stateReason }, 'attempt finished');
  const failed = updated.state === 'failed';
  const escalated = !failed && updated.state === 'escalated' && order.escalatedAt === null;
  const finished = !failed && !escalated && isTerminal(updated.state);
  if (!(failed || escalated ? log.isLevelEnabled('warn') : finished && log.isLevelEnabled('info'))) return;
  const line = { action: order.action, state: updated.state, attempts: updated.attempts, ms: now - updated.createdAt, reason: updated.stateReason };
  if (failed) log.warn(line, 'order failed: remote attempts exhausted');
  else if (escalated) log.warn(line, 'order escalated: attempt failed; the order is with the field');
  else log.info(line, `order ${updated.state}`);
}
