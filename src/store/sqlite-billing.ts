import type Database from 'better-sqlite3';
import type { SwitchOrder } from '../domain/switch-order.js';
import { CLIENT_FEED_SQL, feedInsertArgs, orderFeedEvent } from './store-rows.js';
import type { CallbackSubscription, ClientEvent, PaymentRecord } from './store.js';

/**
 * Billing integration rows: payments with what they caused, callback subscriptions, and the per-client change
 * feed. The feed is written in the same transaction as the order change it reports, so a change is reported
 * exactly once and never lost; each client's events are numbered 1, 2, 3, … with no gaps (CLIENT_FEED_SQL in
 * store-rows.ts); delivery state lives on the same row (the delivery log).
 */
type Row = Record<string, unknown>;

/** Order states a billing client hears about. */
export const CLIENT_VISIBLE_STATES: ReadonlySet<string> = new Set(['done', 'armed', 'failed', 'escalated', 'refused', 'cancelled', 'superseded', 'done_by_field']);

export function paymentFromRow(r: Row): PaymentRecord {
  return {
    id: r.id as string,
    client: r.client as string,
    accountId: (r.account_id as string | null) ?? null,
    meterId: (r.meter_id as string | null) ?? null,
    amountMinor: r.amount_minor === null || r.amount_minor === undefined ? null : Number(r.amount_minor),
    kind: r.kind as PaymentRecord['kind'],
    posted: r.posted === 1,
    reference: (r.reference as string | null) ?? null,
    receivedAt: r.received_at as number,
    recordedAt: r.recorded_at as number,
    effects: JSON.parse(r.effects as string) as PaymentRecord['effects'],
  };
}

export function clientEventFromRow(r: Row): ClientEvent {
  return {
    seq: r.seq as number,
    client: r.client as string,
    meterId: r.meter_id as string,
    orderId: r.order_id as string,
    kind: r.kind as string,
    payload: JSON.parse(r.payload as string) as Record<string, unknown>,
    at: r.at as number,
    attempts: r.attempts as number,
    nextAttemptAt: r.next_attempt_at as number,
    deliveredAt: (r.delivered_at as number | null) ?? null,
    lastError: (r.last_error as string | null) ?? null,
  };
}

/**
 * A client's next feed number on SQLite: one past its last event's, read off the end of the feed's key (client, seq)
 * (events are never deleted). PostgreSQL keeps a counter row per client (CLIENT_FEED_SQL.nextSeq), whose lock orders
 * the commits of two instances; SQLite's one writer needs none, and the counter's upsert was a write per event
 * (issue 19: 8.6 µs per order, against a read of the key's last entry). Its table is dropped (sqlite-migrations.ts).
 */
const SQLITE_NEXT_FEED_SEQ = 'SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM client_feed WHERE client = ?';

export class SqliteBilling {
  private readonly feed: { [K in keyof typeof CLIENT_FEED_SQL]: Database.Statement };

  constructor(private readonly db: Database.Database) {
    this.feed = {
      nextSeq: db.prepare(SQLITE_NEXT_FEED_SEQ),
      insert: db.prepare(CLIENT_FEED_SQL.insert),
      after: db.prepare(CLIENT_FEED_SQL.after),
      afterForOrder: db.prepare(CLIENT_FEED_SQL.afterForOrder),
      pending: db.prepare(CLIENT_FEED_SQL.pending),
      delivered: db.prepare(CLIENT_FEED_SQL.delivered),
      failed: db.prepare(CLIENT_FEED_SQL.failed),
    };
  }

  /**
   * While held (hold() to release()), each client's last number written in the transaction, so that its next event
   * needs no read of the feed's end (issue 19: one statement per verified order); null when not held.
   */
  private lastSeqs: Map<string, number> | null = null;

  /**
   * From now until release(), keep each client's last feed number in memory instead of reading it before each event.
   * The store holds it for one batch's transaction (sqlite-store.ts flush), in which every write to `client_feed` is
   * made here; it calls forgetSeqs() whenever that transaction, or a savepoint in it, rolls back (a rolled back event
   * would otherwise leave a gap in its client's numbers). As the audit log's head (sqlite-audit-log.ts hold).
   */
  hold(): void {
    this.lastSeqs = new Map();
  }

  release(): void {
    this.lastSeqs = null;
  }

  /** Read each client's last number again at its next event (a rollback may have taken the held ones back). */
  forgetSeqs(): void {
    this.lastSeqs?.clear();
  }

  /**
   * Called for every order transition, inside its transaction. SQLite has one writer, so the client's next number
   * is its feed's last plus one (SQLITE_NEXT_FEED_SEQ), read in the transaction that writes the event (or, while
   * held, the number this transaction last gave the client, plus one): a rollback of the write's transaction (or its
   * savepoint) takes the event back, and with it the number.
   */
  orderChanged(order: SwitchOrder, now: number): void {
    if (!CLIENT_VISIBLE_STATES.has(order.state)) return;
    const event = orderFeedEvent(order, now);
    const held = this.lastSeqs?.get(event.client);
    const seq = held !== undefined ? held + 1 : (this.feed.nextSeq.get(event.client) as { seq: number }).seq;
    this.feed.insert.run(...feedInsertArgs(event, seq));
    this.lastSeqs?.set(event.client, seq);
  }

  setCallback(client: string, url: string, secret: string, now: number): CallbackSubscription {
    this.db
      .prepare('INSERT INTO callback_subscriptions (client, url, secret, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (client) DO UPDATE SET url = excluded.url, secret = excluded.secret, updated_at = excluded.updated_at')
      .run(client, url, secret, now);
    return this.callback(client)!;
  }

  callback(client: string): CallbackSubscription | undefined {
    const r = this.db.prepare('SELECT * FROM callback_subscriptions WHERE client = ?').get(client) as Row | undefined;
    return r ? { client, url: r.url as string, secret: r.secret as string, updatedAt: r.updated_at as number } : undefined;
  }

  callbacks(): CallbackSubscription[] {
    return (this.db.prepare('SELECT * FROM callback_subscriptions').all() as Row[]).map((r) => ({ client: r.client as string, url: r.url as string, secret: r.secret as string, updatedAt: r.updated_at as number }));
  }

  events(client: string, afterSeq: number, limit: number, orderId?: string): ClientEvent[] {
    const rows = orderId === undefined ? this.feed.after.all(client, afterSeq, limit) : this.feed.afterForOrder.all(client, orderId, afterSeq, limit);
    return (rows as Row[]).map(clientEventFromRow);
  }

  pending(client: string, limit: number): ClientEvent[] {
    return (this.feed.pending.all(client, limit) as Row[]).map(clientEventFromRow);
  }

  mark(client: string, seq: number, now: number, result: { delivered: true } | { delivered: false; error: string; retryAt: number }): void {
    if (result.delivered) this.feed.delivered.run(now, client, seq);
    else this.feed.failed.run(result.error, result.retryAt, client, seq);
  }
}
