import { majorDecimal, minorToMajor } from './money.js';
import { localParts } from './policy/calendar.js';
import { csvField } from './csv-field.js';
import type { OrderState } from './switch-order.js';

/**
 * The daily reconciliation report for one billing client (issue 7): the payments and top-ups it reported on
 * one local day, and whether each brought the customer back on supply within the limit (DOMAIN.md rule 11).
 * Pure: the report time (`now`) is an argument; the caller passes this client's payments and the reconnect
 * orders they caused.
 *
 * - A payment belongs to the day on which it was received, in `timezone`. A payment reported twice (a retried
 *   call) counts once. Unposted payments count like posted ones: they reconnect all the same (rule 13).
 * - Orders are counted by state: done (`done`, `done_by_field`), armed (`armed`: the customer must press the
 *   button, rule 14), escalated (open with a field work order), open (`accepted`, `held`, `queued`,
 *   `in_flight`), failed (`failed`, `refused`), cancelled (`cancelled`, `superseded`: another order took over).
 * - Late: finished (done or armed) after its deadline, still open after it, or failed with the deadline
 *   passed. Cancelled and superseded orders are not judged here: the order that replaced them is. An order
 *   without a deadline is not judged.
 * - Money is summed in whole minor units (money.ts): exact, and bounded (at most 1,000,000 payments of at most
 *   10^9 minor units stay below 2^53). A payment with no amount (a row from before amounts were bounded whose
 *   amount was beyond any the gateway holds) is counted in `payments` and `paymentsWithoutAmount`, not in the sum.
 */

export interface ReceivedPayment {
  paymentId: string;
  meterId: string;
  /** Whole minor currency units; null for a legacy row with no amount (see above). */
  amountMinor: number | null;
  receivedAt: number;
  /** Posted to the customer's account; a payment received but not yet posted still reconnects (rule 13). */
  posted: boolean;
}

export interface PaymentReconnectOrder {
  orderId: string;
  paymentId: string;
  meterId: string;
  state: OrderState;
  createdAt: number;
  completedAt: number | null;
  deadline: number | null;
  stateReason: string | null;
  /** When a field work order was raised for it, if one was. */
  escalatedAt?: number | null;
}

export interface LateReconnect {
  orderId: string;
  meterId: string;
  deadline: number;
  /** When the customer was back on supply (done or armed); null when not yet. */
  completedAt: number | null;
  why: string;
}

export interface ReconciliationReport {
  day: string;
  client: string;
  /** When the report was made: open orders are judged against it. */
  asOf: number;
  payments: number;
  /** The payments' sum, whole minor units. */
  amountMinor: number;
  /** The same in major units (amountMinor / 100; its JSON text is exact). */
  amount: number;
  /** Payments counted with no amount (legacy rows beyond the ceiling): not in the sum. */
  paymentsWithoutAmount: number;
  unposted: number;
  /** Payments of the day that caused no reconnect order (the meter was on supply). */
  paymentsWithoutReconnect: number;
  reconnectsDone: number;
  reconnectsArmed: number;
  reconnectsEscalated: number;
  reconnectsOpen: number;
  reconnectsFailed: number;
  reconnectsCancelled: number;
  /** In deadline order. */
  late: LateReconnect[];
}

export interface ReconciliationInput {
  day: string;
  client: string;
  timezone: string;
  now: number;
  payments: readonly ReceivedPayment[];
  orders: readonly PaymentReconnectOrder[];
}

type Bucket = 'done' | 'armed' | 'escalated' | 'open' | 'failed' | 'cancelled';
const BUCKET: Record<OrderState, Bucket> = {
  done: 'done',
  done_by_field: 'done',
  armed: 'armed',
  escalated: 'escalated',
  accepted: 'open',
  held: 'open',
  queued: 'open',
  in_flight: 'open',
  failed: 'failed',
  refused: 'failed',
  cancelled: 'cancelled',
  superseded: 'cancelled',
};

const iso = (ms: number): string => new Date(ms).toISOString();
const minutes = (ms: number): string => {
  const m = Math.round(ms / 60_000);
  return m < 120 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
};

