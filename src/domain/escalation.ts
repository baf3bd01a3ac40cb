import type { AttemptVerdict } from './attempt-verdict.js';
import { HOUR_MS } from './deadlines.js';
import type { MeterFlags } from './policy/meter-facts.js';
import { isRelayAction, type SwitchAction } from './relay.js';
import type { SwitchOrder } from './switch-order.js';

/**
 * Field escalation (DOMAIN.md rule 11, seed 004 §2.4): a reconnect whose remote attempts are exhausted, or that
 * cannot finish before `deadline − field lead time`, becomes a field work order due before the deadline; remote
 * retries go on, slower, and a later remote success cancels the work order. Pure: the clock is an argument.
 */

export interface EscalationPolicy {
  /** The crew needs this much of the 24 hours: escalate when less than this is left. */
  fieldLeadMs: number;
  /** The work order is due this long before the customer's deadline. */
  dueMarginMs: number;
  /** Remote retries after escalation, this far apart. */
  slowRetryMs: number;
  /** Disconnects that fail remotely become work orders only when set. */
  escalateDisconnects: boolean;
}

/**
 * `switch_order`: the crew does what the order asked; `credentials`: the meter refuses the gateway's keys, so the
 * key file or the meter's keys must be put right (and, for a reconnect, the customer restored on site meanwhile);
 * `load_side_voltage`: the close was refused for voltage on the load side (DOMAIN.md rule 14), so the crew finds
 * the bypass, backfeed or tampering and makes it safe before restoring the supply.
 */
export type SwitchWorkOrderKind = 'switch_order' | 'credentials' | 'load_side_voltage';

/** A live load side is a danger to people, not only a late reconnect: its work order comes first, whatever the deadline. */
export const LOAD_SIDE_PRIORITY = 1;

/** What escalation reads of an order; `urgent` (a medical emergency) raises its work order to priority 1. */
export type EscalatingOrder = Pick<SwitchOrder, 'action' | 'deadline' | 'escalatedAt'> & Partial<Pick<SwitchOrder, 'urgent'>>;

export interface WorkOrderPlan {
  reason: string;
  dueAt: number;
  priority: number;
  /** Default `switch_order`. */
  kind?: SwitchWorkOrderKind;
}

/**
 * `nextAttemptAt` of an order that waits for the field or an operator with no remote attempt at all (the meter
 * refuses the gateway's keys): the last instant a JavaScript Date can hold, so it never comes due.
 */
export const NO_REMOTE_ATTEMPT = 8_640_000_000_000_000;

export type EscalatedVerdict = Omit<AttemptVerdict, 'next'> & {
  next: AttemptVerdict['next'] | 'escalated';
  /** Set when this verdict raises the order's work order. */
  escalation?: WorkOrderPlan;
  /** Set when the order's open work order must be revised to this plan: a danger found after it was raised. */
  reviseWorkOrder?: WorkOrderPlan;
};

/**
 * 1 (most urgent) to 4: medical equipment first (the meter's flag, or an order the requester marked urgent: a
 * medical emergency, DOMAIN.md rule 15, which the meter's flags may not know of yet), then vulnerable or little time left.
 */
export function workOrderPriority(flags: Pick<MeterFlags, 'medicalEquipment' | 'vulnerable' | 'priorityRegister'>, msLeft: number, urgent = false): number {
  if (urgent || flags.medicalEquipment || msLeft < 2 * HOUR_MS) return 1;
  if (flags.vulnerable || flags.priorityRegister || msLeft < 6 * HOUR_MS) return 2;
  if (msLeft < 12 * HOUR_MS) return 3;
  return 4;
}

export function workOrderPlan(order: Pick<EscalatingOrder, 'deadline' | 'urgent'>, flags: Pick<MeterFlags, 'medicalEquipment' | 'vulnerable' | 'priorityRegister'>, now: number, policy: EscalationPolicy, reason: string): WorkOrderPlan {
  const deadline = order.deadline ?? now + policy.fieldLeadMs;
  return { reason, dueAt: Math.max(now, deadline - policy.dueMarginMs), priority: workOrderPriority(flags, deadline - now, order.urgent) };
}

/** Whether an open reconnect can no longer be trusted to the remote path alone. */
export function cannotFinishInTime(order: Pick<SwitchOrder, 'action' | 'deadline'>, now: number, policy: EscalationPolicy): boolean {
  return order.action === 'reconnect' && order.deadline !== null && now >= order.deadline - policy.fieldLeadMs;
}

