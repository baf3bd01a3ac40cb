import type { ArrayRows } from './postgres-db.js';
import type { Row } from './store-rows.js';

/**
 * Orders read as arrays (Q.allArrays), for the hot reads of whole order rows: a completion batch's locked rows and a
 * lease's returned rows, each 30-odd columns per order. pg builds an object row with a keyed store per column, at
 * several times the cost of an array row on the gateway's main thread; here the array is turned into the Row
 * orderFromRow reads by one object literal of fixed shape. The values are pg's own (the same type parsers), so the
 * orders are exactly those orderFromRow makes of pg's object rows.
 */

/** The orders columns read from an order row: those orderFromRow maps, and the lease holder. */
const ORDER_COLUMNS = [
  'id', 'meter_id', 'action', 'limit_w', 'reason', 'note', 'requested_by', 'state', 'state_reason', 'priority', 'urgent', 'link', 'created_at',
  'updated_at', 'not_before', 'deadline', 'payment_at', 'attempts', 'next_attempt_at', 'superseded_by', 'completed_at', 'result_relay', 'plan_id',
  'second_notice_at', 'cap_day', 'escalated_at', 'origin', 'reference', 'approved_by', 'approved_at', 'lease_owner',
] as const;
type OrderColumn = (typeof ORDER_COLUMNS)[number];

/** Where each order column is in a statement's rows. */
export type OrderColumns = Readonly<Record<OrderColumn, number>>;

/** The position of each of `names` among `fields`; throws if one is missing (the statement must read them). */
export function columnPositions<N extends string>(fields: ArrayRows['fields'], names: readonly N[]): Record<N, number> {
  const at = new Map(fields.map((f, i) => [f.name, i]));
  const out = {} as Record<N, number>;
  for (const name of names) {
    const i = at.get(name);
    if (i === undefined) throw new Error(`column ${name} is not in the rows read (${fields.map((f) => f.name).join(', ')})`);
    out[name] = i;
  }
  return out;
}

export const orderColumns = (fields: ArrayRows['fields']): OrderColumns => columnPositions(fields, ORDER_COLUMNS);

/** One array row as the order Row orderFromRow reads (plus lease_owner). */
export function orderRowFromValues(v: readonly unknown[], c: OrderColumns): Row {
  return {
    id: v[c.id], meter_id: v[c.meter_id], action: v[c.action], limit_w: v[c.limit_w], reason: v[c.reason], note: v[c.note],
    requested_by: v[c.requested_by], state: v[c.state], state_reason: v[c.state_reason], priority: v[c.priority], urgent: v[c.urgent],
    link: v[c.link], created_at: v[c.created_at], updated_at: v[c.updated_at], not_before: v[c.not_before], deadline: v[c.deadline],
    payment_at: v[c.payment_at], attempts: v[c.attempts], next_attempt_at: v[c.next_attempt_at], superseded_by: v[c.superseded_by],
    completed_at: v[c.completed_at], result_relay: v[c.result_relay], plan_id: v[c.plan_id], second_notice_at: v[c.second_notice_at],
    cap_day: v[c.cap_day], escalated_at: v[c.escalated_at], origin: v[c.origin], reference: v[c.reference], approved_by: v[c.approved_by],
    approved_at: v[c.approved_at], lease_owner: v[c.lease_owner],
  };
}
