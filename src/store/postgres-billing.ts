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
  q.atCommit(() => {
    unwritten.delete(q);
    if (events.length === 1) {
      const e = events[0]!;
      return [INSERT_FEED_EVENT, [e.client, e.meterId, e.orderId, e.kind, e.payload, e.at]];
    }
    // All of them in one statement (a batch of completions has hundreds): the counters in client order, each client's
    // events numbered in the order they happened.
    const byClient = [...events].sort((a, b) => (a.client < b.client ? -1 : a.client > b.client ? 1 : 0)); // stable: a client's events keep their order
    return [
      INSERT_FEED_EVENTS,
      [
        byClient.map((e) => e.client),
        byClient.map((e) => e.meterId),
        byClient.map((e) => e.orderId),
        byClient.map((e) => e.kind),
        byClient.map((e) => e.payload),
        byClient.map((e) => e.at),
      ],
    ];
  });
}

/**
 * Many events, any clients: each client's counter moves by its number of events (its row locked in client order,
 * byte order as the JS sort above, so two such statements never wait on each other in a cycle), and its events take
 * the numbers in between, in the order given (no gaps, as one by one).
 */
const INSERT_FEED_EVENTS = `WITH e AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) WITH ORDINALITY AS e(client, meter_id, order_id, kind, payload, at, n)
  ), counts AS (
    SELECT client, count(*)::bigint AS k FROM e GROUP BY client
  ), next AS (
    INSERT INTO client_seq (client, last_seq) SELECT client, k FROM counts ORDER BY client COLLATE "C"
    ON CONFLICT (client) DO UPDATE SET last_seq = client_seq.last_seq + excluded.last_seq RETURNING client, last_seq
  )
  INSERT INTO client_feed (client, seq, meter_id, order_id, kind, payload, at, next_attempt_at)
  SELECT e.client, next.last_seq - counts.k + row_number() OVER (PARTITION BY e.client ORDER BY e.n), e.meter_id, e.order_id, e.kind, e.payload, e.at, e.at
  FROM e JOIN counts ON counts.client = e.client JOIN next ON next.client = e.client`;

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
