import type { AttemptOutcome, OrderAction, RelayState, SwitchAction } from './relay.js';

/** Order states (DESIGN.md §2). Every transition is written to the store before it is acted on. */
export const ORDER_STATES = [
  'accepted',
  'held',
  'queued',
  'in_flight',
  'done',
  'armed',
  'failed',
  'escalated',
  'done_by_field',
  'cancelled',
  'superseded',
  'refused',
] as const;
export type OrderState = (typeof ORDER_STATES)[number];

/** States in which an order is finished: nothing more is ever sent for it. */
export const TERMINAL_STATES: ReadonlySet<OrderState> = new Set([
  'done',
  'armed',
  'failed',
  'done_by_field',
  'cancelled',
  'superseded',
  'refused',
]);
export const isTerminal = (s: OrderState): boolean => TERMINAL_STATES.has(s);

/** States in which an order is still open (waiting, on the wire, or with the field): the queue. */
export const OPEN_ORDER_STATES = ['accepted', 'held', 'queued', 'in_flight', 'escalated'] as const satisfies readonly OrderState[];
export type OpenOrderState = (typeof OPEN_ORDER_STATES)[number];

/** The transitions the state machine allows; anything else is a bug and is refused by the store. */
export const ALLOWED_TRANSITIONS: Readonly<Record<OrderState, readonly OrderState[]>> = {
  accepted: ['held', 'queued', 'refused', 'superseded', 'cancelled'],
  held: ['queued', 'refused', 'superseded', 'cancelled'],
  queued: ['in_flight', 'held', 'refused', 'superseded', 'cancelled', 'escalated'],
  in_flight: ['done', 'armed', 'queued', 'failed', 'superseded', 'escalated'],
  escalated: ['in_flight', 'done_by_field', 'failed', 'cancelled', 'superseded', 'queued', 'escalated'],
  done: [],
  armed: [],
  failed: [],
  done_by_field: [],
  cancelled: [],
  superseded: [],
  refused: [],
};

export function canTransition(from: OrderState, to: OrderState): boolean {
  return ALLOWED_TRANSITIONS[from].includes(to);
}

export const DISCONNECT_REASONS = ['arrears', 'credit_exhausted', 'customer_request', 'safety', 'vacant_premises'] as const;
export type DisconnectReason = (typeof DISCONNECT_REASONS)[number];
export const RECONNECT_REASONS = ['payment', 'top_up', 'customer_request', 'safety_cleared', 'operator'] as const;
export type OrderReason = DisconnectReason | (typeof RECONNECT_REASONS)[number];

/**
 * Why a demand limit is set (DOMAIN.md rule 10): `arrears`, the hardship step before any cut for non-payment; or the
 * customer's request, or safety (an overloaded service). Why one is removed: the customer paid or topped up, an
 * operator lifts it, or the customer asks.
 */
export const LIMIT_REASONS = ['arrears', 'customer_request', 'safety'] as const;
export type LimitReason = (typeof LIMIT_REASONS)[number];
export const LIMIT_REMOVAL_REASONS = ['payment', 'top_up', 'operator', 'customer_request'] as const;
export type LimitRemovalReason = (typeof LIMIT_REMOVAL_REASONS)[number];
/** A limit in watts: a positive whole number, up to 1 MW (no household or small-business service goes beyond). */
export const LIMIT_W_MAX = 1_000_000;

/**
 * The path an order came in by. Set by the code that admits it, never by a caller: an API key's name is a label,
 * and a key named "credit-control" is still an API caller. Only the gateway's credit control may cut a customer
 * off for credit (DOMAIN.md rule 8).
 */
export const ORDER_ORIGINS = ['api', 'plan', 'credit_control'] as const;
export type OrderOrigin = (typeof ORDER_ORIGINS)[number];

