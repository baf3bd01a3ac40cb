import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { admitOrder } from '../domain/admission.js';
import { decideAttempt } from '../domain/attempt-decision.js';
import { reconnectDeadline } from '../domain/deadlines.js';
import { fieldOrder, NO_REMOTE_ATTEMPT, type EscalatedVerdict, type WorkOrderPlan } from '../domain/escalation.js';
import { localParts, type WeatherPeriod } from '../domain/policy/calendar.js';
import { evaluateDisconnectGate, takesCapSlot, type GateDecision, type GateInput } from '../domain/policy/disconnect-gate.js';
import type { MeterFlags, NoticeRecord, PlanFacts } from '../domain/policy/meter-facts.js';
import type { PolicyConfig } from '../domain/policy/policy-config.js';
import type { CreditEvent } from '../domain/prepayment/credit-ledger.js';
import { isRelayAction, type RelayState, type SwitchAction } from '../domain/relay.js';
import { canTransition, isTerminal, OPEN_ORDER_STATES, priorityOf, targetRelay, type Attempt, type OpenOrderState, type OrderEvent, type OrderState, type SwitchOrder } from '../domain/switch-order.js';
import { MeterlineError } from '../errors.js';
import { orderListSql, unknownCursorMessage } from './order-list-query.js';
import { creditBalanceLimitError } from '../domain/money.js';
import * as audit from './postgres-audit-log.js';
import * as billing from './postgres-billing.js';
import { attemptFromRow, isCachedPlanChange, meterFromRow, notificationFromRow, Q, StatementMode, TurnBatch } from './postgres-db.js';
import {
  approvalProblem,
  CreditBalanceBound,
  creditEventJson,
  ESCALATION_ENDING_HOLDS,
  GATED_STATES,
  gateInputFrom,
  gateNeeds,
  inspectedRelay,
  orderAdmissionAction,
  orderAdmissionAudit,
  orderFromRow,
  orderKeyConflict,
  paymentCancelReason,
  paymentReconnectRequest,
  paymentLimitRemovalRequest,
  limitSetForArrears,
  limitFlagsAfter,
  secondNoticeHoldReason,
  secondNoticePayload,
  type Row,
  alertFromRow,
  ALERT_STATE_SQL,
  meterSwapFromRow,
  dueOrderFromRow,
} from './store-rows.js';
import * as facts from './postgres-meter-facts.js';
import { columnPositions, orderColumns, orderRowFromValues } from './postgres-order-rows.js';
import { checkSchemaName, migratePostgres, POSTGRES_AUDIT_KEYED } from './postgres-migrations.js';
import { keyTheChain, type AuditAnchor, type AuditHead, type AuditKey } from './audit-chain.js';
import { keyForFirstKeying, keyForLog, type AuditKeySource } from './audit-key-source.js';
import * as plans from './postgres-plans.js';
import * as work from './postgres-work-orders.js';
import { describePostgres, postgresUnavailableCause, StoreAvailability, type StoreWriteHealth } from './store-availability.js';
import * as scripts from './store-scripts.js';
import { pgPlaceholders, reviseOpenWorkOrder, runScriptAsync, type Script } from './store-scripts.js';
import * as keys from './client-keys.js';
import * as answers from './idempotent-answers.js';
import * as meterKeys from './meter-key-sets.js';
import type { EpisodeKind } from '../domain/alert-episodes.js';
import { CLIENT_VISIBLE_STATES } from './sqlite-billing.js';
import { parseFlags } from './sqlite-meter-facts.js';
import { queryOrderSeries, type OrderSeriesBucket } from './order-series.js';
import { countPostgresQueries, type StatementCounter } from './statement-counter.js';
import type { KeySetPutOutcome, MeterKeySetRecord, NewMeterKeySet, StoredMeterKeySet,
  AlertEpisode,
  EpisodeClaim,
  MeterSwap,
  ApiKeyRecord,
  IdempotentAnswer,
  NewApiKey,
  AttemptReport,
  AttemptStatsRow,
  AuditEntry,
  AuditQuery,
  AuditVerification,
  BreakerScope,
  CallbackSubscription,
  CircuitBreaker,
  ClientEvent,
  CreditControlMemory,
  DisconnectLease,
  FieldOutcome,
  GatewayStore,
  WakeFilter,
  MeterFactsRow,
  MeterRecord,
  MeterView,
  NotificationRecord,
  Observation,
  ObservationRecord,
  OrderOutcomeRow,
  OrderQuery,
  OrderRequest,
  PaymentCheck,
  PaymentEffect,
  PaymentLimits,
  PaymentRecord,
  PaymentRequest,
  PlanDraft,
  PlanView,
  RelayAuditRun,
  SubmitContext,
  SubmitOutcome,
  WorkOrder,
  WorkOrderStatus,
  DueOrder,
  Lease,
  AlertAct,
  AlertRecord,
  AlertState,
} from './store.js';

export interface PostgresStoreOptions {
  /** e.g. postgres://meterline@db:5432/meterline */
  connectionString: string;
  /** The schema to keep the tables in (created by migrate()); the server's default search_path when absent. */
  schema?: string;
  /** Pool size (default 10). */
  maxConnections?: number;
  /**
   * Where the audit chain's key comes from. Every instance sharing the database must have the same key; there is no
   * default file (instances on several hosts), so a deployment names one (METERLINE_AUDIT_KEY or audit.keyFile).
   */
  auditKey: AuditKeySource;
  /** Count every query and round trip (statement-counter.ts; the bench's statements per order). Off by default. */
  countStatements?: StatementCounter;
}

const OPEN_STATES = `('accepted', 'held', 'queued', 'in_flight', 'escalated')`;
/** Errors after which the whole transaction is run again: a deadlock, a serialization failure, two callers racing on one idempotency key. */
const RETRY_CODES = new Set(['40P01', '40001']);
const RETRY_CONSTRAINTS = new Set(['idempotency_keys_pkey', 'payments_client_idempotency_key_key']);
const INT8_OID = 20;

/** Rows by their meter_id, each meter's in the order the statement gave them. */
function groupByMeter(rows: Row[]): Map<string, Row[]> {
  const out = new Map<string, Row[]>();
  for (const r of rows) {
    const id = r.meter_id as string;
    const list = out.get(id);
    if (list) list.push(r);
    else out.set(id, [r]);
  }
  return out;
}

/** completeAttempt's batches: at most this many in a transaction at once, of at most this many reports. */
const COMPLETION_BATCHES_AT_ONCE = 2;
const COMPLETION_BATCH_MAX = 1000;

interface PendingCompletion {
  report: AttemptReport;
  resolve: (order: SwitchOrder) => void;
  reject: (error: unknown) => void;
}
type CompletionResult = { ok: true; order: SwitchOrder } | { ok: false; error: unknown };

function settle(p: PendingCompletion, r: CompletionResult): void {
  if (r.ok) p.resolve(r.order);
  else p.reject(r.error);
}


/**
 * Many plain reports at once (no field work, no flags): each attempt closed, each read-back recorded as its meter's
 * observed state (unless a newer one is there) and in its history, each order moved (only from the state it was
 * read in) with its history event. Returns the ids of the moved orders (the caller knows their rows: see completeBatch).
 * The meters and orders are reached by their keys (`= ANY(ARRAY(…))`), not by a join the generic plan may turn into a
 * scan of the whole table per batch (see BEGIN_ATTEMPTS_SQL).
 */
export const COMPLETE_ATTEMPTS_SQL = `WITH t AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[],
      $10::text[], $11::text[], $12::text[], $13::boolean[], $14::bigint[])
      AS t(id, attempt, ended_at, outcome, latency_ms, observed_relay, command_evidence, read_evidence, detail, from_state, to_state, reason, terminal, next_attempt_at)
  ), obs AS (
    SELECT * FROM unnest($15::text[], $16::text[], $17::bigint[], $18::text[], $19::double precision[], $20::double precision[])
      AS x(meter_id, relay, at, source, voltage_v, energy_wh)
  ), closed AS (
    UPDATE attempts a SET ended_at = t.ended_at, outcome = t.outcome, latency_ms = t.latency_ms, observed_relay = t.observed_relay,
      command_evidence = t.command_evidence, read_evidence = t.read_evidence, detail = t.detail
    FROM t WHERE a.order_id = t.id AND a.attempt = t.attempt AND a.ended_at IS NULL
  ), latest AS (
    UPDATE meters m SET observed_relay = obs.relay, observed_at = obs.at, observed_source = obs.source,
      voltage_v = COALESCE(obs.voltage_v, m.voltage_v), energy_wh = COALESCE(obs.energy_wh, m.energy_wh), updated_at = obs.at
    FROM obs WHERE m.meter_id = ANY(ARRAY(SELECT meter_id FROM obs)) AND m.meter_id = obs.meter_id AND (m.observed_at IS NULL OR m.observed_at <= obs.at)
  ), history AS (
    INSERT INTO observations (meter_id, at, relay, source, voltage_v, energy_wh) SELECT meter_id, at, relay, source, voltage_v, energy_wh FROM obs
  ), moved AS (
    UPDATE orders o SET state = t.to_state, state_reason = t.reason, updated_at = t.ended_at,
      completed_at = CASE WHEN t.terminal THEN t.ended_at ELSE o.completed_at END,
      next_attempt_at = COALESCE(t.next_attempt_at, o.next_attempt_at),
      result_relay = COALESCE(t.observed_relay, o.result_relay)
    FROM t WHERE o.id = ANY(ARRAY(SELECT id FROM t)) AND o.id = t.id AND o.state = t.from_state RETURNING o.id
  ), events AS (
    INSERT INTO order_events (order_id, at, from_state, to_state, reason) SELECT t.id, t.ended_at, t.from_state, t.to_state, t.reason FROM t JOIN moved ON moved.id = t.id
  )
  SELECT id FROM moved`;

/** The planner setting of `readWalkingIndexes` (sorts off for one transaction). */
export const WALK_INDEXES = 'SET LOCAL enable_sort = off';

/**
 * The due orders, in the order they are sent: priority, then deadline (none last), then age. It walks orders_queue,
 * which holds the queue's states in exactly that order, and stops at the limit. "No order of this meter on the wire"
 * is a subquery kept apart (OFFSET 0: PostgreSQL does not turn it into a join), so it is always a probe of
 * orders_meter_in_flight by the row's meter: as an anti-join planned on statistics that counted no order in flight,
 * it read the whole in-flight index for every row walked (400 in flight × 500 rows: 25 ms instead of 0.4 ms).
 */
export const DUE_ORDERS_SQL = `SELECT o.id, o.meter_id, o.link, o.action, o.reason, o.state, o.priority, o.deadline FROM orders o
       WHERE o.state IN ('queued', 'held', 'escalated') AND o.next_attempt_at <= $1 AND o.not_before <= $1
         AND NOT EXISTS (SELECT 1 FROM orders f WHERE f.meter_id = o.meter_id AND f.state = 'in_flight' OFFSET 0)
         AND o.link <> ALL($2::text[])
       ORDER BY o.priority DESC, o.deadline ASC NULLS LAST, o.seq
       LIMIT $3`;

/**
 * Lease the given orders (those still queued or escalated), in one statement: orders another instance is leasing
 * (or admitting against) right now are skipped, never waited for; a meter's order is leased only while holding the
 * meter's row and only if no other order of the meter is in flight (one command on the wire per meter, across
 * instances). Each leased order gets its attempt row and its history event. Returns the leased orders.
 *
 * Each given id, then its meter, is looked up by its primary key (the LATERAL probes, one row each): a prepared
 * statement's generic plan, made while the tables were small or their statistics stale, otherwise scanned every
 * queued order (filtering each against the whole id array: 67 ms for 110 ids in a 20,000-order backlog) or hashed
 * the whole meters table, once per lease.
 */
export const BEGIN_ATTEMPTS_SQL = `WITH candidates AS (
    SELECT o.id, o.state, o.meter_id FROM (SELECT DISTINCT id FROM unnest($1::text[]) AS k(id)) k
    CROSS JOIN LATERAL (SELECT id, state, meter_id FROM orders WHERE id = k.id AND state IN ('queued', 'escalated') FOR UPDATE SKIP LOCKED) o
  ), taken AS (
    SELECT c.id, c.state FROM candidates c
    CROSS JOIN LATERAL (
      SELECT m.meter_id FROM meters m
      WHERE m.meter_id = c.meter_id AND NOT EXISTS (SELECT 1 FROM orders f WHERE f.meter_id = m.meter_id AND f.state = 'in_flight')
      FOR UPDATE SKIP LOCKED
    ) m
  ), leased AS (
    UPDATE orders o SET state = 'in_flight', attempts = o.attempts + 1, updated_at = $2::bigint, state_reason = NULL, lease_owner = $3, lease_until = $4::bigint
    FROM taken WHERE o.id = taken.id
    RETURNING o.*, taken.state AS from_state
  ), opened AS (
    INSERT INTO attempts (order_id, attempt, started_at) SELECT id, attempts, $2::bigint FROM leased
  ), events AS (
    INSERT INTO order_events (order_id, at, from_state, to_state, reason) SELECT id, $2::bigint, from_state, 'in_flight', 'attempt ' || attempts FROM leased
  )
  SELECT * FROM leased`;

function retryable(error: unknown): boolean {
  const e = error as { code?: string; constraint?: string };
  return RETRY_CODES.has(e.code ?? '') || (e.code === '23505' && RETRY_CONSTRAINTS.has(e.constraint ?? '')) || isCachedPlanChange(error);
}

