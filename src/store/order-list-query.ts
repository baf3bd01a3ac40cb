import type { OrderQuery } from './store.js';

/** What differs between SQLite and PostgreSQL in the order list: how a parameter is written, and substring search. */
export interface OrderListDialect {
  /** Records a value and returns its placeholder (`?` or `$n`); called in the order the SQL text uses them. */
  param(value: unknown): string;
  /** True when `column` holds `needle` (case-sensitive in both stores, so both answer alike). */
  contains(column: string, needle: string): string;
  /** True when `column` is one of `values`, bound as one parameter: however many states are asked, one statement text. */
  anyOf(column: string, values: readonly string[]): string;
}

/**
 * The one description of `listOrders` that both stores run. Orders are walked by `seq` (the insertion order, which
 * is creation order), newest first unless asked otherwise; `afterSeq` is the cursor order's own seq, resolved by the
 * store, so a page never repeats or skips an order when new ones arrive while a user pages. The (meter_id, seq) and
 * (state, seq) indexes let the common filters walk an index in this order instead of sorting the table.
 */
export function orderListSql(q: OrderQuery, afterSeq: number | undefined, d: OrderListDialect): string {
  const where: string[] = [];
  const desc = (q.order ?? 'asc') === 'desc';
  if (q.meterId !== undefined) where.push(`meter_id = ${d.param(q.meterId)}`);
  // One state walks the (state, seq) index in order; several are one bound list (each text is a prepared statement
  // per connection on PostgreSQL, so the texts must not multiply with the number of states).
  if (q.states?.length === 1) where.push(`state = ${d.param(q.states[0])}`);
  else if (q.states?.length) where.push(d.anyOf('state', q.states));
  if (q.action !== undefined) where.push(`action = ${d.param(q.action)}`);
  if (q.requestedBy !== undefined) where.push(`requested_by = ${d.param(q.requestedBy)}`);
  if (q.reason !== undefined) where.push(`reason = ${d.param(q.reason)}`);
  if (q.noteContains !== undefined) where.push(`note IS NOT NULL AND ${d.contains('note', d.param(q.noteContains))}`);
  if (q.createdFrom !== undefined) where.push(`created_at >= ${d.param(q.createdFrom)}`);
  if (q.createdBefore !== undefined) where.push(`created_at < ${d.param(q.createdBefore)}`);
  // An exact id or the start of one (a user pastes what they have); substr() is the same function in both dialects.
  if (q.idPrefix !== undefined) where.push(`substr(id, 1, ${d.param(q.idPrefix.length)}) = ${d.param(q.idPrefix)}`);
  if (afterSeq !== undefined) where.push(`seq ${desc ? '<' : '>'} ${d.param(afterSeq)}`);
  return `SELECT * FROM orders ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq ${desc ? 'DESC' : 'ASC'} LIMIT ${d.param(q.limit)}`;
}

/** The error for a cursor that names no order: a page cannot continue from an order that does not exist. */
export const unknownCursorMessage = (after: string): string =>
  `after: no order ${after}; pass the \`next\` value of the previous page, or leave \`after\` out for the first page`;
