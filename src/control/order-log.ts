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
  log.debug({ outcome, latencyMs, state: updated.state, reason: updated.stateReason }, 'attempt finished');
  const line = { action: order.action, state: updated.state, attempts: updated.attempts, ms: now - updated.createdAt, reason: updated.stateReason };
  if (updated.state === 'failed') log.warn(line, 'order failed: remote attempts exhausted');
  else if (updated.state === 'escalated' && order.escalatedAt === null) log.warn(line, 'order escalated: attempt failed; the order is with the field');
  else if (isTerminal(updated.state)) log.info(line, `order ${updated.state}`);
}