/**
 * The scale-out store: PostgreSQL, shared by several gateway instances. The same semantics, error codes and
 * transactions as the SQLite store; where SQLite relies on its single writer, this store takes row locks:
 * every change to an order locks its meter's row first, then the order's (a fixed order, so no deadlocks
 * between them); leases skip rows another instance holds (FOR UPDATE SKIP LOCKED), so instances share the work
 * and never lease one order twice; the audit chain and the daily cap are appended under transaction-scoped
 * advisory locks. A transaction that deadlocks anyway, or races another on an idempotency key, is run again.
 */
export class PostgresStore implements GatewayStore {
  private readonly pool: pg.Pool;
  private readonly schema: string | undefined;
  /** Single-statement reads go straight to the pool. */
  private readonly r: Q;
  private closed = false;
  /** Named prepared statements, until the schema changes under this instance. */
  private readonly statements = new StatementMode();
  /** Whether writes go through (a server that is down or read-only answers E_STORE_UNAVAILABLE, and /healthz says so). */
  private readonly availability: StoreAvailability;
  /** The schema versions the last migrate() applied (empty when another instance had already applied them). */
  migrationsApplied: number[] = [];
  private readonly auditKeySource: AuditKeySource;
  /** The audit chain's key, once migrate() has loaded it. */
  private auditKey: AuditKey | undefined;

