import type pg from 'pg';
import type { RelayState } from '../domain/relay.js';
import type { Attempt } from '../domain/switch-order.js';
import { parseFlags } from './sqlite-meter-facts.js';
import type { CircuitBreaker, BreakerScope, MeterView, NotificationRecord, Observation } from './store.js';
import type { SwitchAction } from '../domain/relay.js';

/**
 * The PostgreSQL store's plumbing: a small query helper bound to one client (a transaction) or to the pool
 * (single-statement reads), and the row mappers not shared with the SQLite store.
 */
export type Row = Record<string, unknown>;

interface Queryable {
  query(text: string, values?: unknown[]): Promise<pg.QueryResult>;
}

export class Q {
  /** Whether this transaction already holds the audit lock (taken once, held to commit). */
  auditLocked = false;

  constructor(private readonly c: Queryable) {}

  async all(sql: string, args: readonly unknown[] = []): Promise<Row[]> {
    return (await this.c.query(sql, args as unknown[])).rows as Row[];
  }

  async get(sql: string, args: readonly unknown[] = []): Promise<Row | undefined> {
    return (await this.all(sql, args))[0];
  }

  /** Run a change; returns the number of rows it touched. */
  async run(sql: string, args: readonly unknown[] = []): Promise<number> {
    return (await this.c.query(sql, args as unknown[])).rowCount ?? 0;
  }
}

const num = (v: unknown): number => v as number;
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : (v as number));
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : (v as string));

export function meterFromRow(r: Row): MeterView {
  return {
    meterId: r.meter_id as string,
    profileId: r.profile_id as string,
    link: r.link as string,
    region: r.region as string,
    address: strOrNull(r.address),
    accountId: strOrNull(r.account_id),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
    observed:
      r.observed_relay === null
        ? null
        : {
            relay: r.observed_relay as RelayState,
            at: num(r.observed_at),
            source: r.observed_source as Observation['source'],
            voltageV: numOrNull(r.voltage_v),
            energyWh: numOrNull(r.energy_wh),
          },
    desiredRelay: strOrNull(r.desired_relay) as MeterView['desiredRelay'],
    desiredOrderId: strOrNull(r.desired_order_id),
    flags: parseFlags(r.flags),
  };
}

export function attemptFromRow(r: Row): Attempt {
  return {
    orderId: r.order_id as string,
    attempt: num(r.attempt),
    startedAt: num(r.started_at),
    endedAt: numOrNull(r.ended_at),
    outcome: strOrNull(r.outcome) as Attempt['outcome'],
    latencyMs: numOrNull(r.latency_ms),
    observedRelay: strOrNull(r.observed_relay) as RelayState | null,
    commandEvidence: strOrNull(r.command_evidence),
    readEvidence: strOrNull(r.read_evidence),
    detail: strOrNull(r.detail),
  };
}

export function notificationFromRow(r: Row): NotificationRecord {
  return {
    id: r.id as string,
    kind: r.kind as string,
    meterId: r.meter_id as string,
    orderId: strOrNull(r.order_id),
    payload: JSON.parse(r.payload as string) as unknown,
    createdAt: num(r.created_at),
    attempts: num(r.attempts),
    deliveredAt: numOrNull(r.delivered_at),
    lastError: strOrNull(r.last_error),
  };
}

export function breakerFromRow(r: Row): CircuitBreaker {
  return {
    id: r.id as string,
    scope: r.scope as BreakerScope,
    key: r.key as string,
    action: r.action as SwitchAction,
    openedAt: num(r.opened_at),
    reason: r.reason as string,
    resetAt: numOrNull(r.reset_at),
    resetBy: strOrNull(r.reset_by),
  };
}