export interface SwitchOrder {
  id: string;
  meterId: string;
  action: OrderAction;
  /** For `limit`: the demand limit to set, in watts, or null to remove the limit; null for relay orders. */
  limitW: number | null;
  reason: OrderReason;
  /** Free text from the requester (ticket number, payment reference). */
  note: string | null;
  /** Principal (API key name) that asked for it. */
  requestedBy: string;
  state: OrderState;
  /** Why it is in its state: a rule code, a superseding order, an attempt outcome. */
  stateReason: string | null;
  /** Higher runs first; reconnects always rank above disconnects (DOMAIN.md rule 12). */
  priority: number;
  urgent: boolean;
  link: string;
  createdAt: number;
  updatedAt: number;
  notBefore: number;
  /** Reconnect deadline (payment time + limit); null for disconnects. */
  deadline: number | null;
  paymentAt: number | null;
  /** Attempts started so far. */
  attempts: number;
  nextAttemptAt: number;
  /** A later order for the same meter that replaces this one once its attempt on the wire ends. */
  supersededBy: string | null;
  completedAt: number | null;
  /** The relay state the last read-back showed. */
  resultRelay: RelayState | null;
  /** The approved disconnect plan this order belongs to (DOMAIN.md rule 7). */
  planId: string | null;
  /** When the pre-disconnect notification for this order went out (rule 2). */
  secondNoticeAt: number | null;
  /** The local day whose disconnect cap slot this order holds (rule 4). */
  capDay: string | null;
  /** When a field work order was raised for it (DOMAIN.md rule 11). */
  escalatedAt: number | null;
  /** The path it came in by (DOMAIN.md rules 7, 8). */
  origin: OrderOrigin;
  /** The evidence behind a disconnect's reason: the customer's request, the move-out record, the incident (rule 7). */
  reference: string | null;
  /** A supervisor's one-meter approval (rule 7, maker–checker): who and when. */
  approvedBy: string | null;
  approvedAt: number | null;
}

export interface Attempt {
  orderId: string;
  attempt: number;
  startedAt: number;
  endedAt: number | null;
  outcome: AttemptOutcome | null;
  latencyMs: number | null;
  /** The relay state the read-back showed, if it answered. */
  observedRelay: RelayState | null;
  /** Raw answer to the command (payload text or hex), if any. */
  commandEvidence: string | null;
  /** Raw answer to the read-back, if any. */
  readEvidence: string | null;
  detail: string | null;
}

export interface OrderEvent {
  orderId: string;
  at: number;
  from: OrderState | null;
  to: OrderState;
  reason: string | null;
}

/** The relay state an action asks for. */
export function targetRelay(action: SwitchAction): 'connected' | 'disconnected' {
  return action === 'disconnect' ? 'disconnected' : 'connected';
}

export const PRIORITY = { urgentReconnect: 300, reconnect: 200, limit: 150, disconnect: 100 } as const;

/**
 * A limit's removal gives the customer their supply back, like a reconnect (rule 12); setting one ranks above a
 * disconnect (it is the step before it) and below every reconnect.
 */
export function priorityOf(action: OrderAction, urgent: boolean, limitW: number | null = null): number {
  if (action === 'disconnect') return PRIORITY.disconnect;
  if (action === 'limit') return limitW === null ? PRIORITY.reconnect : PRIORITY.limit;
  return urgent ? PRIORITY.urgentReconnect : PRIORITY.reconnect;
}

/**
 * An order's step in a meter's history, in words: the action and its state change; a verified limit reads "limit of
 * 1500 W set" and a verified removal "limit removed" (the timeline's limit set / removed events).
 */
export function orderStepWords(o: Pick<SwitchOrder, 'action' | 'limitW'>, from: OrderState | null, to: OrderState): string {
  if (o.action === 'limit' && to === 'done') return o.limitW === null ? 'limit removed' : `limit of ${o.limitW} W set`;
  const what = o.action !== 'limit' ? o.action : o.limitW === null ? 'limit removal' : `limit ${o.limitW} W`;
  return `${what} ${from ? `${from} → ` : ''}${to}`;
}

/** A limit order that sets a limit (not a removal): the orders the limit rules apply to. */
export const setsLimit = (order: { action: OrderAction; limitW: number | null }): boolean => order.action === 'limit' && order.limitW !== null;
