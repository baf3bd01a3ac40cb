import type { SwitchOrder } from '../domain/switch-order.js';
import type { Q, Row } from './postgres-db.js';
import { CLIENT_VISIBLE_STATES, clientEventFromRow, paymentFromRow } from './sqlite-billing.js';
import { orderEventPayload } from './store-rows.js';
import type { CallbackSubscription, ClientEvent, PaymentRecord } from './store.js';

/**
 * Billing integration rows on PostgreSQL (payments, callback subscriptions, the per-client change feed): the same
 * semantics as sqlite-billing.ts. The feed row is written in the transaction of the order change it reports.
 */
export const pgPaymentFromRow = (r: Row): PaymentRecord => paymentFromRow({ ...r, posted: r.posted === true ? 1 : 0 });

/** Called for every order transition, inside its transaction. */
export async function orderChanged(q: Q, order: SwitchOrder, now: number): Promise<void> {
  if (!CLIENT_VISIBLE_STATES.has(order.state)) return;
  const payload = orderEventPayload(order, now);
  await q.run('INSERT INTO client_events (client, meter_id, order_id, kind, payload, at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $6)', [
    order.requestedBy,
    order.meterId,
    order.id,
    `order.${order.state}`,
    JSON.stringify(payload),
    now,
  ]);
}

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

export async function clientEvents(q: Q, client: string, afterSeq: number, limit: number): Promise<ClientEvent[]> {
  return (await q.all('SELECT * FROM client_events WHERE client = $1 AND seq > $2 ORDER BY seq LIMIT $3', [client, afterSeq, limit])).map(clientEventFromRow);
}

export async function pendingClientEvents(q: Q, client: string, limit: number): Promise<ClientEvent[]> {
  return (await q.all('SELECT * FROM client_events WHERE client = $1 AND delivered_at IS NULL ORDER BY seq LIMIT $2', [client, limit])).map(clientEventFromRow);
}

export async function markClientEvent(q: Q, seq: number, now: number, result: { delivered: true } | { delivered: false; error: string; retryAt: number }): Promise<void> {
  if (result.delivered) await q.run('UPDATE client_events SET delivered_at = $1, attempts = attempts + 1, last_error = NULL WHERE seq = $2', [now, seq]);
  else await q.run('UPDATE client_events SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 WHERE seq = $3', [result.error, result.retryAt, seq]);
}