function lateness(o: PaymentReconnectOrder, now: number): LateReconnect | null {
  if (o.deadline === null) return null;
  const bucket = BUCKET[o.state];
  const reason = o.stateReason ? `: ${o.stateReason}` : '';
  const base = { orderId: o.orderId, meterId: o.meterId, deadline: o.deadline };
  if (bucket === 'cancelled') return null;
  if (bucket === 'done' || bucket === 'armed') {
    if (o.completedAt === null) {
      return now > o.deadline ? { ...base, completedAt: null, why: `${o.state}, but when it finished was not recorded${reason}` } : null;
    }
    const finished = o.completedAt;
    if (finished <= o.deadline) return null;
    const by = o.state === 'done_by_field' ? 'done by a field crew' : o.state === 'armed' ? 'armed (customer to press the button)' : 'done remotely';
    const escalated = o.escalatedAt != null && o.state !== 'done_by_field' ? `, after escalation to the field at ${iso(o.escalatedAt)}` : '';
    return { ...base, completedAt: o.completedAt, why: `${by} ${minutes(finished - o.deadline)} after the deadline${escalated}${reason}` };
  }
  if (now <= o.deadline) return null;
  if (bucket === 'escalated') {
    const when = o.escalatedAt != null ? ` at ${iso(o.escalatedAt)}` : '';
    return { ...base, completedAt: null, why: `escalated to a field crew${when}, not done ${minutes(now - o.deadline)} after the deadline${reason}` };
  }
  if (bucket === 'failed') return { ...base, completedAt: null, why: `${o.state}, the customer is not back on supply${reason}` };
  return { ...base, completedAt: null, why: `still ${o.state} ${minutes(now - o.deadline)} after the deadline${reason}` };
}

export function reconciliationReport(input: ReconciliationInput): ReconciliationReport {
  const payments = new Map<string, ReceivedPayment>();
  for (const p of input.payments) {
    if (!payments.has(p.paymentId) && localParts(p.receivedAt, input.timezone).date === input.day) payments.set(p.paymentId, p);
  }
  const orders = [...new Map(input.orders.filter((o) => payments.has(o.paymentId)).map((o) => [o.orderId, o])).values()];
  const counts: Record<Bucket, number> = { done: 0, armed: 0, escalated: 0, open: 0, failed: 0, cancelled: 0 };
  for (const o of orders) counts[BUCKET[o.state]] += 1;
  const withOrder = new Set(orders.map((o) => o.paymentId));
  const amountMinor = [...payments.values()].reduce((s, p) => s + (p.amountMinor ?? 0), 0);
  return {
    day: input.day,
    client: input.client,
    asOf: input.now,
    payments: payments.size,
    amountMinor,
    amount: minorToMajor(amountMinor),
    paymentsWithoutAmount: [...payments.values()].filter((p) => p.amountMinor === null).length,
    unposted: [...payments.values()].filter((p) => !p.posted).length,
    paymentsWithoutReconnect: [...payments.keys()].filter((id) => !withOrder.has(id)).length,
    reconnectsDone: counts.done,
    reconnectsArmed: counts.armed,
    reconnectsEscalated: counts.escalated,
    reconnectsOpen: counts.open,
    reconnectsFailed: counts.failed,
    reconnectsCancelled: counts.cancelled,
    late: orders
      .map((o) => lateness(o, input.now))
      .filter((l): l is LateReconnect => l !== null)
      .sort((a, b) => a.deadline - b.deadline || a.orderId.localeCompare(b.orderId)),
  };
}

export const CSV_COLUMNS = [
  'record',
  'day',
  'client',
  'as_of',
  'payments',
  'amount',
  'amount_minor',
  'payments_without_amount',
  'unposted',
  'payments_without_reconnect',
  'reconnects_done',
  'reconnects_armed',
  'reconnects_escalated',
  'reconnects_open',
  'reconnects_failed',
  'reconnects_cancelled',
  'order_id',
  'meter_id',
  'deadline',
  'completed_at',
  'why',
] as const;

/**
 * The report as CSV (RFC 4180: CRLF line ends, a header, the same number of fields on every line): one
 * `summary` line, then one `late` line per late reconnect. Times are ISO 8601 UTC. `amount` is the exact decimal in
 * major units ("1234.50"), `amount_minor` the same in whole minor units.
 */
export function toCsv(report: ReconciliationReport): string {
  const blank = (n: number): null[] => Array<null>(n).fill(null);
  const head = [report.day, report.client, iso(report.asOf)];
  const summary = [
    'summary',
    ...head,
    report.payments,
    majorDecimal(report.amountMinor),
    report.amountMinor,
    report.paymentsWithoutAmount,
    report.unposted,
    report.paymentsWithoutReconnect,
    report.reconnectsDone,
    report.reconnectsArmed,
    report.reconnectsEscalated,
    report.reconnectsOpen,
    report.reconnectsFailed,
    report.reconnectsCancelled,
    ...blank(5),
  ];
  const late = report.late.map((l) => ['late', ...head, ...blank(12), l.orderId, l.meterId, iso(l.deadline), l.completedAt === null ? null : iso(l.completedAt), l.why]);
  return [[...CSV_COLUMNS], summary, ...late].map((row) => row.map(csvField).join(',')).join('\r\n') + '\r\n';
}
