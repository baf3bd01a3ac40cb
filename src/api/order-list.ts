import { z } from 'zod';
import { csvField } from '../domain/csv-field.js';
import { DISCONNECT_REASONS, LIMIT_REASONS, LIMIT_REMOVAL_REASONS, RECONNECT_REASONS } from '../domain/switch-order.js';
import { MeterlineError } from '../errors.js';
import type { GatewayStore, OrderQuery } from '../store/store.js';
import { OrderView } from './schemas.js';
import { orderView } from './views.js';

const ANY_REASON = [...new Set([...DISCONNECT_REASONS, ...RECONNECT_REASONS, ...LIMIT_REASONS, ...LIMIT_REMOVAL_REASONS])] as [string, ...string[]];
const isoTime = z.iso.datetime({ offset: true }).describe('ISO 8601 time with its zone, e.g. 2026-11-28T09:00:00Z');

/** The filters of the order list and of its CSV export; a bad one is refused with E_VALIDATION naming it. */
export const OrderFilters = z.object({
  state: z
    .union([z.array(OrderView.shape.state).min(1), OrderView.shape.state])
    .optional()
    .describe('One state, or the parameter repeated for several (state=queued&state=held)'),
  action: OrderView.shape.action.optional(),
  meterId: z.string().min(1).max(200).optional(),
  requestedBy: z.string().min(1).max(200).optional().describe('The client id that asked for the order'),
  reason: z.enum(ANY_REASON).optional(),
  note: z.string().min(1).max(200).optional().describe('A substring of the note (case-sensitive)'),
  createdFrom: isoTime.optional().describe('Created at or after this time (ISO 8601)'),
  createdTo: isoTime.optional().describe('Created before this time (ISO 8601)'),
  q: z.string().min(1).max(100).optional().describe('An order id, or its beginning'),
  order: z.enum(['desc', 'asc']).default('desc').describe('newest first (default) or oldest first'),
});

/** One page: the filters, a cursor and a size. */
export const OrderListQuery = OrderFilters.extend({
  after: z.string().min(1).max(100).optional().describe('The `next` of the previous page (the last order id it showed)'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

/** The store's query for the API's filters; a time range that ends before it starts is refused, not answered empty. */
export function orderQuery(q: z.infer<typeof OrderFilters>, page: { after?: string | undefined; limit: number }): OrderQuery {
  const from = q.createdFrom === undefined ? undefined : Date.parse(q.createdFrom);
  const to = q.createdTo === undefined ? undefined : Date.parse(q.createdTo);
  if (from !== undefined && to !== undefined && to < from) throw new MeterlineError('E_VALIDATION', `createdTo: ${q.createdTo} is before createdFrom ${q.createdFrom}; the range would hold no order`);
  return {
    ...(q.meterId !== undefined ? { meterId: q.meterId } : {}),
    ...(q.state !== undefined ? { states: Array.isArray(q.state) ? q.state : [q.state] } : {}),
    ...(q.action !== undefined ? { action: q.action } : {}),
    ...(q.requestedBy !== undefined ? { requestedBy: q.requestedBy } : {}),
    ...(q.reason !== undefined ? { reason: q.reason } : {}),
    ...(q.note !== undefined ? { noteContains: q.note } : {}),
    ...(from !== undefined ? { createdFrom: from } : {}),
    ...(to !== undefined ? { createdBefore: to } : {}),
    ...(q.q !== undefined ? { idPrefix: q.q.trim() } : {}),
    ...(page.after !== undefined ? { after: page.after } : {}),
    order: q.order,
    limit: page.limit,
  };
}

const CSV_COLUMNS = ['id', 'createdAt', 'meterId', 'action', 'limitW', 'reason', 'reference', 'note', 'requestedBy', 'origin', 'state', 'stateReason', 'attemptsUsed', 'completedAt'] as const;
/** Rows read from the store per step of the export: memory stays at one page whatever the export's size. */
export const EXPORT_PAGE = 1000;

/**
 * The orders that match, as CSV (RFC 4180, CRLF), one page of `query.limit` orders at a time. Every field goes through
 * csvField, so a note or reason typed as `=HYPERLINK(…)` stays text in a spreadsheet.
 */
export async function* ordersCsv(store: Pick<GatewayStore, 'listOrders'>, query: OrderQuery): AsyncGenerator<string> {
  yield CSV_COLUMNS.join(',') + '\r\n';
  for (let after: string | undefined; ; ) {
    const page = await store.listOrders(after === undefined ? query : { ...query, after });
    if (page.length > 0) yield page.map((o) => csvLine(orderView(o))).join('');
    if (page.length < query.limit) return;
    after = page[page.length - 1]!.id;
  }
}

function csvLine(o: z.infer<typeof OrderView>): string {
  return CSV_COLUMNS.map((c) => {
    const v = o[c];
    return csvField(typeof v === 'string' || typeof v === 'number' ? v : null);
  }).join(',') + '\r\n';
}