/** Turn an attempt's verdict into what the order does, escalation included. */
export function escalateVerdict(
  order: EscalatingOrder,
  verdict: AttemptVerdict,
  flags: Pick<MeterFlags, 'medicalEquipment' | 'vulnerable' | 'priorityRegister'>,
  now: number,
  policy: EscalationPolicy,
): EscalatedVerdict {
  if (verdict.next === 'done' || verdict.next === 'armed' || verdict.next === 'superseded') return verdict;
  // A limit is no field work: a crew does not set a demand limit, and a customer under no limit is no worse off.
  if (order.action === 'limit') return verdict;
  if (verdict.outcome === 'auth_failed') return fieldOnlyVerdict(order, verdict, credentialsWork(order, verdict, flags, now, policy));
  if (verdict.outcome === 'load_side_voltage') {
    const plan = loadSideWork(order, verdict, flags, now, policy);
    const v = fieldOnlyVerdict(order, verdict, plan);
    // A work order already open (raised for the deadline, say) must tell the crew of the danger: its kind, reason and priority are revised.
    return order.escalatedAt !== null ? { ...v, reviseWorkOrder: plan } : v;
  }
  const slow = { ...verdict, next: 'escalated' as const, nextAttemptAt: now + policy.slowRetryMs };
  if (order.escalatedAt !== null) return { ...slow, reason: `${verdict.reason}; field work order open, next remote try in ${Math.round(policy.slowRetryMs / 1000)} s` };
  const escalates = order.action === 'reconnect' || policy.escalateDisconnects;
  if (verdict.next === 'failed' && escalates) {
    return { ...slow, escalation: workOrderPlan(order, flags, now, policy, `remote attempts exhausted: ${verdict.reason}`) };
  }
  if (verdict.next === 'queued' && cannotFinishInTime(order, now, policy)) {
    const left = Math.max(0, Math.round(((order.deadline ?? now) - now) / 60_000));
    return { ...slow, escalation: workOrderPlan(order, flags, now, policy, `cannot finish remotely in time: ${left} min left before the deadline, the crew needs ${Math.round(policy.fieldLeadMs / 60_000)} min`) };
  }
  return verdict;
}

/**
 * A field inspection with no switch order behind it (DOMAIN.md rule 17: a relay open with no order, or closed while
 * it should be open): someone must look at the customer. Due `dueMs` from now; priority from the customer's
 * protection flags as for every work order (medical equipment first).
 */
export function inspectionPlan(flags: Pick<MeterFlags, 'medicalEquipment' | 'vulnerable' | 'priorityRegister'>, now: number, dueMs: number, reason: string): WorkOrderPlan {
  return { reason, dueAt: now + dueMs, priority: workOrderPriority(flags, dueMs) };
}

/**
 * The meter refused the gateway's credentials: a field matter of its own kind, with no further remote attempt (the
 * same keys would be refused again, and each refusal may count towards the meter locking the client out).
 */
function credentialsWork(order: Pick<EscalatingOrder, 'action' | 'deadline' | 'urgent'>, verdict: AttemptVerdict, flags: Pick<MeterFlags, 'medicalEquipment' | 'vulnerable' | 'priorityRegister'>, now: number, policy: EscalationPolicy): WorkOrderPlan {
  const what =
    order.action === 'reconnect'
      ? 'restore the supply on site, then check the key file or renew the keys'
      : 'the disconnect was not done and this order has ended; check the key file or renew the keys, then request the disconnect again';
  return { ...workOrderPlan(order, flags, now, policy, `meter refuses the gateway's keys: ${what} (${verdict.reason})`), kind: 'credentials' };
}

/**
 * The close was refused for voltage on the load side (DOMAIN.md rule 14): closing again from afar is dangerous, so a
 * crew goes at once, first in the queue (LOAD_SIDE_PRIORITY), and no remote close follows.
 */
function loadSideWork(order: Pick<EscalatingOrder, 'action' | 'deadline' | 'urgent'>, verdict: AttemptVerdict, flags: Pick<MeterFlags, 'medicalEquipment' | 'vulnerable' | 'priorityRegister'>, now: number, policy: EscalationPolicy): WorkOrderPlan {
  const what =
    order.action === 'reconnect'
      ? 'do not close from afar; find the bypass, generator backfeed or tampering and make it safe, then restore the supply on site'
      : 'the disconnect was not done and this order has ended; find the bypass, generator backfeed or tampering and make it safe';
  return { ...workOrderPlan(order, flags, now, policy, `voltage on the load side: ${what} (${verdict.reason})`), priority: LOAD_SIDE_PRIORITY, kind: 'load_side_voltage' };
}

/**
 * A refusal that only a person can settle, with no further remote attempt. A reconnect goes to the field like any
 * failed reconnect, due before the customer's deadline, and waits there (the crew's outcome settles it; a new
 * reconnect supersedes it). A disconnect ends `failed` (a crew never disconnects on its own account) with its work order.
 */
function fieldOnlyVerdict(order: Pick<SwitchOrder, 'action' | 'escalatedAt'>, verdict: AttemptVerdict, plan: WorkOrderPlan): EscalatedVerdict {
  if (order.escalatedAt !== null) {
    // A work order is already open for this order: it stays, and no remote attempt follows.
    return { ...verdict, next: 'escalated', nextAttemptAt: NO_REMOTE_ATTEMPT, reason: `${verdict.reason}; field work order open, no further remote attempt` };
  }
  if (order.action === 'reconnect') return { ...verdict, next: 'escalated', nextAttemptAt: NO_REMOTE_ATTEMPT, escalation: plan };
  return { ...verdict, next: 'failed', escalation: plan };
}

/** The order a work order is raised for: always a relay order (escalateVerdict never sends a limit to the field). */
export function fieldOrder<T extends Pick<SwitchOrder, 'action'>>(order: T): T & { action: SwitchAction } {
  if (!isRelayAction(order.action)) throw new Error('a limit order never goes to the field');
  return order as T & { action: SwitchAction };
}
