import type { SwitchOrder } from '../domain/switch-order.js';
import type { Q, Row } from './postgres-db.js';
import { CLIENT_VISIBLE_STATES, clientEventFromRow, paymentFromRow } from './sqlite-billing.js';
import { CLIENT_FEED_SQL, type FeedEvent, numbered, orderFeedEvent } from './store-rows.js';
import type { CallbackSubscription, ClientEvent, PaymentRecord } from './store.js';

/**
 * Billing integration rows on PostgreSQL (payments, callback subscriptions, the per-client change feed): the same
 * semantics as sqlite-billing.ts. The feed row is written in the transaction of the order change it reports, numbered
 * per client with no gaps (CLIENT_FEED_SQL in store-rows.ts).
 */
export const pgPaymentFromRow = (r: Row): PaymentRecord => paymentFromRow({ ...r, posted: r.posted === true ? 1 : 0 });

/** A client's next number and its event in one round trip, so its counter row is locked from here to COMMIT only. */
const INSERT_FEED_EVENT = `WITH next AS (${numbered(CLIENT_FEED_SQL.nextSeq)})
  INSERT INTO client_feed (client, seq, meter_id, order_id, kind, payload, at, next_attempt_at) SELECT $1, last_seq, $2, $3, $4, $5, $6, $6 FROM next`;

/** The feed events of a transaction, waiting for its end (see orderChanged). */
const unwritten = new WeakMap<Q, FeedEvent[]>();

/**
 * Called for every order transition, inside its transaction. The event is written at the end of the transaction
 * (`atCommit`): taking the client's number locks its counter row until COMMIT, and every other transaction with
 * an event for that client waits on it, so it is taken last. The events go by client, one client's in the order
 * they happened, so two transactions take their clients' counters in the same order and cannot deadlock on them.
 */
export async function orderChanged(q: Q, order: SwitchOrder, now: number): Promise<void> {
  if (!CLIENT_VISIBLE_STATES.has(order.state)) return;
  const waiting = unwritten.get(q);
  if (waiting) return void waiting.push(orderFeedEvent(order, now));
  const events = [orderFeedEvent(order, now)];
  unwritten.set(q, events);
  q.atCommit(async () => {
    unwritten.delete(q);
    const byClient = [...events].sort((a, b) => (a.client < b.client ? -1 : a.client > b.client ? 1 : 0)); // stable: a client's events keep their order
    for (const e of byClient) await q.run(INSERT_FEED_EVENT, [e.client, e.meterId, e.orderId, e.kind, e.payload, e.at]);
  });
}

const SQL = { after: numbered(CLIENT_FEED_SQL.after), afterForOrder: numbered(CLIENT_FEED_SQL.afterForOrder), pending: numbered(CLIENT_FEED_SQL.pending), delivered: numbered(CLIENT_FEED_SQL.delivered), failed: numbered(CLIENT_FEED_SQL.failed) };

const subFromRow = (r: Row): CallbackSubscription => ({ client: r.client as string, url: r.url as string, secret: r.secret as string, updatedAt: r.updated_at as number });

export async function setCallback(q: Q, client: string, url: string, secret: string, now: number): Promise<CallbackSubscription> {
  const r = await q.get(
    `INSERT INTO callback_subscriptions (client, url, secret, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (client) DO UPDATE SET url = excluded.url, secret = excluded.secret, updated_at = excluded.updated_at RETURNING *`,
    [client, url, secret, now],
  );
  return subFromRow(r!);
}

export async function callback(q: Q, client: string): Promise<CallbackSubscription | undefined> {
  const r = await q.get('SELECT * FROM callback_subscriptions WHERE client = $1', [client]);
  return r ? subFromRow(r) : undefined;
}

export async function callbacks(q: Q): Promise<CallbackSubscription[]> {
  return (await q.all('SELECT * FROM callback_subscriptions')).map(subFromRow);
}

export async function clientEvents(q: Q, client: string, afterSeq: number, limit: number, orderId?: string): Promise<ClientEvent[]> {
  const rows = orderId === undefined ? await q.all(SQL.after, [client, afterSeq, limit]) : await q.all(SQL.afterForOrder, [client, orderId, afterSeq, limit]);
  return rows.map(clientEventFromRow);
}

export async function pendingClientEvents(q: Q, client: string, limit: number): Promise<ClientEvent[]> {
  return (await q.all(SQL.pending, [client, limit])).map(clientEventFromRow);
}

export async function markClientEvent(q: Q, client: string, seq: number, now: number, result: { delivered: true } | { delivered: false; error: string; retryAt: number }): Promise<void> {
  if (result.delivered) await q.run(SQL.delivered, [now, client, seq]);
  else await q.run(SQL.failed, [result.error, result.retryAt, client, seq]);
}
