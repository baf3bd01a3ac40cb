import type { OrderAction } from './relay.js';
import { isTerminal, type OrderReason, type SwitchOrder } from './switch-order.js';

/**
 * Latest intent wins, per meter and per dimension (DESIGN.md §2): the relay (disconnect, reconnect) is one, the demand
 * limit (`limit`) another. A later limit order supersedes an earlier unfinished one; relay orders and limit orders do
 * not supersede each other (a reconnect does not undo a limit, a limit does not undo a disconnect). They never run on
 * the wire to one meter at once all the same: the control loop keeps one attempt per meter. Pure: the store applies
 * the decision inside one transaction.
 */

/** The dimension of a meter an action sets: its relay, or its demand limit. */
export const dimensionOf = (action: OrderAction): 'relay' | 'limit' => (action === 'limit' ? 'limit' : 'relay');

export interface NewOrderIntent {
  action: OrderAction;
  reason: OrderReason;
  urgent: boolean;
  deadline: number | null;
}

export interface Refusal {
  code: 'E_RECONNECT_PENDING';
  rule: string;
  message: string;
}

export interface AdmissionDecision {
  /** The new order's first state after acceptance. */
  state: 'queued' | 'refused';
  refusal?: Refusal;
  /** Orders not on the wire: superseded now, never sent. */
  supersedeNow: string[];
  /** Orders on the wire: their current attempt ends, then they are superseded instead of retried. */
  supersedeAfterAttempt: string[];
  /** The deadline the new order carries (an earlier reconnect's deadline is kept: the first payment binds). */
  deadline: number | null;
  urgent: boolean;
}

export function admitOrder(intent: NewOrderIntent, openOrders: readonly SwitchOrder[]): AdmissionDecision {
  const open = openOrders.filter((o) => !isTerminal(o.state) && dimensionOf(o.action) === dimensionOf(intent.action));

  // DOMAIN.md rule 12: a reconnect is never overtaken by a disconnect. A customer who paid stays on supply.
  const pendingReconnect = open.find((o) => o.action === 'reconnect' && o.supersededBy === null);
  if (intent.action === 'disconnect' && pendingReconnect) {
    return {
      state: 'refused',
      refusal: {
        code: 'E_RECONNECT_PENDING',
        rule: 'reconnect-always-wins',
        message: `disconnect refused: reconnect order ${pendingReconnect.id} is still open for this meter; let it finish or cancel it first`,
      },
      supersedeNow: [],
      supersedeAfterAttempt: [],
      deadline: intent.deadline,
      urgent: intent.urgent,
    };
  }

  let deadline = intent.deadline;
  let urgent = intent.urgent;
  const supersedeNow: string[] = [];
  const supersedeAfterAttempt: string[] = [];
  for (const o of open) {
    if (o.action === 'reconnect' && intent.action === 'reconnect') {
      if (o.deadline !== null && (deadline === null || o.deadline < deadline)) deadline = o.deadline;
      urgent ||= o.urgent;
    }
    if (o.state === 'in_flight') {
      if (o.supersededBy === null) supersedeAfterAttempt.push(o.id);
    } else {
      supersedeNow.push(o.id);
    }
  }
  return { state: 'queued', supersedeNow, supersedeAfterAttempt, deadline, urgent };
}