  constructor(options: PostgresStoreOptions) {
    this.schema = options.schema === undefined ? undefined : checkSchemaName(options.schema);
    this.auditKeySource = options.auditKey;
    this.pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.maxConnections ?? 10,
      // A statement goes on the wire when it is asked for, not when the one before it is answered: `tx` sends BEGIN
      // with the first statement and the final statements with COMMIT, each group in one round trip. Each statement
      // still has its own Sync, so one that fails fails alone (in a transaction: the ones after it are refused
      // until the ROLLBACK, and a COMMIT rolls back).
      pipeline: true,
      ...(this.schema ? { options: `-c search_path=${this.schema}` } : {}),
      // BIGINT (ms timestamps, counts) as numbers, for this pool only.
      types: { getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format))) as typeof pg.types.getTypeParser },
    });
    // An idle connection dropped by the server: the pool replaces it on the next query.
    this.pool.on('error', () => undefined);
    if (options.countStatements) countPostgresQueries(this.pool, options.countStatements);
    this.availability = new StoreAvailability(describePostgres(options.connectionString, this.schema), postgresUnavailableCause);
    this.r = new Q(this.pool, this.statements, true, this.availability);
  }

  writeHealth(): StoreWriteHealth {
    return this.availability.health();
  }

  async migrate(): Promise<void> {
    const client = await this.pool.connect();
    let broken = false;
    const onError = () => (broken = true);
    client.on('error', onError);
    try {
      let keyedNow: AuditKey | undefined;
      this.migrationsApplied = await migratePostgres(client, this.schema, async (index) => {
        // Keying the chain is the keying migration's own one-time step, in its transaction, never at a later start.
        if (index !== POSTGRES_AUDIT_KEYED) return;
        keyedNow = keyForFirstKeying(this.auditKeySource);
        const q = new Q(client, Object.assign(new StatementMode(), { prepared: false }));
        q.auditKey = keyedNow;
        await this.runScript(q, keyTheChain(keyedNow, Date.now()));
      });
      this.auditKey = keyedNow ?? keyForLog(this.auditKeySource, await audit.readKeying(new Q(client)));
    } finally {
      client.release(broken);
      client.removeListener('error', onError);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  /** Run `fn` in one transaction on one connection: COMMIT, or ROLLBACK and rethrow (retrying deadlocks and key races). */
  private async tx<T>(fn: (q: Q) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect().catch((error: unknown) => {
        throw this.availability.failed(error);
      });
      let broken = false;
      // A checked-out client whose connection drops (the server restarted) emits 'error' on itself, not on the
      // pool: unheard, that event ends the process. The query in progress fails with it anyway.
      const onError = () => (broken = true);
      client.on('error', onError);
      try {
        // BEGIN goes without waiting for its answer: the first statement follows it on the wire (pipeline mode),
        // one round trip less per transaction. Its answer is awaited before COMMIT; a BEGIN that fails fails the
        // statements behind it too (the connection is gone).
        const begun = client.query('BEGIN');
        begun.catch(() => undefined);
        const q = new Q(client, this.statements);
        q.auditKey = this.auditKey;
        const value = await fn(q);
        await begun;
        // The statements deferred to the end, and COMMIT right behind them in one go. A final statement that fails
        // aborts the transaction (its COMMIT then rolls back) and its error is thrown here.
        const finals = q.sendFinalStatements();
        const committed = client.query('COMMIT');
        committed.catch(() => undefined);
        await Promise.all(finals);
        await committed;
        this.availability.succeeded();
        return value;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => (broken = true));
        if (attempt < 5 && retryable(error)) continue;
        throw this.availability.failed(error);
      } finally {
        client.release(broken);
        client.removeListener('error', onError);
      }
    }
  }

  /** Run a script written for both stores (store-scripts.ts) on `q`: one transaction's connection, or the pool for reads. */
  private runScript<T>(q: Q, script: Script<T>): Promise<T> {
    return runScriptAsync(script, async (step) => {
      if ('lock' in step) {
        await q.run('SELECT pg_advisory_xact_lock(hashtext($1))', [step.lock]);
        return [];
      }
      if ('audit' in step) {
        await audit.appendAudit(q, step.audit.at, step.audit.actor, step.audit.action, step.audit.target, step.audit.details);
        return [];
      }
      return q.all(pgPlaceholders(step.sql), step.args);
    });
  }

  // ---- meters -----------------------------------------------------------------------------------------

  async upsertMeters(meters: readonly MeterRecord[], now: number): Promise<void> {
    // One row per meter (the last one given wins, as one by one would), in id order so concurrent upserts lock alike.
    const byId = new Map(meters.map((m) => [m.meterId, m]));
    const rows = [...byId.values()].sort((a, b) => (a.meterId < b.meterId ? -1 : a.meterId > b.meterId ? 1 : 0));
    await this.tx(async (q) => {
      for (let i = 0; i < rows.length; i += 5000) {
        const chunk = rows.slice(i, i + 5000);
        await q.run(
          `INSERT INTO meters (meter_id, profile_id, link, region, address, account_id, created_at, updated_at)
           SELECT t.*, $7::bigint, $7::bigint FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS t
           ON CONFLICT (meter_id) DO UPDATE SET profile_id = excluded.profile_id, link = excluded.link,
             region = excluded.region, address = excluded.address, account_id = COALESCE(excluded.account_id, meters.account_id),
             updated_at = excluded.updated_at
           WHERE meters.profile_id IS DISTINCT FROM excluded.profile_id OR meters.link IS DISTINCT FROM excluded.link
             OR meters.region IS DISTINCT FROM excluded.region OR meters.address IS DISTINCT FROM excluded.address
             OR (excluded.account_id IS NOT NULL AND meters.account_id IS DISTINCT FROM excluded.account_id)`,
          [
            chunk.map((m) => m.meterId),
            chunk.map((m) => m.profileId),
            chunk.map((m) => m.link),
            chunk.map((m) => m.region),
            chunk.map((m) => m.address ?? null),
            chunk.map((m) => m.accountId ?? null),
            now,
          ],
        );
      }
    });
  }

  /** The meters asked for in one turn, read by one statement. */
  private readonly meterReads = new TurnBatch<Row, MeterView | undefined>(
    async (ids) => new Map((await this.r.all('SELECT * FROM meters WHERE meter_id = ANY($1::text[])', [ids])).map((r) => [r.meter_id as string, r])),
    (r) => (r ? meterFromRow(r) : undefined),
  );

  getMeter(meterId: string): Promise<MeterView | undefined> {
    return this.meterReads.get(meterId);
  }

  async existingMeterIds(meterIds: readonly string[]): Promise<Set<string>> {
    const rows = await this.r.all('SELECT meter_id FROM meters WHERE meter_id = ANY($1::text[])', [meterIds]);
    return new Set(rows.map((r) => r.meter_id as string));
  }

  private async observe(q: Q, meterId: string, o: Observation): Promise<void> {
    // One round trip: the meter's latest observed state (unless a newer one is there) and the history row.
    await q.run(
      `WITH latest AS (
         UPDATE meters SET observed_relay = $1, observed_at = $2, observed_source = $3,
           voltage_v = COALESCE($4::double precision, voltage_v), energy_wh = COALESCE($5::double precision, energy_wh), updated_at = $2
         WHERE meter_id = $6 AND (observed_at IS NULL OR observed_at <= $2)
       )
       INSERT INTO observations (meter_id, at, relay, source, voltage_v, energy_wh) VALUES ($6, $2, $1, $3, $4, $5)`,
      [o.relay, o.at, o.source, o.voltageV ?? null, o.energyWh ?? null, meterId],
    );
  }

  recordObservation(meterId: string, observation: Observation): Promise<void> {
    // One statement, atomic on its own: no transaction round trips around it.
    return this.observe(this.r, meterId, observation);
  }

  // ---- orders -----------------------------------------------------------------------------------------

  private async order(q: Q, orderId: string): Promise<SwitchOrder> {
    return orderFromRow((await q.get('SELECT * FROM orders WHERE id = $1', [orderId]))!);
  }

  /**
   * Lock an order for a change: its meter's row first, then the order's row (the order every writer takes them
   * in). With `skipLocked`, an order another instance holds is not waited for: `null`.
   */
  private async lockOrder(q: Q, orderId: string, skipLocked = false): Promise<SwitchOrder | null | undefined> {
    const r = await this.lockOrderRow(q, orderId, skipLocked);
    return r ? orderFromRow(r) : r;
  }

  /** The meter's row, then the order's (always in that order, so lockers never deadlock); the order's row as stored. */
  private async lockOrderRow(q: Q, orderId: string, skipLocked = false): Promise<Row | null | undefined> {
    const m = await q.get('SELECT m.meter_id FROM orders o JOIN meters m ON m.meter_id = o.meter_id WHERE o.id = $1 FOR UPDATE OF m', [orderId]);
    if (!m) return undefined;
    return (await q.get(`SELECT * FROM orders WHERE id = $1 FOR UPDATE${skipLocked ? ' SKIP LOCKED' : ''}`, [orderId])) ?? null;
  }

  private async mustLockOrder(q: Q, orderId: string): Promise<SwitchOrder> {
    const order = await this.lockOrder(q, orderId);
    if (!order) throw new MeterlineError('E_ORDER_NOT_FOUND', `order ${orderId} does not exist`);
    return order;
  }

  private async move(q: Q, order: SwitchOrder, to: OrderState, now: number, reason: string | null, extra: { nextAttemptAt?: number; resultRelay?: RelayState | null } = {}): Promise<SwitchOrder> {
    if (!canTransition(order.state, to)) {
      throw new Error(`illegal order transition ${order.state} → ${to} for ${order.id}`);
    }
    // The state change and its history event in one round trip (the event is written only if the change was).
    const r = await q.get(
      `WITH moved AS (
         UPDATE orders SET state = $3, state_reason = $4, updated_at = $5,
           completed_at = CASE WHEN $6::boolean THEN $5 ELSE completed_at END,
           next_attempt_at = COALESCE($7, next_attempt_at),
           result_relay = COALESCE($8, result_relay)
         WHERE id = $1 AND state = $2 RETURNING *
       ), event AS (
         INSERT INTO order_events (order_id, at, from_state, to_state, reason) SELECT id, $5, $2, $3, $4 FROM moved
       )
       SELECT * FROM moved`,
      [order.id, order.state, to, reason, now, isTerminal(to), extra.nextAttemptAt ?? null, extra.resultRelay ?? null],
    );
    if (!r) throw new Error(`order ${order.id} was not in state ${order.state}`);
    const after = orderFromRow(r);
    if (CLIENT_VISIBLE_STATES.has(to)) await billing.orderChanged(q, after, now);
    return after;
  }

  private async event(q: Q, orderId: string, at: number, from: OrderState | null, to: OrderState, reason: string | null): Promise<void> {
    await q.run('INSERT INTO order_events (order_id, at, from_state, to_state, reason) VALUES ($1, $2, $3, $4, $5)', [orderId, at, from, to, reason]);
  }

  submitOrders(requests: readonly OrderRequest[], ctx: SubmitContext): Promise<SubmitOutcome[]> {
    return this.tx((q) => this.submitInTx(q, requests, ctx));
  }

  /**
   * Admission, inside a transaction: idempotency, latest intent wins, then the disconnect rules. The common case
   * of a bulk request (a reconnect for a meter with nothing open) is written set-based, a statement per table for
   * the whole run of such requests; any other request first writes that run, then goes through the rules one by one.
   */
  private async submitInTx(q: Q, requests: readonly OrderRequest[], ctx: SubmitContext): Promise<SubmitOutcome[]> {
    // Lock every meter of the batch up front, in id order: admissions for one meter run one at a time.
    const meterIds = [...new Set(requests.map((r) => r.meterId))].sort();
    const meters = new Map((await q.all('SELECT * FROM meters WHERE meter_id = ANY($1::text[]) ORDER BY meter_id FOR UPDATE', [meterIds])).map((r) => [r.meter_id as string, r]));
    // The batch's open orders (locked, as the one-by-one path locks them) and the idempotency keys it reuses.
    const openAtStart = new Map<string, SwitchOrder[]>();
    for (const r of await q.all(`SELECT * FROM orders WHERE meter_id = ANY($1::text[]) AND state IN ${OPEN_STATES} ORDER BY seq FOR UPDATE`, [meterIds])) {
      const o = orderFromRow(r);
      openAtStart.set(o.meterId, [...(openAtStart.get(o.meterId) ?? []), o]);
    }
    const keyed = requests.filter((r) => r.idempotencyKey !== null);
    const priors = new Map<string, { requestHash: string; orderId: string }>();
    if (keyed.length > 0) {
      const rows = await q.all(
        'SELECT principal, key, request_hash, order_id FROM idempotency_keys WHERE (principal, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))',
        [keyed.map((r) => r.requestedBy), keyed.map((r) => r.idempotencyKey)],
      );
      for (const r of rows) priors.set(`${r.principal as string}\u0000${r.key as string}`, { requestHash: r.request_hash as string, orderId: r.order_id as string });
    }
    const touched = new Set<string>(); // meters with an order admitted earlier in this batch
    const run: { index: number; req: OrderRequest; id: string; priority: number; urgent: boolean; deadline: number | null; link: string }[] = [];
    const out: SubmitOutcome[] = new Array(requests.length);
    const writeRun = async (): Promise<void> => {
      if (run.length === 0) return;
      await this.admitQueuedReconnects(q, run, ctx.now, out);
      run.length = 0;
    };
    for (let index = 0; index < requests.length; index++) {
      const req = requests[index]!;
      const idemKey = req.idempotencyKey === null ? null : `${req.requestedBy}\u0000${req.idempotencyKey}`;
      const prior = idemKey === null ? undefined : priors.get(idemKey);
      if (prior) {
        if (prior.requestHash !== req.requestHash) {
          throw orderKeyConflict(req.idempotencyKey!, prior.orderId);
        }
        await writeRun();
        out[index] = { kind: 'replayed', order: await this.order(q, prior.orderId) };
        continue;
      }
      const meterRow = meters.get(req.meterId);
      if (!meterRow) {
        throw new MeterlineError('E_METER_NOT_FOUND', `meter ${req.meterId} is not registered; register it first (PUT /v1/meters/${req.meterId})`, {
          meterId: req.meterId,
        });
      }
      const first = !touched.has(req.meterId);
      touched.add(req.meterId);
      if (req.action === 'reconnect' && first) {
        const deadline = reconnectDeadline(req.paymentAt, ctx.now, ctx.reconnectLimitHours);
        const decision = admitOrder({ action: req.action, reason: req.reason, urgent: req.urgent, deadline }, openAtStart.get(req.meterId) ?? []);
        if (decision.state === 'queued' && decision.supersedeNow.length === 0 && decision.supersedeAfterAttempt.length === 0) {
          const id = ctx.newOrderId();
          run.push({ index, req, id, priority: priorityOf(req.action, decision.urgent), urgent: decision.urgent, deadline: decision.deadline, link: meterRow.link as string });
          if (idemKey !== null) priors.set(idemKey, { requestHash: req.requestHash, orderId: id });
          continue;
        }
      }
      await writeRun();
      const created = await this.admitOne(q, req, meterRow, ctx);
      if (idemKey !== null) priors.set(idemKey, { requestHash: req.requestHash, orderId: created.order.id });
      out[index] = created;
    }
    await writeRun();
    return out;
  }

  /** A run of reconnects for meters with nothing open: each queued at once (history: accepted → queued), set-based. */
  private async admitQueuedReconnects(
    q: Q,
    run: readonly { index: number; req: OrderRequest; id: string; priority: number; urgent: boolean; deadline: number | null; link: string }[],
    now: number,
    out: SubmitOutcome[],
  ): Promise<void> {
    const col = <T>(f: (r: (typeof run)[number]) => T): T[] => run.map(f);
    await q.run(
      `INSERT INTO orders (id, meter_id, action, reason, note, requested_by, state, state_reason, priority, urgent, link,
         created_at, updated_at, not_before, deadline, payment_at, attempts, next_attempt_at, plan_id, origin)
       SELECT t.id, t.meter_id, 'reconnect', t.reason, t.note, t.requested_by, 'queued', NULL, t.priority, t.urgent, t.link,
         $12, $12, t.not_before, t.deadline, t.payment_at, 0, t.not_before, t.plan_id, t.origin
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::boolean[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $13::text[], $14::text[])
         WITH ORDINALITY AS t(id, meter_id, reason, note, requested_by, priority, urgent, link, not_before, deadline, payment_at, plan_id, origin, n)
       ORDER BY t.n`,
      [
        col((r) => r.id),
        col((r) => r.req.meterId),
        col((r) => r.req.reason),
        col((r) => r.req.note),
        col((r) => r.req.requestedBy),
        col((r) => r.priority),
        col((r) => r.urgent),
        col((r) => r.link),
        col((r) => r.req.notBefore ?? now),
        col((r) => r.deadline),
        col((r) => r.req.paymentAt),
        now,
        col((r) => r.req.planId ?? null),
        col((r) => r.req.origin ?? 'api'),
      ],
    );
    // The rows as inserted, from the values sent (no RETURNING *: a row of every column per order parsed on the main
    // thread). The columns not written take their defaults: NULL, and origin 'api' (given here anyway). Numbers are
    // safe integers into integer and bigint columns, which read back exactly as written.
    const byId = new Map(
      run.map((r) => [
        r.id,
        orderFromRow({
          id: r.id, meter_id: r.req.meterId, action: 'reconnect', limit_w: null, reason: r.req.reason, note: r.req.note, requested_by: r.req.requestedBy,
          state: 'queued', state_reason: null, priority: r.priority, urgent: r.urgent, link: r.link, created_at: now, updated_at: now,
          not_before: r.req.notBefore ?? now, deadline: r.deadline, payment_at: r.req.paymentAt, attempts: 0, next_attempt_at: r.req.notBefore ?? now,
          superseded_by: null, completed_at: null, result_relay: null, plan_id: r.req.planId ?? null, second_notice_at: null, cap_day: null,
          escalated_at: null, origin: r.req.origin ?? 'api', reference: null, approved_by: null, approved_at: null,
        }),
      ]),
    );
    await q.run(
      `INSERT INTO order_events (order_id, at, from_state, to_state, reason)
       SELECT t.id, $3, e.from_state, e.to_state, CASE WHEN e.to_state = 'accepted' THEN t.accepted ELSE NULL END
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(id, accepted, n)
       CROSS JOIN (VALUES (1, NULL::text, 'accepted'), (2, 'accepted', 'queued')) AS e(k, from_state, to_state)
       ORDER BY t.n, e.k`,
      [col((r) => r.id), col((r) => `requested by ${r.req.requestedBy}: ${r.req.action} (${r.req.reason})`), now],
    );
    await q.run(
      `UPDATE meters m SET desired_relay = $3, desired_order_id = t.id, updated_at = $4
       FROM unnest($1::text[], $2::text[]) AS t(meter_id, id) WHERE m.meter_id = t.meter_id`,
      [col((r) => r.req.meterId), col((r) => r.id), targetRelay('reconnect'), now],
    );
    const keyed = run.filter((r) => r.req.idempotencyKey !== null);
    if (keyed.length > 0) {
      await q.run(
        `INSERT INTO idempotency_keys (principal, key, request_hash, order_id, created_at)
         SELECT t.principal, t.key, t.hash, t.id, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(principal, key, hash, id)`,
        [keyed.map((r) => r.req.requestedBy), keyed.map((r) => r.req.idempotencyKey), keyed.map((r) => r.req.requestHash), keyed.map((r) => r.id), now],
      );
    }
    await audit.appendAuditMany(
      q,
      run.map((r) => ({ at: now, actor: r.req.requestedBy, action: orderAdmissionAction(r.req), target: r.req.meterId, details: orderAdmissionAudit(r.req, r.id, 'queued', null) })),
    );
    for (const r of run) out[r.index] = { kind: 'created', order: byId.get(r.id)! };
  }

  /** One request through the rules, one statement at a time. */
  private async admitOne(q: Q, req: OrderRequest, meterRow: Row, ctx: SubmitContext): Promise<SubmitOutcome> {
    const now = ctx.now;
    // The meter's open orders, locked: a lease elsewhere either finished before this read or skips them.
    const open = (await q.all(`SELECT * FROM orders WHERE meter_id = $1 AND state IN ${OPEN_STATES} ORDER BY seq FOR UPDATE`, [req.meterId])).map(orderFromRow);
    const ownDeadline = req.action === 'reconnect' ? reconnectDeadline(req.paymentAt, now, ctx.reconnectLimitHours) : null;
    const decision = admitOrder({ action: req.action, reason: req.reason, urgent: req.urgent, deadline: ownDeadline }, open);
    const id = ctx.newOrderId();
    let order = orderFromRow(
      (await q.get(
        `INSERT INTO orders (id, meter_id, action, reason, note, requested_by, state, state_reason, priority, urgent, link,
           created_at, updated_at, not_before, deadline, payment_at, attempts, next_attempt_at, plan_id, origin, reference, limit_w)
         VALUES ($1, $2, $3, $4, $5, $6, 'accepted', NULL, $7, $8, $9, $10, $10, $11, $12, $13, 0, $11, $14, $15, $16, $17) RETURNING *`,
        [
          id, req.meterId, req.action, req.reason, req.note, req.requestedBy, priorityOf(req.action, decision.urgent, req.limitW ?? null), decision.urgent, meterRow.link, now, req.notBefore ?? now,
          decision.deadline, req.paymentAt, req.planId ?? null, req.origin ?? 'api', req.reference ?? null, req.action === 'limit' ? (req.limitW ?? null) : null,
        ],
      ))!,
    );
    await this.event(q, id, now, null, 'accepted', `requested by ${req.requestedBy}: ${req.action} (${req.reason})`);
    // The disconnect rules (and a limit's: disconnect-gate.ts) apply from the first moment; a refused order supersedes nothing.
    const gate = req.action !== 'reconnect' && decision.state === 'queued' ? evaluateDisconnectGate(await this.gateInput(q, order, now, 'admission', ctx.policy)) : null;
    let outcome: string = decision.state;
    if (decision.state === 'refused') {
      order = await this.move(q, order, 'refused', now, `${decision.refusal!.code}: ${decision.refusal!.message}`);
    } else if (gate?.verdict === 'refuse' || gate?.verdict === 'cancel') {
      outcome = 'refused';
      order = await this.move(q, order, 'refused', now, `${gate.code}: ${gate.message}`);
    } else {
      for (const oldId of decision.supersedeNow) {
        await q.run('UPDATE orders SET superseded_by = $1, updated_at = $2 WHERE id = $3 AND superseded_by IS NULL', [id, now, oldId]);
        await this.move(q, await this.order(q, oldId), 'superseded', now, `superseded by ${id} (latest intent wins)`);
      }
      for (const oldId of decision.supersedeAfterAttempt) {
        await q.run('UPDATE orders SET superseded_by = $1, updated_at = $2 WHERE id = $3 AND superseded_by IS NULL', [id, now, oldId]);
        await this.event(q, oldId, now, 'in_flight', 'in_flight', `superseded by ${id} once the attempt on the wire ends`);
      }
      if (gate?.verdict === 'hold') {
        outcome = 'held';
        order = await this.move(q, order, 'held', now, `${gate.code}: ${gate.message}`, { nextAttemptAt: gate.until });
      } else {
        order = await this.move(q, order, 'queued', now, decision.supersedeAfterAttempt.length > 0 ? `waiting for ${decision.supersedeAfterAttempt.join(', ')} to leave the wire` : null);
      }
      if (isRelayAction(req.action)) await q.run('UPDATE meters SET desired_relay = $1, desired_order_id = $2, updated_at = $3 WHERE meter_id = $4', [targetRelay(req.action), id, now, req.meterId]);
    }
    if (req.idempotencyKey !== null) {
      await q.run('INSERT INTO idempotency_keys (principal, key, request_hash, order_id, created_at) VALUES ($1, $2, $3, $4, $5)', [req.requestedBy, req.idempotencyKey, req.requestHash, id, now]);
    }
    await audit.appendAudit(q, now, req.requestedBy, orderAdmissionAction(req), req.meterId, orderAdmissionAudit(req, id, outcome, order.stateReason));
    return { kind: 'created', order };
  }

  // ---- the disconnect rules ------------------------------------------------------------------------------

  /** Everything the gate needs about one order, read fresh. */
  private async gateInput(q: Q, order: SwitchOrder, now: number, stage: GateInput['stage'], policy: PolicyConfig): Promise<GateInput> {
    const meter = (await q.get('SELECT * FROM meters WHERE meter_id = $1', [order.meterId]))!;
    const today = localParts(now, policy.windows.timezone).date;
    const needs = gateNeeds(order);
    return gateInputFrom(order, now, stage, policy, {
      meter,
      capUsage: (await q.get('SELECT COALESCE(SUM(used), 0) AS overall, COALESCE(SUM(CASE WHEN region = $1 THEN used END), 0) AS region FROM cap_usage WHERE day = $2', [meter.region, today])) as {
        overall: number;
        region: number;
      },
      plan: (order.planId ? await plans.planFacts(q, order.planId) : null) ?? null,
      notices: await facts.notices(q, order.meterId),
      weather: await facts.weather(q, now),
      breakers: await work.listBreakers(q, true),
      secondNotice: needs.secondNotice ? await q.get(`SELECT * FROM notifications WHERE order_id = $1 AND kind = 'pre_disconnect_notice' ORDER BY created_at DESC LIMIT 1`, [order.id]) : undefined,
      creditEvents: needs.credit ? (await q.all('SELECT event FROM credit_events WHERE meter_id = $1 ORDER BY seq', [order.meterId])).map((r) => JSON.parse(r.event as string) as CreditEvent) : null,
    });
  }

  /**
   * Apply a refusal, a cancellation, a hold or a second notice to a queued, held or escalated disconnect. An
   * escalated one (a crew may be on its way) that a rule now forbids is cancelled with its work order; one that
   * must wait stays escalated, with no remote attempt before the rule allows it.
   */
  private async applyGate(q: Q, order: SwitchOrder, decision: GateDecision, now: number): Promise<SwitchOrder> {
    const ends = decision.verdict === 'refuse' || decision.verdict === 'cancel' || (order.state === 'escalated' && decision.verdict === 'hold' && ESCALATION_ENDING_HOLDS.has(decision.code));
    if (ends) {
      const why = 'code' in decision ? `${decision.code}: ${decision.message}` : 'a rule forbids it now';
      const to = decision.verdict === 'refuse' && order.state !== 'escalated' ? 'refused' : 'cancelled';
      await this.move(q, order, to, now, why);
      await q.run('UPDATE meters SET desired_relay = NULL, desired_order_id = NULL, updated_at = $1 WHERE meter_id = $2 AND desired_order_id = $3', [now, order.meterId, order.id]);
      if (order.escalatedAt !== null) await work.cancelWorkOrderFor(q, order.id, `the disconnect was stopped by the rules: ${why}`, now);
      await audit.appendAudit(q, now, 'gateway', `order.${to}`, order.meterId, { orderId: order.id, ...('code' in decision ? { code: decision.code, rule: decision.rule, message: decision.message } : {}) });
    } else if (decision.verdict === 'hold') {
      await this.hold(q, order, now, decision.until, `${decision.code}: ${decision.message}`);
    } else if (decision.verdict === 'second_notice') {
      const payload = secondNoticePayload(order, now, decision.until);
      await work.notify(q, 'pre_disconnect_notice', order.meterId, order.id, payload, now, payload.notificationId);
      await q.run('UPDATE orders SET second_notice_at = $1 WHERE id = $2', [now, order.id]);
      await audit.appendAudit(q, now, 'gateway', 'order.second_notice', order.meterId, { orderId: order.id, notificationId: payload.notificationId, notBefore: payload.notBefore });
      await this.hold(q, await this.order(q, order.id), now, decision.until, secondNoticeHoldReason(payload, now, decision.until));
    }
    return this.order(q, order.id);
  }

  /** Hold a queued order; a held or escalated one stays in its state with the new reason and time to look again. */
  private async hold(q: Q, order: SwitchOrder, now: number, until: number, reason: string): Promise<void> {
    if (order.state === 'held' || order.state === 'escalated') {
      await q.run('UPDATE orders SET next_attempt_at = $1, state_reason = $2, updated_at = $3 WHERE id = $4', [until, reason, now, order.id]);
      if (order.stateReason !== reason) await this.event(q, order.id, now, order.state, order.state, reason);
    } else {
      await this.move(q, order, 'held', now, reason, { nextAttemptAt: until });
    }
  }

  gateDisconnect(orderId: string, now: number, policy: PolicyConfig): Promise<{ order: SwitchOrder; decision: GateDecision | null }> {
    return this.tx(async (q) => {
      const order = await this.mustLockOrder(q, orderId);
      if (!GATED_STATES.has(order.state)) return { order, decision: null };
      const decision = evaluateDisconnectGate(await this.gateInput(q, order, now, 'attempt', policy));
      return { order: await this.applyGate(q, order, decision, now), decision };
    });
  }

  recordPaymentCheck(orderId: string, now: number, outcome: 'paid' | 'unreachable', detail: string, retryAt: number): Promise<SwitchOrder> {
    return this.tx(async (q) => {
      const order = await this.mustLockOrder(q, orderId);
      if (!GATED_STATES.has(order.state)) return order;
      if (outcome === 'paid') {
        await this.move(q, order, 'cancelled', now, `E_PAID: ${detail} (rule 3: payment re-checked at the last moment)`);
        await q.run('UPDATE meters SET desired_relay = NULL, desired_order_id = NULL, updated_at = $1 WHERE meter_id = $2 AND desired_order_id = $3', [now, order.meterId, orderId]);
        if (order.escalatedAt !== null) await work.cancelWorkOrderFor(q, orderId, `the account is paid: ${detail}`, now);
        await audit.appendAudit(q, now, 'gateway', 'order.cancelled', order.meterId, { orderId, code: 'E_PAID', detail });
      } else {
        await this.hold(q, order, now, retryAt, `E_BILLING_UNREACHABLE: ${detail}; asking again at ${new Date(retryAt).toISOString()} (rule 3: payment re-checked at the last moment)`);
      }
      return this.order(q, orderId);
    });
  }

  leaseDisconnect(orderId: string, now: number, policy: PolicyConfig, lease: Lease): Promise<DisconnectLease> {
    return this.tx(async (q): Promise<DisconnectLease> => {
      const locked = await this.lockOrder(q, orderId, true);
      if (locked === undefined) throw new MeterlineError('E_ORDER_NOT_FOUND', `order ${orderId} does not exist`);
      // Another instance is leasing it right now: not this one's to send.
      if (locked === null) return { leased: null, order: await this.order(q, orderId), decision: null };
      let order = locked;
      if (!GATED_STATES.has(order.state)) return { leased: null, order, decision: null };
      if (await q.get(`SELECT 1 FROM orders WHERE meter_id = $1 AND state = 'in_flight'`, [order.meterId])) return { leased: null, order, decision: null };
      const today = localParts(now, policy.windows.timezone).date;
      const reservesSlot = takesCapSlot(order) && order.capDay !== today;
      // The day's cap is counted and reserved by one lease at a time (across instances), so it is never overrun.
      if (reservesSlot) await q.run('SELECT pg_advisory_xact_lock(hashtext($1))', [`meterline:cap:${this.schema ?? 'public'}:${today}`]);
      const decision = evaluateDisconnectGate(await this.gateInput(q, order, now, 'attempt', policy));
      if (decision.verdict !== 'allow') return { leased: null, order: await this.applyGate(q, order, decision, now), decision };
      if (reservesSlot) {
        const region = (await q.get('SELECT region FROM meters WHERE meter_id = $1', [order.meterId]))!.region as string;
        await q.get('INSERT INTO cap_usage (day, region, used) VALUES ($1, $2, 1) ON CONFLICT (day, region) DO UPDATE SET used = cap_usage.used + 1 RETURNING used', [today, region]);
        await q.run('UPDATE orders SET cap_day = $1 WHERE id = $2', [today, orderId]);
      }
      if (order.state === 'held') order = await this.move(q, order, 'queued', now, 'every rule allows it now');
      const r = await q.get(
        `UPDATE orders SET state = 'in_flight', attempts = attempts + 1, updated_at = $2, state_reason = NULL, lease_owner = $3, lease_until = $4
         WHERE id = $1 AND state IN ('queued', 'escalated') RETURNING *`,
        [orderId, now, lease.owner, lease.until],
      );
      if (!r) return { leased: null, order, decision: null };
      const leased = orderFromRow(r);
      await q.run('INSERT INTO attempts (order_id, attempt, started_at) VALUES ($1, $2, $3)', [orderId, leased.attempts, now]);
      await this.event(q, orderId, now, order.state, 'in_flight', `attempt ${leased.attempts}`);
      return { leased };
    });
  }

  wakeHeldDisconnects(filter: WakeFilter, now: number): Promise<number> {
    return this.tx((q) => this.wakeHeld(q, filter, now));
  }

  private async wakeHeld(q: Q, filter: WakeFilter, now: number): Promise<number> {
    const args: unknown[] = [now];
    const arg = (v: unknown): string => (args.push(v), `$${args.length}`);
    // An order waiting for the field with no remote attempt at all (the meter refuses our keys) is not woken.
    const where = [`state IN ('held', 'escalated')`, `action = 'disconnect'`, 'next_attempt_at > $1', `next_attempt_at < ${NO_REMOTE_ATTEMPT}`];
    if (filter.meterId !== undefined) where.push(`meter_id = ${arg(filter.meterId)}`);
    if (filter.orderId !== undefined) where.push(`id = ${arg(filter.orderId)}`);
    if (filter.codes && filter.codes.length > 0) where.push(`(${filter.codes.map((c) => `state_reason LIKE ${arg(`${c}:%`)}`).join(' OR ')})`);
    const rows = await q.all(`UPDATE orders SET next_attempt_at = $1 WHERE ${where.join(' AND ')} RETURNING id`, args);
    return rows.length;
  }

  approveOrder(orderId: string, actor: string, now: number): Promise<SwitchOrder> {
    return this.tx(async (q) => {
      const order = await this.mustLockOrder(q, orderId);
      approvalProblem(order, actor);
      await q.run('UPDATE orders SET approved_by = $1, approved_at = $2, updated_at = $2 WHERE id = $3', [actor, now, orderId]);
      await this.event(q, orderId, now, order.state, order.state, `approved by ${actor}`);
      await audit.appendAudit(q, now, actor, 'order.approve', order.meterId, { orderId, reason: order.reason, reference: order.reference, requestedBy: order.requestedBy, approvedAt: new Date(now).toISOString() });
      await this.wakeHeld(q, { orderId }, now);
      return this.order(q, orderId);
    });
  }

  async getOrder(orderId: string): Promise<SwitchOrder | undefined> {
    const r = await this.r.get('SELECT * FROM orders WHERE id = $1', [orderId]);
    return r ? orderFromRow(r) : undefined;
  }

  async listOrders(q: OrderQuery): Promise<SwitchOrder[]> {
    let afterSeq: number | undefined;
    if (q.after !== undefined) {
      const s = await this.r.get('SELECT seq FROM orders WHERE id = $1', [q.after]);
      if (!s) throw new MeterlineError('E_VALIDATION', unknownCursorMessage(q.after));
      afterSeq = s.seq as number;
    }
    const args: unknown[] = [];
    const param = (v: unknown): string => (args.push(v), `$${args.length}`);
    const sql = orderListSql(q, afterSeq, {
      param,
      contains: (column, needle) => `strpos(${column}, ${needle}) > 0`,
      anyOf: (column, values) => `${column} = ANY(${param(values)}::text[])`,
    });
    return (await this.r.all(sql, args)).map(orderFromRow);
  }

  async openOrdersForMeter(meterId: string): Promise<SwitchOrder[]> {
    return (await this.r.all(`SELECT * FROM orders WHERE meter_id = $1 AND state IN ${OPEN_STATES} ORDER BY seq`, [meterId])).map(orderFromRow);
  }

  async listAttempts(orderId: string): Promise<Attempt[]> {
    return (await this.r.all('SELECT * FROM attempts WHERE order_id = $1 ORDER BY attempt', [orderId])).map(attemptFromRow);
  }

  async listOrderEvents(orderId: string): Promise<OrderEvent[]> {
    return (await this.r.all('SELECT * FROM order_events WHERE order_id = $1 ORDER BY seq', [orderId])).map((r) => ({
      orderId: r.order_id as string,
      at: r.at as number,
      from: (r.from_state as OrderState | null) ?? null,
      to: r.to_state as OrderState,
      reason: (r.reason as string | null) ?? null,
    }));
  }

  async countOrdersByState(): Promise<Partial<Record<OrderState, number>>> {
    const out: Partial<Record<OrderState, number>> = {};
    for (const r of await this.r.all('SELECT state, COUNT(*) AS n FROM orders GROUP BY state')) out[r.state as OrderState] = r.n as number;
    return out;
  }

  async countOpenOrdersByState(): Promise<Partial<Record<OpenOrderState, number>>> {
    const out: Partial<Record<OpenOrderState, number>> = {};
    const rows = await this.r.all('SELECT state, COUNT(*) AS n FROM orders WHERE state = ANY($1::text[]) GROUP BY state', [[...OPEN_ORDER_STATES]]);
    for (const r of rows) out[r.state as OpenOrderState] = Number(r.n);
    return out;
  }

  orderSeries(from: number, to: number, stepMs: number): Promise<OrderSeriesBucket[]> {
    return queryOrderSeries((sql, args) => this.r.all(sql, args) as Promise<Record<string, unknown>[]>, (n) => `$${n}::bigint`, from, to, stepMs);
  }

  // ---- control loop -------------------------------------------------------------------------------------

  async dueOrders(now: number, limit: number, excludeLinks: readonly string[]): Promise<DueOrder[]> {
    // The columns the control loop picks by, not the whole row (500 rows a fetch, parsed on the main thread). Planned
    // each time: a cached generic plan made while the schema was empty once read the whole orders table for each due
    // order (seconds per fetch, with two instances) while the table filled.
    const rows = await this.readWalkingIndexes(DUE_ORDERS_SQL, [now, excludeLinks, limit]);
    return rows.map(dueOrderFromRow);
  }

  /**
   * A read planned afresh, with sorts off for the planner (`SET LOCAL enable_sort = off`, in a transaction of its own
   * sent in one round trip): for a LIMITed read whose ORDER BY an index gives, which must walk that index and stop at
   * the limit however few rows the planner thinks the tables hold. In a schema not analysed since it filled (a fresh
   * one, or statistics taken while it was empty) the planner counts a handful of due orders, so reading them all and
   * sorting looks as cheap as the walk: it read and sorted every queued order per fetch (15,600 queued: 14 ms,
   * against 0.4 ms for the walk). Only the plan changes, not the rows or their order.
   */
  private async readWalkingIndexes(sql: string, args: readonly unknown[]): Promise<Row[]> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw this.availability.failed(error);
    });
    let broken = false;
    const onError = () => (broken = true);
    client.on('error', onError);
    try {
      // Pipeline mode: all four go on the wire at once; a failure of one fails the ones after it, awaited in order.
      const sent = [client.query('BEGIN'), client.query(WALK_INDEXES)];
      const read = new Q(client, this.statements).allPlanned(sql, args);
      const committed = client.query('COMMIT');
      for (const p of [...sent, read, committed]) p.catch(() => undefined);
      for (const p of sent) await p;
      const rows = await read;
      await committed;
      return rows;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      throw this.availability.failed(error);
    } finally {
      client.release(broken);
      client.removeListener('error', onError);
    }
  }

  async beginAttempts(orderIds: readonly string[], now: number, lease: Lease): Promise<SwitchOrder[]> {
    if (orderIds.length === 0) return [];
    // One statement, so one round trip and its own transaction: the leases, their attempts and their history events
    // commit together or not at all, as a BEGIN … COMMIT of three statements did (five round trips).
    const read = await this.retrying(() => this.r.allArrays(BEGIN_ATTEMPTS_SQL, [orderIds, now, lease.owner, lease.until]));
    const c = orderColumns(read.fields);
    const position = new Map(orderIds.map((id, i) => [id, i]));
    return read.rows.map((v) => orderFromRow(orderRowFromValues(v, c))).sort((a, b) => position.get(a.id)! - position.get(b.id)!);
  }

  /** A single statement on the pool (its own transaction), run again after a deadlock or serialization failure, as `tx` does. */
  private async retrying<T>(run: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await run();
      } catch (error) {
        if (attempt < 5 && retryable(error)) continue;
        throw error;
      }
    }
  }

  releaseAttempt(orderId: string, attempt: number, now: number, nextAttemptAt: number, reason: string, leaseOwner: string): Promise<SwitchOrder> {
    return this.tx(async (q) => {
      await this.lockOrder(q, orderId);
      const r = await q.get(
        `UPDATE orders SET state = 'queued', attempts = attempts - 1, next_attempt_at = $3, state_reason = $4, updated_at = $5
         WHERE id = $1 AND state = 'in_flight' AND attempts = $2 AND lease_owner IS NOT DISTINCT FROM $6 RETURNING *`,
        [orderId, attempt, nextAttemptAt, reason, now, leaseOwner],
      );
      if (!r) throw new Error(`order ${orderId} is not in flight at attempt ${attempt} under ${leaseOwner}'s lease`);
      await q.run('DELETE FROM attempts WHERE order_id = $1 AND attempt = $2 AND ended_at IS NULL', [orderId, attempt]);
      await this.event(q, orderId, now, 'in_flight', 'queued', reason);
      return orderFromRow(r);
    });
  }

  /** Reports waiting for the next batch (completeAttempt). */
  private completions: PendingCompletion[] = [];
  private completionsScheduled = false;
  private completionBatchesRunning = 0;

  /**
   * Reports arriving in one turn of the event loop are recorded together: one transaction, a statement to lock and
   * read all their rows, one to write them all, one for their feed events (five round trips per batch instead of
   * nine per report). Each caller still gets its own order or its own error: a report refused (lease lost, not in
   * flight, no such order) is left out of the writes and fails alone. While two batches are in a transaction the
   * next one waits, growing, as the SQLite store's group commit does.
   */
  completeAttempt(report: AttemptReport): Promise<SwitchOrder> {
    return new Promise<SwitchOrder>((resolve, reject) => {
      this.completions.push({ report, resolve, reject });
      this.scheduleCompletions();
    });
  }

  private scheduleCompletions(): void {
    if (this.completionsScheduled || this.completions.length === 0 || this.completionBatchesRunning >= COMPLETION_BATCHES_AT_ONCE) return;
    this.completionsScheduled = true;
    setImmediate(() => {
      this.completionsScheduled = false;
      if (this.completionBatchesRunning >= COMPLETION_BATCHES_AT_ONCE) return; // the batch that ends schedules the next
      // One report per order in a batch (a second one for an order waits for the next batch, as it would wait for its lock).
      const batch: PendingCompletion[] = [];
      const rest: PendingCompletion[] = [];
      const orders = new Set<string>();
      for (const p of this.completions) {
        if (batch.length >= COMPLETION_BATCH_MAX || orders.has(p.report.orderId)) rest.push(p);
        else {
          orders.add(p.report.orderId);
          batch.push(p);
        }
      }
      this.completions = rest;
      this.completionBatchesRunning++;
      void this.runCompletions(batch).finally(() => {
        this.completionBatchesRunning--;
        this.scheduleCompletions();
      });
    });
  }

  private async runCompletions(batch: PendingCompletion[]): Promise<void> {
    try {
      const results = await this.tx((q) => this.completeBatch(q, batch.map((p) => p.report)));
      batch.forEach((p, i) => settle(p, results[i]!));
    } catch (error) {
      const unavailable = error instanceof MeterlineError && error.code === 'E_STORE_UNAVAILABLE';
      if (batch.length === 1 || unavailable) return batch.forEach((p) => p.reject(error));
      // A failure the checks did not foresee fails the whole transaction: each report is then recorded alone, so
      // one order's failure is its caller's only.
      await Promise.all(
        batch.map((p) => this.tx((q) => this.completeBatch(q, [p.report])).then((r) => settle(p, r[0]!), (e: unknown) => p.reject(e))),
      );
    }
  }

  /** The reports' orders in one transaction: checked and decided each, written set-based. Results in the reports' order. */
  private async completeBatch(q: Q, reports: readonly AttemptReport[]): Promise<CompletionResult[]> {
    // The meters' rows, then the orders' (the order every writer takes them in), in meter order: one statement.
    // Read as arrays (postgres-order-rows.ts): a thousand rows of thirty-odd columns, on the main thread. The meters
    // by their keys too (`= ANY(ARRAY(…))`), or the plan may hash the whole meters table per batch.
    const read = await q.allArrays(
      `SELECT o.*, m.flags AS meter_flags_now FROM meters m JOIN orders o ON o.meter_id = m.meter_id
       WHERE o.id = ANY($1::text[]) AND m.meter_id = ANY(ARRAY(SELECT meter_id FROM orders WHERE id = ANY($1::text[])))
       ORDER BY m.meter_id, o.id FOR UPDATE OF m, o`,
      [reports.map((r) => r.orderId)],
    );
    const c = orderColumns(read.fields);
    const flagsAt = columnPositions(read.fields, ['meter_flags_now']).meter_flags_now;
    const byId = new Map(read.rows.map((v) => [v[c.id] as string, v]));
    const results: CompletionResult[] = new Array(reports.length);
    const simple: { i: number; report: AttemptReport; current: SwitchOrder; verdict: EscalatedVerdict }[] = [];
    const other: { i: number; report: AttemptReport; current: SwitchOrder; verdict: EscalatedVerdict; limited: Partial<MeterFlags> | undefined }[] = [];
    const meters = new Set<string>();
    for (let i = 0; i < reports.length; i++) {
      const report = reports[i]!;
      const values = byId.get(report.orderId);
      try {
        if (!values) throw new MeterlineError('E_ORDER_NOT_FOUND', `order ${report.orderId} does not exist`);
        const row = orderRowFromValues(values, c);
        const current = orderFromRow(row);
        if (current.state !== 'in_flight' || current.attempts !== report.attempt) {
          throw new Error(`order ${report.orderId} is ${current.state} at attempt ${current.attempts}, not in flight at attempt ${report.attempt}`);
        }
        const holder = (row.lease_owner as string | null) ?? null;
        if (holder !== report.leaseOwner) throw new MeterlineError('E_LEASE_LOST', `order ${report.orderId} was taken over by ${holder ?? 'nobody'}; ${report.leaseOwner}'s report is not recorded`);
        const verdict = decideAttempt(current, report.judgement);
        if (!canTransition(current.state, verdict.next)) throw new Error(`illegal order transition ${current.state} → ${verdict.next} for ${current.id}`);
        const limited = limitFlagsAfter(current, verdict.next, parseFlags(values[flagsAt]), report.endedAt);
        const plain = !verdict.escalation && !verdict.reviseWorkOrder && !limited && !(verdict.next !== 'escalated' && current.escalatedAt !== null);
        // The set-based write touches each meter's row once: a second report on one meter goes the one-by-one way.
        if (plain && !meters.has(current.meterId)) {
          meters.add(current.meterId);
          simple.push({ i, report, current, verdict });
        } else other.push({ i, report, current, verdict, limited });
      } catch (error) {
        results[i] = { ok: false, error };
      }
    }
    if (simple.length > 0) {
      const withObs = simple.filter((s) => s.report.observation);
      const moved = await q.all(COMPLETE_ATTEMPTS_SQL, [
        simple.map((s) => s.report.orderId),
        simple.map((s) => s.report.attempt),
        simple.map((s) => s.report.endedAt),
        simple.map((s) => s.verdict.outcome),
        simple.map((s) => s.report.latencyMs),
        simple.map((s) => s.report.observedRelay),
        simple.map((s) => s.report.commandEvidence),
        simple.map((s) => s.report.readEvidence),
        simple.map((s) => s.report.detail),
        simple.map((s) => s.current.state),
        simple.map((s) => s.verdict.next),
        simple.map((s) => s.verdict.reason),
        simple.map((s) => isTerminal(s.verdict.next)),
        simple.map((s) => s.verdict.nextAttemptAt ?? null),
        withObs.map((s) => s.current.meterId),
        withObs.map((s) => s.report.observation!.relay),
        withObs.map((s) => s.report.observation!.at),
        withObs.map((s) => s.report.observation!.source),
        withObs.map((s) => s.report.observation!.voltageV ?? null),
        withObs.map((s) => s.report.observation!.energyWh ?? null),
      ]);
      const movedIds = new Set(moved.map((r) => r.id as string));
      for (const s of simple) {
        if (!movedIds.has(s.report.orderId)) throw new Error(`order ${s.report.orderId} was not in state ${s.current.state}`);
        // The order as the statement left it, from the row read under its lock and what the statement wrote (no
        // RETURNING o.*: a thousand rows of every column parsed on the main thread). The columns written are
        // bigints from safe integers and text, which read back exactly as written.
        const order: SwitchOrder = {
          ...s.current,
          state: s.verdict.next,
          stateReason: s.verdict.reason ?? null,
          updatedAt: s.report.endedAt,
          completedAt: isTerminal(s.verdict.next) ? s.report.endedAt : s.current.completedAt,
          nextAttemptAt: s.verdict.nextAttemptAt ?? s.current.nextAttemptAt,
          resultRelay: s.report.observedRelay ?? s.current.resultRelay,
        };
        if (CLIENT_VISIBLE_STATES.has(order.state)) await billing.orderChanged(q, order, s.report.endedAt);
        results[s.i] = { ok: true, order };
      }
    }
    for (const o of other) results[o.i] = { ok: true, order: await this.finishAttempt(q, o.report, o.current, o.verdict, o.limited) };
    return results;
  }

  /** One report, its order locked and checked: the attempt, the observation, the field work, the flags, the move. */
  private async finishAttempt(q: Q, report: AttemptReport, current: SwitchOrder, verdict: EscalatedVerdict, limited: Partial<MeterFlags> | undefined): Promise<SwitchOrder> {
    await q.run(
      `UPDATE attempts SET ended_at = $3, outcome = $4, latency_ms = $5, observed_relay = $6, command_evidence = $7, read_evidence = $8, detail = $9
       WHERE order_id = $1 AND attempt = $2 AND ended_at IS NULL`,
      [report.orderId, report.attempt, report.endedAt, verdict.outcome, report.latencyMs, report.observedRelay, report.commandEvidence, report.readEvidence, report.detail],
    );
    if (report.observation) await this.observe(q, current.meterId, report.observation);
    if (verdict.escalation) {
      const region = (await q.get('SELECT region FROM meters WHERE meter_id = $1', [current.meterId]))!.region as string;
      await work.raiseWorkOrder(q, fieldOrder(current), region, verdict.escalation, report.endedAt);
    }
    if (verdict.reviseWorkOrder) await this.runScript(q, reviseOpenWorkOrder(current.id, verdict.reviseWorkOrder, report.endedAt));
    if (limited) await facts.setFlags(q, current.meterId, limited, 'gateway', report.endedAt);
    const after = await this.move(q, current, verdict.next, report.endedAt, verdict.escalation ? `${verdict.next === 'escalated' ? 'escalated to the field' : 'field work order raised'}: ${verdict.escalation.reason}` : verdict.reason, {
      ...(verdict.nextAttemptAt !== undefined ? { nextAttemptAt: verdict.nextAttemptAt } : {}),
      resultRelay: report.observedRelay,
    });
    if (verdict.next !== 'escalated' && current.escalatedAt !== null) {
      const why = verdict.next === 'done' || verdict.next === 'armed' ? `restored remotely by attempt ${report.attempt} (${verdict.reason})` : `the order ended ${verdict.next}: ${verdict.reason}`;
      await work.cancelWorkOrderFor(q, current.id, why, report.endedAt);
    }
    return after;
  }

  cancelOrder(orderId: string, actor: string, reason: string, now: number): Promise<SwitchOrder> {
    return this.tx(async (q) => {
      const order = await this.mustLockOrder(q, orderId);
      if (order.state === 'in_flight') throw new MeterlineError('E_ORDER_ON_WIRE', `order ${orderId} has an attempt on the wire; cancel again in a few seconds, once it has been read back`);
      if (!['accepted', 'held', 'queued', 'escalated'].includes(order.state)) throw new MeterlineError('E_ORDER_FINISHED', `order ${orderId} is already ${order.state}`);
      await this.move(q, order, 'cancelled', now, `cancelled by ${actor}: ${reason}`);
      await q.run('UPDATE meters SET desired_relay = NULL, desired_order_id = NULL, updated_at = $1 WHERE meter_id = $2 AND desired_order_id = $3', [now, order.meterId, orderId]);
      if (order.escalatedAt !== null) await work.cancelWorkOrderFor(q, orderId, `the order was cancelled by ${actor}: ${reason}`, now);
      await audit.appendAudit(q, now, actor, 'order.cancel', order.meterId, { orderId, before: { state: order.state }, after: { state: 'cancelled' }, reason });
      return this.order(q, orderId);
    });
  }

  async inFlightOrders(): Promise<SwitchOrder[]> {
    return (await this.r.all(`SELECT * FROM orders WHERE state = 'in_flight' ORDER BY seq`)).map(orderFromRow);
  }

  async renewLeases(lease: Lease, orderIds: readonly string[]): Promise<number> {
    if (orderIds.length === 0) return 0;
    // Locked in the order a completion batch locks orders (meter, then id), so the two never wait on each other in a cycle.
    return this.r.run(
      `WITH mine AS (
         SELECT id FROM orders WHERE state = 'in_flight' AND lease_owner = $1 AND id = ANY($3::text[]) ORDER BY meter_id, id FOR UPDATE
       )
       UPDATE orders o SET lease_until = $2 FROM mine WHERE o.id = mine.id AND o.state = 'in_flight' AND o.lease_owner = $1`,
      [lease.owner, lease.until, orderIds],
    );
  }

  async holdDuty(name: string, lease: Lease, now: number): Promise<boolean> {
    const row = await this.r.get(
      `INSERT INTO duties (name, owner, lease_until) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
       WHERE duties.owner = excluded.owner OR duties.lease_until < $4
       RETURNING owner`,
      [name, lease.owner, lease.until, now],
    );
    return row?.owner === lease.owner;
  }

  async releaseDuty(name: string, owner: string): Promise<void> {
    await this.r.run('UPDATE duties SET lease_until = 0 WHERE name = $1 AND owner = $2', [name, owner]);
  }

  claimOrphans(lease: Lease, now: number, limit: number, includeOwn: boolean): Promise<SwitchOrder[]> {
    return this.tx(async (q) => {
      // Rows another instance is completing or claiming right now are skipped, never waited for.
      const rows = await q.all(
        `WITH c AS (
           SELECT id, lease_owner FROM orders
           WHERE state = 'in_flight' AND (lease_until IS NULL OR lease_until < $3 OR ($5 AND lease_owner = $1))
           ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED
         )
         UPDATE orders o SET lease_owner = $1, lease_until = $2 FROM c WHERE o.id = c.id
         RETURNING o.*, c.lease_owner AS previous_owner`,
        [lease.owner, lease.until, now, limit, includeOwn],
      );
      for (const r of rows) {
        const from = (r.previous_owner as string | null) ?? null;
        const why = from === lease.owner ? `${lease.owner} restarted while attempt ${r.attempts as number} was on the wire; verifying it by a read` : `lease of ${from ?? 'an earlier version'} ran out; ${lease.owner} takes attempt ${r.attempts as number} over and verifies it by a read`;
        await this.event(q, r.id as string, now, 'in_flight', 'in_flight', why);
      }
      return rows.sort((a, b) => Number(a.seq) - Number(b.seq)).map(orderFromRow);
    });
  }

  // ---- facts, weather, plans, notifications, keys, history ------------------------------------------------

  setMeterFlags(meterId: string, patch: Partial<MeterFlags>, actor: string, now: number): Promise<MeterFlags> {
    return this.tx(async (q) => {
      const flags = await facts.setFlags(q, meterId, patch, actor, now);
      await this.wakeHeld(q, { meterId }, now);
      return flags;
    });
  }

  addNotice(notice: Omit<NoticeRecord, 'id' | 'recordedAt'>, now: number): Promise<NoticeRecord> {
    return this.tx((q) => facts.addNotice(q, notice, now));
  }

  listNotices(meterId: string): Promise<NoticeRecord[]> {
    return facts.notices(this.r, meterId);
  }

  importMeterFacts(rows: readonly MeterFactsRow[], actor: string, now: number): Promise<{ meters: number; notices: number }> {
    return this.tx(async (q) => {
      const result = await facts.importFacts(q, rows, actor, now);
      for (const meterId of new Set(rows.filter((r) => r.flags && Object.keys(r.flags).length > 0).map((r) => r.meterId))) await this.wakeHeld(q, { meterId }, now);
      return result;
    });
  }

  declareWeather(period: Omit<WeatherPeriod, 'id'>, actor: string, now: number): Promise<WeatherPeriod> {
    return this.tx((q) => facts.declareWeather(q, period, actor, now));
  }

  liftWeather(id: string, actor: string, now: number): Promise<WeatherPeriod | undefined> {
    return this.tx(async (q) => {
      const lifted = await facts.liftWeather(q, id, actor, now);
      if (lifted) await this.wakeHeld(q, { codes: ['E_OUTSIDE_WINDOW'] }, now);
      return lifted;
    });
  }

  listWeather(activeAt?: number): Promise<WeatherPeriod[]> {
    return facts.weather(this.r, activeAt);
  }

  createPlan(draft: PlanDraft, actor: string, now: number): Promise<PlanView> {
    return this.tx((q) => plans.createPlan(q, draft, actor, now));
  }

  getPlan(planId: string): Promise<PlanView | undefined> {
    return plans.getPlan(this.r, planId);
  }

  listPlans(status?: PlanFacts['status']): Promise<PlanView[]> {
    return plans.listPlans(this.r, status);
  }

  decidePlan(planId: string, decision: 'approve' | 'reject' | 'cancel', actor: string, ctx: SubmitContext): Promise<PlanView> {
    const hooks: plans.PlanHooks = {
      submit: (q, requests, c) => this.submitInTx(q, requests, c),
      orderChanged: async (q, orderId, at) => billing.orderChanged(q, await this.order(q, orderId), at),
    };
    return this.tx((q) => plans.decidePlan(q, hooks, planId, decision, actor, ctx));
  }

  async pendingNotifications(now: number, limit: number, kindPrefixes: readonly string[]): Promise<NotificationRecord[]> {
    if (kindPrefixes.length === 0) return [];
    const rows = await this.r.all('SELECT * FROM notifications WHERE delivered_at IS NULL AND next_attempt_at <= $1 AND kind LIKE ANY($2::text[]) ORDER BY created_at LIMIT $3', [
      now,
      kindPrefixes.map((p) => `${p}%`),
      limit,
    ]);
    return rows.map(notificationFromRow);
  }

  async markNotification(id: string, now: number, result: { delivered: true } | { delivered: false; error: string; retryAt: number }): Promise<void> {
    if (result.delivered) {
      await this.tx(async (q) => {
        const row = await q.get('UPDATE notifications SET delivered_at = $1, attempts = attempts + 1, last_error = NULL WHERE id = $2 RETURNING order_id, kind', [now, id]);
        // A delivered pre-disconnect notification starts rule 2's minutes: the order is looked at again now.
        if (row && row.kind === 'pre_disconnect_notice' && row.order_id) await this.wakeHeld(q, { orderId: row.order_id as string }, now);
      });
    } else await this.r.run('UPDATE notifications SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 WHERE id = $3', [result.error, result.retryAt, id]);
  }

  async listNotifications(meterId: string): Promise<NotificationRecord[]> {
    return (await this.r.all('SELECT * FROM notifications WHERE meter_id = $1 ORDER BY created_at', [meterId])).map(notificationFromRow);
  }

  createApiKey(key: NewApiKey, actor: string, now: number): Promise<ApiKeyRecord> {
    return this.tx((q) => this.runScript(q, keys.createApiKey(key, actor, now)));
  }

  registerClients(clients: readonly { id: string; name: string }[], now: number): Promise<void> {
    return this.tx((q) => this.runScript(q, keys.registerClients(clients, now)));
  }

  rotateApiKey(id: string, sha256: string, actor: string, now: number): Promise<ApiKeyRecord | undefined> {
    return this.tx((q) => this.runScript(q, keys.rotateApiKey(id, sha256, actor, now)));
  }

  revokeApiKey(id: string, actor: string, now: number): Promise<ApiKeyRecord | undefined> {
    return this.tx((q) => this.runScript(q, keys.revokeApiKey(id, actor, now)));
  }

  findApiKey(sha256: string): Promise<(ApiKeyRecord & { sha256: string }) | undefined> {
    return this.runScript(this.r, keys.findApiKey(sha256));
  }

  listApiKeys(): Promise<ApiKeyRecord[]> {
    return this.runScript(this.r, keys.listApiKeys());
  }

  async touchApiKey(id: string, now: number): Promise<void> {
    await this.runScript(this.r, keys.touchApiKey(id, now));
  }

  async listObservations(meterId: string, limit: number): Promise<ObservationRecord[]> {
    const rows = await this.r.all('SELECT * FROM observations WHERE meter_id = $1 ORDER BY at DESC LIMIT $2', [meterId, limit]);
    return rows.map((r) => ({
      meterId,
      at: r.at as number,
      relay: r.relay as RelayState,
      source: r.source as Observation['source'],
      voltageV: (r.voltage_v as number | null) ?? undefined,
      energyWh: (r.energy_wh as number | null) ?? undefined,
    }));
  }

  /** Per limit: the meters whose readings were asked for in one turn, read by one statement. */
  private readonly energyReads = new Map<number, TurnBatch<Row[], { at: number; energyWh: number }[]>>();

  energyReadings(meterId: string, limit: number): Promise<{ at: number; energyWh: number }[]> {
    let batch = this.energyReads.get(limit);
    if (!batch) {
      batch = new TurnBatch(
        async (ids) =>
          groupByMeter(
            await this.r.all(
              `SELECT t.meter_id, x.at, x.energy_wh FROM unnest($1::text[]) AS t(meter_id) CROSS JOIN LATERAL (
                 SELECT at, energy_wh FROM observations o WHERE o.meter_id = t.meter_id AND o.energy_wh IS NOT NULL ORDER BY at DESC LIMIT $2
               ) x`,
              [ids, limit],
            ),
          ),
        (rows) => (rows ?? []).map((r) => ({ at: r.at as number, energyWh: r.energy_wh as number })).reverse(),
      );
      this.energyReads.set(limit, batch);
    }
    return batch.get(meterId);
  }

  async lastCompletedOrder(meterId: string, action: SwitchAction): Promise<SwitchOrder | undefined> {
    const r = await this.r.get(`SELECT * FROM orders WHERE meter_id = $1 AND action = $2 AND state IN ('done', 'armed', 'done_by_field') ORDER BY completed_at DESC NULLS LAST, seq DESC LIMIT 1`, [
      meterId,
      action,
    ]);
    return r ? orderFromRow(r) : undefined;
  }

  // ---- field work orders and success rates --------------------------------------------------------------

  escalateOrder(orderId: string, now: number, plan: WorkOrderPlan, slowRetryAt: number): Promise<{ order: SwitchOrder; workOrder: WorkOrder } | undefined> {
    return this.tx(async (q) => {
      const order = await this.mustLockOrder(q, orderId);
      if (!['queued', 'held', 'in_flight', 'escalated'].includes(order.state)) return undefined;
      const region = (await q.get('SELECT region FROM meters WHERE meter_id = $1', [order.meterId]))!.region as string;
      const workOrder = await work.raiseWorkOrder(q, fieldOrder(order), region, plan, now);
      if (order.state === 'queued' || order.state === 'held') {
        await this.move(q, order, 'escalated', now, `escalated to the field: ${plan.reason}`, { nextAttemptAt: Math.min(order.nextAttemptAt, slowRetryAt) });
      }
      return { order: await this.order(q, orderId), workOrder };
    });
  }

  async reconnectsNearDeadline(before: number, limit: number): Promise<SwitchOrder[]> {
    const rows = await this.r.all(
      // completed_at IS NULL (true of every order in these states) lets the statement use orders_deadline, whose rows
      // are the unfinished orders.
      `SELECT * FROM orders WHERE action = 'reconnect' AND escalated_at IS NULL AND deadline IS NOT NULL AND deadline <= $1 AND completed_at IS NULL
       AND state IN ('queued', 'held', 'in_flight') ORDER BY deadline LIMIT $2`,
      [before, limit],
    );
    return rows.map(orderFromRow);
  }

  listWorkOrders(query: { status?: WorkOrderStatus; region?: string; orderId?: string; limit: number }): Promise<WorkOrder[]> {
    return work.listWorkOrders(this.r, query);
  }

  getWorkOrder(id: string): Promise<WorkOrder | undefined> {
    return work.getWorkOrder(this.r, id);
  }

  assignWorkOrder(id: string, assignee: string, actor: string, now: number): Promise<WorkOrder> {
    return this.tx((q) => work.assignWorkOrder(q, id, assignee, actor, now));
  }

  completeWorkOrder(id: string, outcome: FieldOutcome, note: string | null, actor: string, now: number): Promise<{ workOrder: WorkOrder; order: SwitchOrder | null }> {
    return this.tx(async (q) => {
      const existing = await work.getWorkOrder(q, id);
      if (!existing) throw new MeterlineError('E_WORK_ORDER_NOT_FOUND', `work order ${id} does not exist`);
      if (existing.orderId === null) {
        // An inspection: no switch order to settle; the relay the crew left is what the meter now shows.
        const workOrder = await work.completeWorkOrder(q, id, outcome, note, actor, now);
        const relay = inspectedRelay(outcome);
        if (relay) await this.observe(q, existing.meterId, { relay, at: now, source: 'field' });
        return { workOrder, order: null };
      }
      const order = await this.mustLockOrder(q, existing.orderId);
      if (order.state === 'in_flight') throw new MeterlineError('E_ORDER_ON_WIRE', `a remote attempt for order ${order.id} is on the wire right now; report the outcome again in a few seconds`);
      const workOrder = await work.completeWorkOrder(q, id, outcome, note, actor, now);
      const restored = (outcome === 'reconnected' && order.action === 'reconnect') || (outcome === 'disconnected' && order.action === 'disconnect');
      if (restored) await this.observe(q, order.meterId, { relay: order.action === 'reconnect' ? 'connected' : 'disconnected', at: now, source: 'field' });
      if (['queued', 'held', 'escalated'].includes(order.state)) {
        if (restored) {
          await this.move(q, order, 'done_by_field', now, `done on site by ${actor} (work order ${id})${note ? `: ${note}` : ''}`, { resultRelay: order.action === 'reconnect' ? 'connected' : 'disconnected' });
        } else {
          await this.move(q, order, 'failed', now, `field visit (work order ${id}): ${outcome}${note ? `: ${note}` : ''}`);
        }
      }
      return { workOrder, order: await this.order(q, order.id) };
    });
  }

  attemptStats(since: number): Promise<AttemptStatsRow[]> {
    return work.attemptStats(this.r, since);
  }

  orderOutcomeStats(since: number): Promise<OrderOutcomeRow[]> {
    return work.orderOutcomeStats(this.r, since);
  }

  openBreaker(scope: BreakerScope, key: string, action: SwitchAction, reason: string, now: number): Promise<CircuitBreaker | undefined> {
    return this.tx((q) => work.openBreaker(q, scope, key, action, reason, now));
  }

  listBreakers(openOnly: boolean): Promise<CircuitBreaker[]> {
    return work.listBreakers(this.r, openOnly);
  }

  resetBreaker(id: string, actor: string, now: number): Promise<CircuitBreaker | undefined> {
    return this.tx(async (q) => {
      const reset = await work.resetBreaker(q, id, actor, now);
      if (reset) await this.wakeHeld(q, { codes: ['E_CIRCUIT_OPEN'] }, now);
      return reset;
    });
  }

  recordAlert(kind: string, payload: Record<string, unknown>, now: number): Promise<void> {
    return work.notify(this.r, kind, typeof payload.meterId === 'string' ? payload.meterId : '-', null, payload, now);
  }

  async listMeters(afterMeterId: string | null, limit: number): Promise<MeterView[]> {
    return (await this.r.all('SELECT * FROM meters WHERE meter_id > $1 ORDER BY meter_id LIMIT $2', [afterMeterId ?? '', limit])).map(meterFromRow);
  }

  async relayAuditFacts(meterIds: readonly string[]): Promise<Map<string, { hasOpenOrder: boolean; lastDisconnectDone: boolean; armedSince: number | null }>> {
    // The relay's orders only: a limit order says nothing of whether the relay should be open.
    const open = new Set((await this.r.all(`SELECT DISTINCT meter_id FROM orders WHERE meter_id = ANY($1::text[]) AND action IN ('disconnect', 'reconnect') AND state IN ${OPEN_STATES}`, [meterIds])).map((r) => r.meter_id as string));
    const last = new Map(
      (
        await this.r.all(
          `SELECT DISTINCT ON (meter_id) meter_id, action, state, completed_at FROM orders
           WHERE meter_id = ANY($1::text[]) AND action IN ('disconnect', 'reconnect') AND state IN ('done', 'armed', 'done_by_field')
           ORDER BY meter_id, completed_at DESC NULLS LAST, seq DESC`,
          [meterIds],
        )
      ).map((r) => [r.meter_id as string, r]),
    );
    const out = new Map<string, { hasOpenOrder: boolean; lastDisconnectDone: boolean; armedSince: number | null }>();
    for (const id of meterIds) {
      const l = last.get(id);
      out.set(id, { hasOpenOrder: open.has(id), lastDisconnectDone: l?.action === 'disconnect', armedSince: l?.state === 'armed' ? (l.completed_at as number) : null });
    }
    return out;
  }

  saveRelayAudit(run: RelayAuditRun): Promise<void> {
    return this.tx(async (q) => {
      await q.run('INSERT INTO relay_audit_runs (id, ran_at, meters, exceptions) VALUES ($1, $2, $3, $4)', [run.id, run.ranAt, run.meters, JSON.stringify(run.exceptions)]);
      await audit.appendAudit(q, run.ranAt, 'gateway', 'relay_audit.run', run.id, { meters: run.meters, exceptions: run.exceptions.length });
    });
  }

  async latestRelayAudit(): Promise<RelayAuditRun | undefined> {
    const r = await this.r.get('SELECT * FROM relay_audit_runs ORDER BY ran_at DESC LIMIT 1');
    return r ? { id: r.id as string, ranAt: r.ran_at as number, meters: r.meters as number, exceptions: JSON.parse(r.exceptions as string) as unknown[] } : undefined;
  }

  async listAlerts(limit: number, state?: AlertState): Promise<AlertRecord[]> {
    const where = state === undefined ? '' : ` AND ${ALERT_STATE_SQL[state]}`;
    return (await this.r.all(`SELECT * FROM notifications WHERE kind LIKE 'alert.%'${where} ORDER BY created_at DESC LIMIT $1`, [limit])).map(alertFromRow);
  }

  actOnAlert(id: string, act: AlertAct, note: string | null, actor: string, now: number): Promise<AlertRecord> {
    return this.tx((q) => work.actOnAlert(q, id, act, note, actor, now));
  }

  claimEpisode(claim: EpisodeClaim, now: number): Promise<{ episode: AlertEpisode; opened: boolean }> {
    return this.tx((q) => this.runScript(q, scripts.claimEpisode(claim, now)));
  }

  endEpisodes(kindPrefix: string, keep: readonly { meterId: string; kind: EpisodeKind }[], now: number): Promise<AlertEpisode[]> {
    return this.tx((q) => this.runScript(q, scripts.endEpisodes(kindPrefix, keep, now)));
  }

  listEpisodes(query: { meterId?: string; kindPrefix?: string; openOnly?: boolean; limit: number }): Promise<AlertEpisode[]> {
    return this.runScript(this.r, scripts.listEpisodes(query));
  }

  recordMeterSwap(swap: Omit<MeterSwap, 'id' | 'recordedAt'>, now: number): Promise<MeterSwap> {
    return this.tx((q) => this.runScript(q, scripts.recordMeterSwap(swap, now)));
  }

  /** Per limit: the meters whose swaps were asked for in one turn, read by one statement (as scripts.listMeterSwaps, oldest first). */
  private readonly swapReads = new Map<number, TurnBatch<Row[], MeterSwap[]>>();

  listMeterSwaps(meterId: string, limit: number): Promise<MeterSwap[]> {
    let batch = this.swapReads.get(limit);
    if (!batch) {
      batch = new TurnBatch(
        async (ids) =>
          groupByMeter(
            await this.r.all(
              `SELECT x.* FROM unnest($1::text[]) AS t(meter_id) CROSS JOIN LATERAL (
                 SELECT * FROM meter_swaps s WHERE s.meter_id = t.meter_id ORDER BY at DESC, recorded_at DESC LIMIT $2
               ) x`,
              [ids, limit],
            ),
          ),
        (rows) => (rows ?? []).map(meterSwapFromRow).reverse(),
      );
      this.swapReads.set(limit, batch);
    }
    return batch.get(meterId);
  }

  async countWorkOrdersByStatus(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const r of await this.r.all('SELECT status, COUNT(*) AS n FROM work_orders GROUP BY status')) out[r.status as string] = r.n as number;
    return out;
  }

  async mostUrgentReconnectDeadline(): Promise<number | null> {
    const r = await this.r.get(`SELECT MIN(deadline) AS d FROM orders WHERE action = 'reconnect' AND deadline IS NOT NULL AND state IN ${OPEN_STATES}`);
    return (r?.d as number | null | undefined) ?? null;
  }

  // ---- billing --------------------------------------------------------------------------------------------

  recordPayments(requests: readonly PaymentRequest[], ctx: SubmitContext, limits: PaymentLimits): Promise<{ kind: 'created' | 'replayed'; payment: PaymentRecord }[]> {
    return this.tx(async (q) => {
      const bound = new CreditBalanceBound(limits.maxCreditBalanceMinor);
      // Lock every meter the payments reach (by id or by account) up front, in id order.
      const meterIds = [...new Set(requests.flatMap((r) => (r.meterId !== null ? [r.meterId] : [])))];
      const accountIds = [...new Set(requests.flatMap((r) => (r.meterId === null && r.accountId !== null ? [r.accountId] : [])))];
      const locked = await q.all('SELECT meter_id, account_id, flags FROM meters WHERE meter_id = ANY($1::text[]) OR account_id = ANY($2::text[]) ORDER BY meter_id FOR UPDATE', [meterIds, accountIds]);
      const known = new Set(locked.map((r) => r.meter_id as string));
      const byAccount = new Map<string, string[]>();
      for (const r of locked) if (r.account_id !== null) byAccount.set(r.account_id as string, [...(byAccount.get(r.account_id as string) ?? []), r.meter_id as string]);
      const missing: { index: number; meterId: string | null; accountId: string | null }[] = [];
      const resolved = requests.map((r, index) => {
        const ids = r.meterId !== null ? (known.has(r.meterId) ? [r.meterId] : []) : (byAccount.get(r.accountId ?? '') ?? []);
        if (ids.length === 0) missing.push({ index, meterId: r.meterId, accountId: r.accountId });
        return ids;
      });
      if (missing.length > 0) {
        throw new MeterlineError('E_METER_NOT_FOUND', `${missing.length} payment(s) name meters or accounts that are not registered; nothing was recorded`, { missing: missing.slice(0, 100) });
      }
      const out: { kind: 'created' | 'replayed'; payment: PaymentRecord }[] = [];
      for (const [i, req] of requests.entries()) {
        const prior = await q.get('SELECT * FROM payments WHERE client = $1 AND idempotency_key = $2', [req.client, req.idempotencyKey]);
        if (prior) {
          if (prior.request_hash !== req.requestHash) {
            throw new MeterlineError('E_IDEMPOTENCY_CONFLICT', `Idempotency-Key "${req.idempotencyKey}" was already used for payment ${prior.id as string} with a different request; use a new key for a new payment`);
          }
          out.push({ kind: 'replayed', payment: billing.pgPaymentFromRow(prior) });
          continue;
        }
        const now = ctx.now;
        const id = `pay_${now.toString(36)}${randomBytes(5).toString('hex')}`;
        const effects: PaymentEffect[] = [];
        for (const meterId of resolved[i]!) {
          const flags = parseFlags((await q.get('SELECT flags FROM meters WHERE meter_id = $1', [meterId]))!.flags);
          if (req.kind === 'top_up' && flags.prepaymentMode) {
            // The meter row is locked (above), so no other payment changes its balance before COMMIT.
            if (!bound.knows(meterId)) bound.start(meterId, await this.creditEventsIn(q, meterId));
            const fit = bound.add(meterId, req.amountMinor);
            if (!fit.fits) throw creditBalanceLimitError([{ index: i, meterId, balanceAfterMinor: fit.balanceAfterMinor }], bound.maxMinor); // rolls the whole call back
            await this.creditEvent(q, meterId, { type: 'top_up', amount: req.amountMinor, at: req.receivedAt, ref: id }, req.client);
          }
          const open = (
            await q.all(
              `SELECT * FROM orders WHERE meter_id = $1 AND action = 'disconnect' AND reason IN ('arrears', 'credit_exhausted') AND state IN ${OPEN_STATES} ORDER BY seq FOR UPDATE`,
              [meterId],
            )
          ).map(orderFromRow);
          const cancelled: string[] = [];
          let onWire = false;
          for (const o of open) {
            if (o.state === 'in_flight') {
              onWire = true;
              continue;
            }
            await this.move(q, o, 'cancelled', now, paymentCancelReason(id, req));
            cancelled.push(o.id);
          }
          const last = await q.get(
            `SELECT action, reason FROM orders WHERE meter_id = $1 AND action IN ('disconnect', 'reconnect') AND state IN ('done', 'armed', 'done_by_field') ORDER BY completed_at DESC NULLS LAST, seq DESC LIMIT 1`,
            [meterId],
          );
          const offForNonPayment = last?.action === 'disconnect' && (last.reason === 'arrears' || last.reason === 'credit_exhausted');
          const reconnectOpen = async (): Promise<boolean> => (await q.get(`SELECT 1 FROM orders WHERE meter_id = $1 AND action = 'reconnect' AND state IN ${OPEN_STATES} LIMIT 1`, [meterId])) !== undefined;
          let reconnectOrderId: string | null = null;
          let note = cancelled.length > 0 ? 'pending disconnect cancelled' : 'recorded';
          if ((offForNonPayment || onWire) && !(await reconnectOpen())) {
            const [created] = await this.submitInTx(
              q,
              [paymentReconnectRequest(id, meterId, req)],
              ctx,
            );
            reconnectOrderId = created!.order.id;
            note = onWire ? 'a disconnect was on the wire: reconnect ordered to follow it' : 'meter off for non-payment: reconnect ordered';
          } else if (await reconnectOpen()) {
            note = 'a reconnect is already under way';
          }
          // Rule 10: the limit was the step before a cut for non-payment; paid, it is lifted.
          let limitRemovalOrderId: string | null = null;
          if (limitSetForArrears(await q.get(`SELECT reason, limit_w, state FROM orders WHERE meter_id = $1 AND action = 'limit' ORDER BY seq DESC LIMIT 1`, [meterId]))) {
            limitRemovalOrderId = (await this.submitInTx(q, [paymentLimitRemovalRequest(id, meterId, req)], ctx))[0]!.order.id;
            note += '; limit set for arrears: removal ordered';
          }
          effects.push({ meterId, cancelledOrders: cancelled, reconnectOrderId, limitRemovalOrderId, note });
        }
        const row = await q.get(
          `INSERT INTO payments (id, client, idempotency_key, request_hash, account_id, meter_id, amount_minor, kind, posted, reference, received_at, recorded_at, effects)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING *`,
          [id, req.client, req.idempotencyKey, req.requestHash, req.accountId, req.meterId, req.amountMinor, req.kind, req.posted, req.reference, req.receivedAt, now, JSON.stringify(effects)],
        );
        await audit.appendAudit(q, now, req.client, `payment.${req.kind}`, req.meterId ?? `account:${req.accountId}`, { paymentId: id, amountMinor: req.amountMinor, posted: req.posted, reference: req.reference, effects });
        out.push({ kind: 'created', payment: billing.pgPaymentFromRow(row!) });
      }
      return out;
    });
  }

  async checkPayments(requests: readonly PaymentRequest[], limits: PaymentLimits): Promise<PaymentCheck> {
    const meterIds = requests.flatMap((r) => (r.meterId !== null ? [r.meterId] : []));
    const accountIds = requests.flatMap((r) => (r.meterId === null && r.accountId !== null ? [r.accountId] : []));
    const reached = await this.r.all('SELECT meter_id, account_id, flags FROM meters WHERE meter_id = ANY($1::text[]) OR account_id = ANY($2::text[]) ORDER BY meter_id', [meterIds, accountIds]);
    const knownMeters = new Map(reached.map((r) => [r.meter_id as string, parseFlags(r.flags).prepaymentMode]));
    const byAccount = new Map<string, string[]>();
    for (const r of reached) if (r.account_id !== null) byAccount.set(r.account_id as string, [...(byAccount.get(r.account_id as string) ?? []), r.meter_id as string]);
    const prior = new Map(
      (
        await this.r.all('SELECT p.client, p.idempotency_key, p.request_hash FROM payments p JOIN unnest($1::text[], $2::text[]) AS t(c, k) ON p.client = t.c AND p.idempotency_key = t.k', [
          requests.map((r) => r.client),
          requests.map((r) => r.idempotencyKey),
        ])
      ).map((r) => [`${r.client as string}\u0000${r.idempotency_key as string}`, r.request_hash as string]),
    );
    const bound = new CreditBalanceBound(limits.maxCreditBalanceMinor);
    const out: PaymentCheck = { missing: [], conflicts: [], overLimit: [] };
    for (const [index, r] of requests.entries()) {
      const meters = r.meterId !== null ? (knownMeters.has(r.meterId) ? [r.meterId] : []) : (byAccount.get(r.accountId ?? '') ?? []);
      if (meters.length === 0) out.missing.push({ index, meterId: r.meterId, accountId: r.accountId });
      const hash = prior.get(`${r.client}\u0000${r.idempotencyKey}`);
      if (hash !== undefined && hash !== r.requestHash) out.conflicts.push({ index, key: r.idempotencyKey });
      if (hash !== undefined || r.kind !== 'top_up') continue; // a replay adds nothing
      for (const meterId of meters) {
        if (!knownMeters.get(meterId)) continue;
        if (!bound.knows(meterId)) bound.start(meterId, await this.creditEventsIn(this.r, meterId));
        const fit = bound.add(meterId, r.amountMinor);
        if (!fit.fits) out.overLimit.push({ index, meterId, balanceAfterMinor: fit.balanceAfterMinor });
      }
    }
    return out;
  }

  async listPayments(query: { client?: string; from?: number; to?: number; limit: number }): Promise<PaymentRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    const arg = (v: unknown): string => (args.push(v), `$${args.length}`);
    if (query.client) where.push(`client = ${arg(query.client)}`);
    if (query.from !== undefined) where.push(`received_at >= ${arg(query.from)}`);
    if (query.to !== undefined) where.push(`received_at < ${arg(query.to)}`);
    const rows = await this.r.all(`SELECT * FROM payments ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY received_at LIMIT ${arg(query.limit)}`, args);
    return rows.map(billing.pgPaymentFromRow);
  }

  setCallback(client: string, url: string, secret: string, now: number): Promise<CallbackSubscription> {
    return this.tx(async (q) => {
      const sub = await billing.setCallback(q, client, url, secret, now);
      await audit.appendAudit(q, now, client, 'callback.set', client, { after: { url } });
      return sub;
    });
  }

  getCallback(client: string): Promise<CallbackSubscription | undefined> {
    return billing.callback(this.r, client);
  }

  listCallbacks(): Promise<CallbackSubscription[]> {
    return billing.callbacks(this.r);
  }

  clientEvents(client: string, afterSeq: number, limit: number, orderId?: string): Promise<ClientEvent[]> {
    return billing.clientEvents(this.r, client, afterSeq, limit, orderId);
  }

  pendingClientEvents(client: string, limit: number): Promise<ClientEvent[]> {
    return billing.pendingClientEvents(this.r, client, limit);
  }

  markClientEvent(client: string, seq: number, now: number, result: { delivered: true } | { delivered: false; error: string; retryAt: number }): Promise<void> {
    return billing.markClientEvent(this.r, client, seq, now, result);
  }

  // ---- prepayment credit ----------------------------------------------------------------------------------

  appendCreditEvent(meterId: string, event: CreditEvent, actor: string): Promise<void> {
    return this.tx((q) => this.creditEvent(q, meterId, event, actor));
  }

  private async creditEvent(q: Q, meterId: string, event: CreditEvent, actor: string): Promise<void> {
    await q.run('INSERT INTO credit_events (meter_id, event, at) VALUES ($1, $2, $3)', [meterId, creditEventJson(event), event.at]);
    if (event.type !== 'consumption') await audit.appendAudit(q, event.at, actor, `credit.${event.type}`, meterId, { after: event });
  }

  creditEvents(meterId: string): Promise<CreditEvent[]> {
    return this.creditEventsIn(this.r, meterId);
  }

  private async creditEventsIn(q: Pick<Q, 'all'>, meterId: string): Promise<CreditEvent[]> {
    return (await q.all('SELECT event FROM credit_events WHERE meter_id = $1 ORDER BY seq', [meterId])).map((r) => JSON.parse(r.event as string) as CreditEvent);
  }

  async creditControl(meterId: string): Promise<CreditControlMemory> {
    const r = await this.r.get('SELECT * FROM credit_control WHERE meter_id = $1', [meterId]);
    if (!r) return { cycleRef: null, warningsSent: [], emergencyOffered: false, lastReading: null };
    return {
      cycleRef: (r.cycle_ref as string | null) ?? null,
      warningsSent: JSON.parse(r.warnings_sent as string) as number[],
      emergencyOffered: r.emergency_offered === true,
      lastReading: r.last_reading_at === null ? null : { at: r.last_reading_at as number, energyWh: r.last_reading_wh as number },
    };
  }

  async setCreditControl(meterId: string, m: CreditControlMemory): Promise<void> {
    await this.r.run(
      `INSERT INTO credit_control (meter_id, cycle_ref, warnings_sent, emergency_offered, last_reading_at, last_reading_wh) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (meter_id) DO UPDATE SET cycle_ref = excluded.cycle_ref, warnings_sent = excluded.warnings_sent,
         emergency_offered = excluded.emergency_offered, last_reading_at = excluded.last_reading_at, last_reading_wh = excluded.last_reading_wh`,
      [meterId, m.cycleRef, JSON.stringify(m.warningsSent), m.emergencyOffered, m.lastReading?.at ?? null, m.lastReading?.energyWh ?? null],
    );
  }

  // ---- per-meter DLMS keys and invocation counters (meter-key-sets.ts) ----

  putMeterKeySets(sets: readonly NewMeterKeySet[], options: { replace: boolean }, actor: string, now: number): Promise<KeySetPutOutcome[]> {
    return this.tx((q) => this.runScript(q, meterKeys.putMeterKeySets(sets, options, actor, now)));
  }

  meterKeySets(meterId: string): Promise<StoredMeterKeySet[]> {
    return this.runScript(this.r, meterKeys.meterKeySets(meterId));
  }

  meterKeySetBySystemTitle(systemTitle: string): Promise<{ meterId: string; keySetId: string } | undefined> {
    return this.runScript(this.r, meterKeys.meterKeySetBySystemTitle(systemTitle));
  }

  meterKeySetsWithoutSystemTitle(limit: number): Promise<StoredMeterKeySet[]> {
    return this.runScript(this.r, meterKeys.meterKeySetsWithoutSystemTitle(limit));
  }

  recordMeterKeySetSystemTitle(meterId: string, keySetId: string, systemTitle: string): Promise<void> {
    return this.tx((q) => this.runScript(q, meterKeys.recordMeterKeySetSystemTitle(meterId, keySetId, systemTitle)));
  }

  stageMeterKeySet(set: NewMeterKeySet, actor: string, now: number): Promise<MeterKeySetRecord> {
    return this.tx((q) => this.runScript(q, meterKeys.stageMeterKeySet(set, actor, now)));
  }

  confirmMeterKeySet(meterId: string, keySetId: string, actor: string, now: number): Promise<MeterKeySetRecord> {
    return this.tx((q) => this.runScript(q, meterKeys.confirmMeterKeySet(meterId, keySetId, actor, now)));
  }

  retireMeterKeySet(meterId: string, keySetId: string, actor: string, now: number): Promise<MeterKeySetRecord> {
    return this.tx((q) => this.runScript(q, meterKeys.retireMeterKeySet(meterId, keySetId, actor, now)));
  }

  reserveInvocationCounters(meterId: string, keySetId: string, block: number): Promise<number> {
    return this.tx((q) => this.runScript(q, meterKeys.reserveInvocationCounters(meterId, keySetId, block)));
  }

  raiseInvocationCounter(meterId: string, keySetId: string, atLeast: number): Promise<void> {
    return this.tx((q) => this.runScript(q, meterKeys.raiseInvocationCounter(meterId, keySetId, atLeast)));
  }

  reserveIdempotentWrite(principal: string, key: string, requestHash: string, now: number): Promise<{ reserved: true } | { reserved: false; prior: IdempotentAnswer }> {
    return this.runScript(this.r, answers.reserveIdempotentWrite(principal, key, requestHash, now));
  }

  getIdempotentResponse(principal: string, key: string): Promise<IdempotentAnswer | undefined> {
    return this.runScript(this.r, answers.getIdempotentAnswer(principal, key));
  }

  saveIdempotentResponse(principal: string, key: string, requestHash: string, status: number, body: unknown): Promise<void> {
    return this.runScript(this.r, answers.saveIdempotentAnswer(principal, key, requestHash, status, body));
  }

  releaseIdempotentWrite(principal: string, key: string, requestHash: string): Promise<void> {
    return this.runScript(this.r, answers.releaseIdempotentWrite(principal, key, requestHash));
  }

  // ---- audit --------------------------------------------------------------------------------------------

  appendAudit(entry: Omit<AuditEntry, 'seq' | 'hash'>): Promise<void> {
    return this.tx((q) => audit.appendAudit(q, entry.at, entry.actor, entry.action, entry.target, entry.details));
  }

  listAudit(query: AuditQuery): Promise<AuditEntry[]> {
    return audit.listAudit(this.r, query);
  }

  verifyAudit(options: { anchors?: readonly AuditAnchor[] } = {}): Promise<AuditVerification> {
    return audit.verifyAudit(this.r, this.key(), options.anchors);
  }

  auditHead(): Promise<AuditHead> {
    return audit.auditHead(this.r, this.key());
  }

  private key(): AuditKey {
    if (!this.auditKey) throw new Error('PostgresStore: call migrate() first');
    return this.auditKey;
  }
}
