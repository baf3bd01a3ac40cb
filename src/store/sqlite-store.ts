import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { admitOrder } from '../domain/admission.js';
import { decideAttempt } from '../domain/attempt-decision.js';
import { localParts } from '../domain/policy/calendar.js';
import { evaluateDisconnectGate, takesCapSlot, type GateDecision, type GateInput } from '../domain/policy/disconnect-gate.js';
import type { PolicyConfig } from '../domain/policy/policy-config.js';
import type { CreditEvent } from '../domain/prepayment/credit-ledger.js';
import { reconnectDeadline } from '../domain/deadlines.js';
import { isRelayAction, type RelayState } from '../domain/relay.js';
import {
  canTransition,
  OPEN_ORDER_STATES,
  priorityOf,
  targetRelay,
  type Attempt,
  type OpenOrderState,
  type OrderEvent,
  type OrderState,
  type SwitchOrder,
} from '../domain/switch-order.js';
import { MeterlineError } from '../errors.js';
import { orderListSql, unknownCursorMessage } from './order-list-query.js';
import { SQLITE_AUDIT_KEYED, SQLITE_AUDIT_LINKED, SQLITE_MIGRATIONS } from './sqlite-migrations.js';
import { keyTheChain, type AuditAnchor, type AuditHead } from './audit-chain.js';
import { auditKeySource, fixedAuditKey, keyForFirstKeying, keyForLog, type AuditKeySource } from './audit-key-source.js';
import { openSqliteFile } from './sqlite-open.js';
import { METER_ROW_CACHE_ROWS } from './meter-row-cache.js';
import { guardOrderWrites, ORDER_ROW_CACHE_ROWS } from './order-row-cache.js';
import { RowCache } from './row-cache.js';
import { countSqliteStatements, type StatementCounter } from './statement-counter.js';
import { freeSpaceProblem, sqliteUnavailableCause, StoreAvailability, type StoreWriteHealth } from './store-availability.js';
import {
  attemptFromRow,
  approvalProblem,
  CreditBalanceBound,
  creditEventJson,
  ESCALATION_ENDING_HOLDS,
  secondNoticeHoldReason,
  secondNoticePayload,
  GATED_STATES,
  gateInputFrom,
  gateNeeds,
  inspectedRelay,
  meterFromRow,
  notificationFromRow,
  num,
  numOrNull,
  orderAdmissionAction,
  orderAdmissionAudit,
  orderFromRow,
  orderKeyConflict,
  paymentCancelReason,
  paymentReconnectRequest,
  paymentLimitRemovalRequest,
  limitSetForArrears,
  limitFlagsAfter,
  strOrNull,
  type Row,
  alertFromRow,
  ALERT_STATE_SQL,
  dueOrderFromRow,
} from './store-rows.js';
import { creditBalanceLimitError } from '../domain/money.js';
import * as keys from './client-keys.js';
import * as answers from './idempotent-answers.js';
import * as meterKeys from './meter-key-sets.js';
import { linkEntriesOfVersion2, SqliteAuditLog } from './sqlite-audit-log.js';
import { parseFlags, SqliteMeterFacts } from './sqlite-meter-facts.js';
import { SqlitePlans } from './sqlite-plans.js';
import { SqliteWorkOrders } from './sqlite-work-orders.js';
import * as scripts from './store-scripts.js';
import { reviseOpenWorkOrder, runScriptSync, type Script } from './store-scripts.js';
import type { EpisodeKind } from '../domain/alert-episodes.js';
import { CLIENT_VISIBLE_STATES, paymentFromRow, SqliteBilling } from './sqlite-billing.js';
import { queryOrderSeries, type OrderSeriesBucket } from './order-series.js';
import type { WeatherPeriod } from '../domain/policy/calendar.js';
import type { MeterFlags, NoticeRecord, PlanFacts } from '../domain/policy/meter-facts.js';
import type { SwitchAction } from '../domain/relay.js';
import { fieldOrder, NO_REMOTE_ATTEMPT, type WorkOrderPlan } from '../domain/escalation.js';
import type { KeySetPutOutcome, MeterKeySetRecord, NewMeterKeySet, StoredMeterKeySet,
  AlertEpisode,
  EpisodeClaim,
  MeterSwap,
  ApiKeyRecord,
  IdempotentAnswer,
  NewApiKey,
  AttemptReport,
  AttemptStatsRow,
  BreakerScope,
  CircuitBreaker,
  FieldOutcome,
  OrderOutcomeRow,
  WorkOrder,
  WorkOrderStatus,
  AuditEntry,
  AuditQuery,
  AuditVerification,
  DisconnectLease,
  MeterFactsRow,
  NotificationRecord,
  ObservationRecord,
  PlanDraft,
  PlanView,
  RelayAuditRun,
  CallbackSubscription,
  ClientEvent,
  PaymentCheck,
  PaymentEffect,
  PaymentLimits,
  PaymentRecord,
  PaymentRequest,
  CreditControlMemory,
  GatewayStore,
  WakeFilter,
  MeterRecord,
  MeterView,
  Observation,
  OrderQuery,
  OrderRequest,
  SubmitContext,
  SubmitOutcome,
  DueOrder,
  Lease,
  AlertAct,
  AlertRecord,
  AlertState,
} from './store.js';

type Db = Database.Database;

interface PendingWrite<T> {
  run: () => T;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

/** The meters columns of INTEGER affinity the store writes numbers to (a non-integer would not read back as written). */
const INTEGER_METER_COLUMNS = new Set(['observed_at', 'updated_at', 'created_at']);

/** Text that may not read back from SQLite as written: a lone surrogate (not UTF-8) or a NUL. */
const NOT_AS_WRITTEN_TEXT = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]|\0/;

/** The states an order ends in (its row is not kept in the order-row cache). */
const TERMINAL_STATES: ReadonlySet<OrderState> = new Set(['done', 'armed', 'failed', 'done_by_field', 'cancelled', 'superseded', 'refused']);

/** Whether `v`, written to a column of declared `type`, reads back from SQLite exactly as written (see writtenOrderRow). */
function readsBackAsWritten(v: unknown, type: string): boolean {
  if (v === null) return true;
  if (type === 'TEXT') return typeof v === 'string' && !NOT_AS_WRITTEN_TEXT.test(v);
  if (type === 'INTEGER') return typeof v === 'number' && Number.isSafeInteger(v) && !Object.is(v, -0);
  return false;
}

/** An order event's values: order_id, at, from_state, to_state, reason. */
type OrderEventArgs = [string, number, string | null, string, string | null];

/** Order events written by one INSERT at most (5 values each: well under SQLite's bound on a statement's parameters). */
const EVENTS_PER_INSERT = 100;

/** A meter's last readings with an energy register, newest first (the consumption check's): index entries only (sqlite-migrations.ts). */
export const SQLITE_ENERGY_READINGS = 'SELECT at, energy_wh FROM observations WHERE meter_id = ? AND energy_wh IS NOT NULL ORDER BY at DESC LIMIT ?';

/** Writes committed in one transaction, one event-loop turn, at most. */
const FLUSH_BATCH = 500;

/**
 * The embedded store: SQLite in WAL mode. Writes (order admission, leases, attempt results, observations) are coalesced:
 * everything queued in one turn of the event loop (up to FLUSH_BATCH) commits in one transaction, and each caller's promise
 * resolves only after that commit, so "written before acted on" still holds.
 */
export class SqliteStore implements GatewayStore {
  private readonly db: Db;
  private pending: PendingWrite<unknown>[] = [];
  private flushScheduled = false;
  private closed = false;
  private prepared: ReturnType<SqliteStore['prepare']> | undefined;
  private parts: { audit: SqliteAuditLog; facts: SqliteMeterFacts; plans: SqlitePlans; work: SqliteWorkOrders; billing: SqliteBilling } | undefined;
  /** Recently read meter rows, kept in step with every write to `meters` (meter-row-cache.ts). */
  private readonly meterRows = new RowCache(METER_ROW_CACHE_ROWS);
  /** Open orders' rows, kept in step with every write to `orders` (order-row-cache.ts). */
  private readonly orderRows = new RowCache(ORDER_ROW_CACHE_ROWS);
  /** Prepare a statement that writes `orders` whose caller keeps `orderRows` in step itself (order-row-cache.ts). */
  private readonly followed: (sql: string) => Database.Statement;

  private readonly auditKeySource: AuditKeySource;
  /** Whether writes go through (a full disk or a read-only file system answers E_STORE_UNAVAILABLE, and /healthz says so). */
  private readonly availability: StoreAvailability;

  /**
   * Opens (creating) the file; E_STORE_OPEN names the path and the cause when it cannot. `auditKey`: where the audit
   * chain's key comes from; by default `audit.key` beside the database file, made there (mode 0600) when the log is
   * first keyed (the gateway and the verify command pass their configured source).
   */
  constructor(
    readonly path: string,
    options: { auditKey?: AuditKeySource; countStatements?: StatementCounter } = {},
  ) {
    this.auditKeySource = options.auditKey ?? (path === ':memory:' ? fixedAuditKey() : auditKeySource({ file: join(dirname(path), 'audit.key'), mayCreate: true }));
    this.db = openSqliteFile(path, (db) => {
      // Off by default: only the bench counts statements (statement-counter.ts).
      if (options.countStatements) countSqliteStatements(db, options.countStatements);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      // 2 MB of SQLite's own page cache instead of better-sqlite3's 16 MB: the hot rows (meters, open orders) are kept
      // by the store's row caches and the file's pages by the OS, so the larger cache only held RSS (15 MiB at 1M meters).
      db.pragma('cache_size = -2000');
    });
    // From here on, a statement that writes `orders` and is not `followed` empties the order-row cache when run.
    this.followed = guardOrderWrites(this.db, this.orderRows).followed;
    this.availability = new StoreAvailability(`the SQLite file ${path}`, sqliteUnavailableCause, () => (path === ':memory:' ? null : freeSpaceProblem(path)));
  }

  writeHealth(): StoreWriteHealth {
    return this.availability.health();
  }

  /** The parts that need the schema: available once migrate() has run. */
  private get p(): NonNullable<SqliteStore['parts']> {
    if (!this.parts) throw new Error('SqliteStore: call migrate() first');
    return this.parts;
  }

  private get s(): ReturnType<SqliteStore['prepare']> {
    this.prepared ??= this.prepare();
    return this.prepared;
  }

  private prepare() {
    const db = this.db;
    // Statements that write `orders`, each followed by the order-row cache where it runs.
    const follow = this.followed;
    return {
      getMeter: db.prepare('SELECT * FROM meters WHERE meter_id = ?'),
      upsertMeter: db.prepare(
        `INSERT INTO meters (meter_id, profile_id, link, region, address, account_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (meter_id) DO UPDATE SET profile_id = excluded.profile_id, link = excluded.link,
           region = excluded.region, address = excluded.address, account_id = COALESCE(excluded.account_id, meters.account_id),
           updated_at = excluded.updated_at
         WHERE meters.profile_id IS NOT excluded.profile_id OR meters.link IS NOT excluded.link
           OR meters.region IS NOT excluded.region OR meters.address IS NOT excluded.address
           OR (excluded.account_id IS NOT NULL AND meters.account_id IS NOT excluded.account_id)`,
      ),
      observe: db.prepare(
        `UPDATE meters SET observed_relay = ?, observed_at = ?, observed_source = ?,
           voltage_v = COALESCE(?, voltage_v), energy_wh = COALESCE(?, energy_wh), updated_at = ?
         WHERE meter_id = ? AND (observed_at IS NULL OR observed_at <= ?)`,
      ),
      setDesired: db.prepare('UPDATE meters SET desired_relay = ?, desired_order_id = ?, updated_at = ? WHERE meter_id = ?'),
      getOrder: db.prepare('SELECT * FROM orders WHERE id = ?'),
      openForMeter: db.prepare(
        `SELECT * FROM orders WHERE meter_id = ? AND state IN ('accepted','held','queued','in_flight','escalated') ORDER BY seq`,
      ),
      maxSeq: db.prepare('SELECT COALESCE(MAX(seq), 0) AS m FROM orders'),
      insertOrder: follow(
        `INSERT INTO orders (id, seq, meter_id, action, reason, note, requested_by, state, state_reason, priority, urgent, link,
           created_at, updated_at, not_before, deadline, payment_at, attempts, next_attempt_at, superseded_by, completed_at, result_relay, plan_id, origin, reference, limit_w)
         VALUES (@id, @seq, @meter_id, @action, @reason, @note, @requested_by, @state, @state_reason, @priority, @urgent, @link,
           @created_at, @updated_at, @not_before, @deadline, @payment_at, @attempts, @next_attempt_at, @superseded_by, @completed_at, @result_relay, @plan_id, @origin, @reference, @limit_w)`,
      ),
      moveOrder: follow(
        `UPDATE orders SET state = @to, state_reason = @reason, updated_at = @now,
           completed_at = CASE WHEN @terminal = 1 THEN @now ELSE completed_at END,
           next_attempt_at = COALESCE(@nextAttemptAt, next_attempt_at),
           result_relay = COALESCE(@resultRelay, result_relay)
         WHERE id = @id AND state = @from`,
      ),
      markSuperseding: follow('UPDATE orders SET superseded_by = ?, updated_at = ? WHERE id = ? AND superseded_by IS NULL'),
      setDeadline: db.prepare('UPDATE orders SET deadline = ?, urgent = ?, priority = ? WHERE id = ?'),
      insertEvent: db.prepare('INSERT INTO order_events (order_id, at, from_state, to_state, reason) VALUES (?, ?, ?, ?, ?)'),
      insertObservation: db.prepare('INSERT INTO observations (meter_id, at, relay, source, voltage_v, energy_wh) VALUES (?, ?, ?, ?, ?, ?)'),
      getIdem: db.prepare('SELECT request_hash, order_id FROM idempotency_keys WHERE principal = ? AND key = ?'),
      insertIdem: db.prepare('INSERT INTO idempotency_keys (principal, key, request_hash, order_id, created_at) VALUES (?, ?, ?, ?, ?)'),
      due: db.prepare(
        // INDEXED BY: without ANALYZE statistics the planner would pick orders_state and sort every queued order.
        // o.*: the rows go to the order-row cache, where the lease (beginAttempts) finds them (see dueOrders).
        `SELECT o.* FROM orders o INDEXED BY orders_queue
         WHERE o.state IN ('queued', 'held', 'escalated') AND o.next_attempt_at <= @now AND o.not_before <= @now
           AND NOT EXISTS (SELECT 1 FROM orders f WHERE f.meter_id = o.meter_id AND f.state = 'in_flight')
           AND o.link NOT IN (SELECT value FROM json_each(@exclude))
         ORDER BY o.priority DESC, o.deadline IS NULL, o.deadline, o.seq
         LIMIT @limit`,
      ),
      begin: follow(
        `UPDATE orders SET state = 'in_flight', attempts = attempts + 1, updated_at = @now, state_reason = NULL, lease_owner = @owner, lease_until = @until
         WHERE id = @id AND state IN ('queued', 'escalated')
           AND NOT EXISTS (SELECT 1 FROM orders f WHERE f.meter_id = orders.meter_id AND f.state = 'in_flight')`,
      ),
      insertAttempt: db.prepare('INSERT INTO attempts (order_id, attempt, started_at) VALUES (?, ?, ?)'),
      finishAttempt: db.prepare(
        `UPDATE attempts SET ended_at = @endedAt, outcome = @outcome, latency_ms = @latencyMs, observed_relay = @observedRelay,
           command_evidence = @commandEvidence, read_evidence = @readEvidence, detail = @detail
         WHERE order_id = @orderId AND attempt = @attempt AND ended_at IS NULL`,
      ),
      release: follow(
        `UPDATE orders SET state = 'queued', attempts = attempts - 1, next_attempt_at = @nextAttemptAt, state_reason = @reason, updated_at = @now
         WHERE id = @id AND state = 'in_flight' AND attempts = @attempt AND lease_owner IS @owner`,
      ),
      deleteOpenAttempt: db.prepare('DELETE FROM attempts WHERE order_id = ? AND attempt = ? AND ended_at IS NULL'),
      inFlight: db.prepare(`SELECT * FROM orders WHERE state = 'in_flight' ORDER BY seq`),
      renewLeases: follow(`UPDATE orders SET lease_until = @until WHERE state = 'in_flight' AND lease_owner = @owner AND id IN (SELECT value FROM json_each(@ids))`),
      orphans: db.prepare(
        `SELECT * FROM orders WHERE state = 'in_flight' AND (lease_until IS NULL OR lease_until < @now OR (@includeOwn AND lease_owner = @owner))
         ORDER BY seq LIMIT @limit`,
      ),
      claim: follow(`UPDATE orders SET lease_owner = @owner, lease_until = @until WHERE id = @id`),
      attempts: db.prepare('SELECT * FROM attempts WHERE order_id = ? ORDER BY attempt'),
      events: db.prepare('SELECT * FROM order_events WHERE order_id = ? ORDER BY seq'),
      counts: db.prepare('SELECT state, COUNT(*) AS n FROM orders GROUP BY state'),
      openCounts: db.prepare(`SELECT state, COUNT(*) AS n FROM orders WHERE state IN (${OPEN_ORDER_STATES.map((st) => `'${st}'`).join(', ')}) GROUP BY state`),
      seqOf: db.prepare('SELECT seq FROM orders WHERE id = ?'),
      meterInFlight: db.prepare(`SELECT 1 FROM orders WHERE meter_id = ? AND state = 'in_flight'`),
    };
  }

  async migrate(): Promise<void> {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
    const row = this.prep('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations').get() as { v: number };
    let audit: SqliteAuditLog | undefined;
    for (let v = row.v; v < SQLITE_MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(SQLITE_MIGRATIONS[v]!);
        // The chain's one-time steps, each in the transaction of the migration it belongs to, never at a later start.
        if (v === SQLITE_AUDIT_LINKED) linkEntriesOfVersion2(this.db);
        if (v === SQLITE_AUDIT_KEYED) {
          const key = keyForFirstKeying(this.auditKeySource);
          audit = new SqliteAuditLog(this.db);
          audit.useKey(key);
          this.runScript(keyTheChain(key, Date.now()), audit);
        }
        this.prep('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(v + 1, Date.now());
      })();
    }
    if (!audit) {
      audit = new SqliteAuditLog(this.db);
      audit.useKey(keyForLog(this.auditKeySource, audit.keying()));
    }
    const facts = new SqliteMeterFacts(this.db, audit, (meterId) => this.meterRows.forget(meterId));
    this.parts = {
      audit,
      facts,
      plans: new SqlitePlans(this.db, audit, (reqs, ctx) => this.submitSync(reqs, ctx), (orderId, at) => this.p.billing.orderChanged(orderFromRow(this.s.getOrder.get(orderId) as Row), at), (orderId, at, from, to, reason) => this.event(orderId, at, from, to, reason)),
      work: new SqliteWorkOrders(this.db, audit),
      billing: new SqliteBilling(this.db),
    };
  }

  /** A transaction rolled back: the caches may hold rows it wrote. */
  private forgetCachedRows(): void {
    this.meterRows.clear();
    this.orderRows.clear();
    this.parts?.audit.forgetHead();
    this.parts?.billing.forgetSeqs();
  }

  /** The order's row (`SELECT *`), from the cache when it holds it. Shared: never change it. */
  private orderRow(orderId: string): Row | undefined {
    return this.orderRows.get(orderId) ?? (this.s.getOrder.get(orderId) as Row | undefined);
  }

  /** After a write of order `orderId`: keep its row as written when known (and the order still open), else forget it. */
  private followOrderWrite(orderId: string, written: Row | undefined): void {
    if (written !== undefined && !TERMINAL_STATES.has(written.state as OrderState)) this.orderRows.put(orderId, written);
    else this.orderRows.forget(orderId);
  }

  /** A statement prepared (once) to write one order, by its id: the caller forgets that order's row (followOrderWrite). */
  private prepFollowed(sql: string): Database.Statement {
    const key = `followed:${sql}`;
    let stmt = this.statements.get(key);
    if (!stmt) {
      stmt = this.followed(sql);
      this.statements.set(key, stmt);
    }
    return stmt;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flushNow();
    this.closed = true;
    this.db.close();
  }

  private readonly statements = new Map<string, Database.Statement>();

  /** A prepared statement, prepared once per SQL text (and pluck mode) and reused: preparing is not free. */
  private prep(sql: string, pluck = false): Database.Statement {
    const key = pluck ? `pluck:${sql}` : sql;
    let stmt = this.statements.get(key);
    if (!stmt) {
      stmt = pluck ? this.db.prepare(sql).pluck() : this.db.prepare(sql);
      this.statements.set(key, stmt);
    }
    return stmt;
  }

  /** Run a script written for both stores (store-scripts.ts) on this connection, synchronously. */
  private runScript<T>(script: Script<T>, audit?: SqliteAuditLog): T {
    return runScriptSync(script, (step) => {
      if ('lock' in step) return []; // the single writer already serialises writes
      if ('audit' in step) {
        (audit ?? this.p.audit).append(step.audit.at, step.audit.actor, step.audit.action, step.audit.target, step.audit.details);
        return [];
      }
      const stmt = this.prep(step.sql);
      if (stmt.reader) return stmt.all(...step.args) as Row[];
      stmt.run(...step.args);
      return [];
    });
  }

  // ---- coalesced writes -------------------------------------------------------------------------------

  private enqueue<T>(run: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new Error('store closed'));
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ run, resolve, reject } as PendingWrite<unknown>);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    // At most FLUSH_BATCH writes per event-loop turn, so a burst of writes does not hold the loop (and the API's
    // accept queue) for long; the rest go in the next turn.
    const batch = this.pending.splice(0, FLUSH_BATCH);
    if (this.pending.length > 0) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    if (batch.length === 0) return;
    let outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    // One transaction for the batch. Almost always every write succeeds: run them plainly. If one throws, the
    // whole batch rolls back and runs again with each write in its own savepoint, so the failing write rolls back
    // only itself and the others still commit. (A write is a function of the database and its arguments, so
    // running it twice is as running it once.)
    // The writes' order events are kept until the batch's writes have run, then written in a few multi-row INSERTs,
    // in the same transaction (so in the order made: each order's history reads back as written).
    const events: OrderEventArgs[] = [];
    this.events = events;
    // The audit log's head and the change feed's last numbers are kept in memory for the batch (forgetCachedRows
    // forgets them on every rollback below).
    this.parts?.audit.hold();
    this.parts?.billing.hold();
    try {
      this.db.transaction(() => {
        for (const w of batch) outcomes.push({ ok: true, value: w.run() });
        this.writeEvents(events);
      })();
    } catch {
      events.length = 0;
      // Rolled back: the cache may hold rows the rollback undid (and will again for a write that fails below).
      this.forgetCachedRows();
      outcomes = [];
      try {
        this.db.transaction(() => {
          for (const w of batch) {
            const mark = events.length;
            try {
              outcomes.push({ ok: true, value: this.db.transaction(w.run)() });
            } catch (error) {
              events.length = mark; // the failed write's events go with it
              // A full disk or an I/O error can make SQLite roll the whole transaction back by itself: the writes
              // before were undone, and the ones after would run outside any transaction. The batch has failed.
              this.forgetCachedRows();
              if (!this.db.inTransaction) throw error;
              outcomes.push({ ok: false, error });
            }
          }
          this.writeEvents(events);
        })();
      } catch (error) {
        this.forgetCachedRows();
        // The batch itself could not commit (the disk is full, the file is gone): every write in it failed.
        outcomes = batch.map(() => ({ ok: false as const, error }));
      }
    } finally {
      this.events = null;
      this.parts?.audit.release();
      this.parts?.billing.release();
    }
    if (outcomes.some((o) => o.ok)) this.availability.succeeded();
    batch.forEach((w, i) => {
      const o = outcomes[i]!;
      if (o.ok) w.resolve(o.value);
      else w.reject(this.availability.failed(o.error));
    });
  }

  /** The order events of the batch being written (flush), kept to be written together; null outside a batch. */
  private events: OrderEventArgs[] | null = null;

  /** One event of an order's history: kept with the batch's (flush), or written at once outside a batch. */
  private event(orderId: string, at: number, from: OrderState | string | null, to: OrderState | string, reason: string | null): void {
    if (this.events !== null) this.events.push([orderId, at, from, to, reason]);
    else this.s.insertEvent.run(orderId, at, from, to, reason);
  }

  /** Write the batch's events in the order made, EVENTS_PER_INSERT to a statement. */
  private writeEvents(events: OrderEventArgs[]): void {
    for (let i = 0; i < events.length; i += EVENTS_PER_INSERT) {
      const rows = events.slice(i, i + EVENTS_PER_INSERT);
      this.eventInsert(rows.length).run(rows.flat());
    }
    events.length = 0;
  }

  /** INSERT of `n` order events (prepared once per n). */
  private eventInsert(n: number): Database.Statement {
    return this.prep(`INSERT INTO order_events (order_id, at, from_state, to_state, reason) VALUES ${Array.from({ length: n }, () => '(?, ?, ?, ?, ?)').join(', ')}`);
  }

  private async flushNow(): Promise<void> {
    while (this.pending.length > 0) this.flush();
  }

  // ---- meters -----------------------------------------------------------------------------------------

  async upsertMeters(meters: readonly MeterRecord[], now: number): Promise<void> {
    try {
      this.db.transaction(() => {
        for (const m of meters) {
          this.s.upsertMeter.run(m.meterId, m.profileId, m.link, m.region, m.address ?? null, m.accountId ?? null, now, now);
          this.meterRows.forget(m.meterId);
        }
      })();
    } catch (err) {
      this.forgetCachedRows();
      throw this.availability.failed(err);
    }
    this.availability.succeeded();
  }

  async getMeter(meterId: string): Promise<MeterView | undefined> {
    const r = this.meterRow(meterId);
    return r ? meterFromRow(r) : undefined;
  }

  /** The meter's row (`SELECT *`), from the cache when it holds it. Shared: never change it. */
  private meterRow(meterId: string): Row | undefined {
    let row = this.meterRows.get(meterId);
    if (row === undefined) {
      row = this.s.getMeter.get(meterId) as Row | undefined;
      if (row !== undefined) this.meterRows.put(meterId, row);
    }
    return row;
  }

  /** The meter no longer wants what `orderId` wanted (that order is cancelled or refused). */
  private clearDesired(meterId: string, orderId: string, now: number): void {
    this.prep('UPDATE meters SET desired_relay = NULL, desired_order_id = NULL, updated_at = ? WHERE meter_id = ? AND desired_order_id = ?').run(now, meterId, orderId);
    this.meterRows.forget(meterId);
  }

  /** Set a meter's desired relay (and the order that wants it). */
  private setDesired(meterId: string, relay: RelayState | null, orderId: string | null, now: number): void {
    const changed = this.s.setDesired.run(relay, orderId, now, meterId).changes === 1;
    this.followMeterWrite(meterId, changed, { desired_relay: relay, desired_order_id: orderId, updated_at: now });
  }

  /**
   * After an UPDATE of one meter row: the cached row (if any) takes the values the statement wrote, when they read
   * back exactly as written (integers for INTEGER columns, finite numbers other than -0 for REAL ones, text); any
   * other value, or a statement that changed nothing, makes the cache forget the row (read again next time).
   * (RETURNING * would hand the row back, but costs SQLite a temporary table per statement: more than the read it saves.)
   */
  private followMeterWrite(meterId: string, changed: boolean, values: Row): void {
    const row = this.meterRows.get(meterId);
    if (row === undefined) return;
    // Column by column, without an array of entries per write (issue 19: two meter writes per order on the journal's thread).
    let exact = true;
    for (const column in values) {
      const v = values[column];
      if (v === null || typeof v === 'string') continue;
      if (typeof v !== 'number' || !(INTEGER_METER_COLUMNS.has(column) ? Number.isSafeInteger(v) : Number.isFinite(v) && !Object.is(v, -0))) {
        exact = false;
        break;
      }
    }
    if (changed && exact) this.meterRows.put(meterId, { ...row, ...values });
    else this.meterRows.forget(meterId);
  }

  async existingMeterIds(meterIds: readonly string[]): Promise<Set<string>> {
    const found = new Set<string>();
    const stmt = this.prep('SELECT meter_id FROM meters WHERE meter_id IN (SELECT value FROM json_each(?))', true);
    for (let i = 0; i < meterIds.length; i += 5000) {
      for (const id of stmt.all(JSON.stringify(meterIds.slice(i, i + 5000))) as string[]) found.add(id);
    }
    return found;
  }

  private observe(meterId: string, o: Observation): void {
    const changed = this.s.observe.run(o.relay, o.at, o.source, o.voltageV ?? null, o.energyWh ?? null, o.at, meterId, o.at).changes === 1;
    if (!changed) {
      // An older reading than the one recorded: nothing changed, and the cached row (if any) is still the meter's.
    } else if (this.meterRows.has(meterId)) {
      const before = this.meterRows.get(meterId)!;
      // COALESCE(?, column): a reading without a voltage or an energy register keeps the last one (NaN binds as NULL).
      const keep = (v: number | undefined, column: string) => (v === undefined || v === null || Number.isNaN(v) ? before[column] : v);
      this.followMeterWrite(meterId, true, {
        observed_relay: o.relay, observed_at: o.at, observed_source: o.source,
        voltage_v: keep(o.voltageV ?? undefined, 'voltage_v'), energy_wh: keep(o.energyWh ?? undefined, 'energy_wh'), updated_at: o.at,
      });
    }
    this.s.insertObservation.run(meterId, o.at, o.relay, o.source, o.voltageV ?? null, o.energyWh ?? null);
  }

  recordObservation(meterId: string, observation: Observation): Promise<void> {
    return this.enqueue(() => this.observe(meterId, observation));
  }

  // ---- orders -----------------------------------------------------------------------------------------

  /** One state change with its history event (and the billing change feed's); returns the order as it now is. */
  private move(order: SwitchOrder, to: OrderState, now: number, reason: string | null, extra: { nextAttemptAt?: number; resultRelay?: RelayState | null } = {}, row?: Row): SwitchOrder {
    if (!canTransition(order.state, to)) {
      throw new Error(`illegal order transition ${order.state} → ${to} for ${order.id}`);
    }
    const terminal = TERMINAL_STATES.has(to);
    const nextAttemptAt = extra.nextAttemptAt ?? null;
    const resultRelay = extra.resultRelay ?? null;
    const changed = this.s.moveOrder.run({ id: order.id, from: order.state, to, reason, now, terminal: terminal ? 1 : 0, nextAttemptAt, resultRelay }).changes;
    if (changed !== 1) throw new Error(`order ${order.id} was not in state ${order.state}`);
    this.event(order.id, now, order.state, to, reason);
    // The row as the UPDATE left it, from `row` (the order's row before it) and what the statement wrote; read when that cannot be told.
    const written = row === undefined ? undefined : this.writtenOrderRow(row, {
      state: to,
      state_reason: reason,
      updated_at: now,
      completed_at: terminal ? now : row.completed_at,
      next_attempt_at: nextAttemptAt ?? row.next_attempt_at,
      result_relay: resultRelay ?? row.result_relay,
    });
    this.followOrderWrite(order.id, written);
    const after = orderFromRow(written ?? (this.s.getOrder.get(order.id) as Row));
    if (CLIENT_VISIBLE_STATES.has(to)) this.p.billing.orderChanged(after, now);
    return after;
  }

  /** orders' columns: name → declared type and default (PRAGMA table_info), for writtenOrderRow. */
  private orderColumnInfo: Map<string, { type: string; dflt: unknown }> | undefined;

  /**
   * The orders row as SQLite now holds it after a write, made from `values` (by column) over `base` (the row before;
   * null for an INSERT, whose other columns take their defaults), without reading it back: RETURNING * costs SQLite a
   * temporary table per statement (~30 µs) and a SELECT * of the row ~20 µs. Only when every value reads back exactly
   * as written: text (well-formed, without NUL) or NULL in a TEXT column, a safe integer or NULL in an INTEGER one, and
   * (for an INSERT) no column left out that has a default other than NULL. Otherwise undefined: read the row.
   */
  private writtenOrderRow(base: Row | null, values: Row): Row | undefined {
    this.orderColumnInfo ??= new Map((this.prep('PRAGMA table_info(orders)').all() as { name: string; type: string; dflt_value: unknown }[]).map((c) => [c.name, { type: c.type.toUpperCase(), dflt: c.dflt_value }]));
    if (base !== null) {
      // `base` is a row as SQLite holds it (read, or made here): only the values written need a look.
      for (const column in values) {
        const info = this.orderColumnInfo.get(column);
        if (info === undefined || !readsBackAsWritten(values[column], info.type)) return undefined;
      }
      return { ...base, ...values };
    }
    const row: Row = {};
    for (const [column, info] of this.orderColumnInfo) {
      let v: unknown;
      if (column in values) v = values[column];
      else if (info.dflt === null) v = null;
      else return undefined;
      if (!readsBackAsWritten(v, info.type)) return undefined;
      row[column] = v;
    }
    for (const column in values) if (!this.orderColumnInfo.has(column)) return undefined;
    return row;
  }

  submitOrders(requests: readonly OrderRequest[], ctx: SubmitContext): Promise<SubmitOutcome[]> {
    return this.enqueue(() => this.submitSync(requests, ctx));
  }

  /** Admission, inside a transaction: idempotency, latest intent wins, then the disconnect rules. */
  private submitSync(requests: readonly OrderRequest[], ctx: SubmitContext): SubmitOutcome[] {
    let seq = (this.s.maxSeq.get() as { m: number }).m;
    const out: SubmitOutcome[] = [];
    for (const req of requests) {
      if (req.idempotencyKey !== null) {
        const prior = this.s.getIdem.get(req.requestedBy, req.idempotencyKey) as { request_hash: string; order_id: string } | undefined;
        if (prior) {
          if (prior.request_hash !== req.requestHash) {
            throw orderKeyConflict(req.idempotencyKey!, prior.order_id);
          }
          out.push({ kind: 'replayed', order: orderFromRow(this.s.getOrder.get(prior.order_id) as Row) });
          continue;
        }
      }
      const meterRow = this.meterRow(req.meterId);
      if (!meterRow) {
        throw new MeterlineError('E_METER_NOT_FOUND', `meter ${req.meterId} is not registered; register it first (PUT /v1/meters/${req.meterId})`, {
          meterId: req.meterId,
        });
      }
      const now = ctx.now;
      const open = (this.s.openForMeter.all(req.meterId) as Row[]).map(orderFromRow);
      const ownDeadline = req.action === 'reconnect' ? reconnectDeadline(req.paymentAt, now, ctx.reconnectLimitHours) : null;
      const decision = admitOrder({ action: req.action, reason: req.reason, urgent: req.urgent, deadline: ownDeadline }, open);
      const id = ctx.newOrderId();
      seq += 1;
      // A reconnect the admission queues is written queued at once, one write fewer; its history still reads
      // accepted → queued.
      const queuedReason = decision.supersedeAfterAttempt.length > 0 ? `waiting for ${decision.supersedeAfterAttempt.join(', ')} to leave the wire` : null;
      const direct = req.action === 'reconnect' && decision.state === 'queued';
      // The row by column, as written (attempts 0; superseded_by and result_relay NULL; the rest by their defaults).
      const values: Row = {
        id,
        seq,
        meter_id: req.meterId,
        action: req.action,
        reason: req.reason,
        note: req.note,
        requested_by: req.requestedBy,
        state: direct ? 'queued' : 'accepted',
        state_reason: direct ? queuedReason : null,
        priority: priorityOf(req.action, decision.urgent, req.limitW ?? null),
        urgent: decision.urgent ? 1 : 0,
        link: meterRow.link as string,
        created_at: now,
        updated_at: now,
        not_before: req.notBefore ?? now,
        deadline: decision.deadline,
        payment_at: req.paymentAt,
        attempts: 0,
        next_attempt_at: req.notBefore ?? now,
        superseded_by: null,
        completed_at: null,
        result_relay: null,
        plan_id: req.planId ?? null,
        origin: req.origin ?? 'api',
        reference: req.reference ?? null,
        limit_w: req.action === 'limit' ? (req.limitW ?? null) : null,
      };
      this.s.insertOrder.run(values);
      // Written plainly, not RETURNING * (a temporary table per statement, ~30 µs), and not read back when the row is known.
      const orderRow = this.writtenOrderRow(null, values) ?? (this.s.getOrder.get(id) as Row);
      this.followOrderWrite(id, orderRow);
      let order = orderFromRow(orderRow);
      this.event(id, now, null, 'accepted', `requested by ${req.requestedBy}: ${req.action} (${req.reason})`);
      if (direct) this.event(id, now, 'accepted', 'queued', queuedReason);
      // The disconnect rules (and a limit's: disconnect-gate.ts) apply from the first moment; a refused order supersedes nothing.
      const gate = req.action !== 'reconnect' && decision.state === 'queued' ? evaluateDisconnectGate(this.gateInput(order, now, 'admission', ctx.policy)) : null;
      let outcome: string = decision.state;
      if (decision.state === 'refused') {
        order = this.move(order, 'refused', now, `${decision.refusal!.code}: ${decision.refusal!.message}`, {}, orderRow);
      } else if (gate?.verdict === 'refuse' || gate?.verdict === 'cancel') {
        outcome = 'refused';
        order = this.move(order, 'refused', now, `${gate.code}: ${gate.message}`, {}, orderRow);
      } else {
        for (const oldId of decision.supersedeNow) {
          const old = orderFromRow(this.s.getOrder.get(oldId) as Row);
          this.s.markSuperseding.run(id, now, oldId);
          this.orderRows.forget(oldId);
          this.move(old, 'superseded', now, `superseded by ${id} (latest intent wins)`);
        }
        for (const oldId of decision.supersedeAfterAttempt) {
          this.s.markSuperseding.run(id, now, oldId);
          this.orderRows.forget(oldId);
          this.event(oldId, now, 'in_flight', 'in_flight', `superseded by ${id} once the attempt on the wire ends`);
        }
        if (gate?.verdict === 'hold') {
          outcome = 'held';
          order = this.move(order, 'held', now, `${gate.code}: ${gate.message}`, { nextAttemptAt: gate.until }, orderRow);
        } else if (!direct) {
          order = this.move(order, 'queued', now, queuedReason, {}, orderRow);
        }
        if (isRelayAction(req.action)) this.setDesired(req.meterId, targetRelay(req.action), id, now);
      }
      if (req.idempotencyKey !== null) this.s.insertIdem.run(req.requestedBy, req.idempotencyKey, req.requestHash, id, now);
      this.p.audit.append(now, req.requestedBy, orderAdmissionAction(req), req.meterId, orderAdmissionAudit(req, id, outcome, order.stateReason));
      out.push({ kind: 'created', order });
    }
    return out;
  }

  // ---- the disconnect rules ------------------------------------------------------------------------------

  /** Everything the gate needs about one order, read fresh. */
  private gateInput(order: SwitchOrder, now: number, stage: GateInput['stage'], policy: PolicyConfig): GateInput {
    const meter = this.meterRow(order.meterId)!;
    const today = localParts(now, policy.windows.timezone).date;
    const needs = gateNeeds(order);
    return gateInputFrom(order, now, stage, policy, {
      meter,
      capUsage: this.prep('SELECT COALESCE(SUM(used), 0) AS overall, COALESCE(SUM(CASE WHEN region = ? THEN used END), 0) AS region FROM cap_usage WHERE day = ?').get(meter.region, today) as {
        overall: number;
        region: number;
      },
      plan: (order.planId ? this.p.plans.facts(order.planId) : null) ?? null,
      notices: this.p.facts.notices(order.meterId),
      weather: this.p.facts.weather(now),
      breakers: this.p.work.breakers(true),
      secondNotice: needs.secondNotice
        ? (this.prep(`SELECT * FROM notifications WHERE order_id = ? AND kind = 'pre_disconnect_notice' ORDER BY created_at DESC LIMIT 1`).get(order.id) as Row | undefined)
        : undefined,
      creditEvents: needs.credit ? this.creditEventsSync(order.meterId) : null,
    });
  }

  /**
   * Apply a refusal, a cancellation, a hold or a second notice to a queued, held or escalated disconnect. An
   * escalated one (a crew may be on its way) that a rule now forbids is cancelled with its work order; one that
   * must wait stays escalated, with no remote attempt before the rule allows it.
   */
  private applyGate(order: SwitchOrder, decision: GateDecision, now: number): SwitchOrder {
    const ends = decision.verdict === 'refuse' || decision.verdict === 'cancel' || (order.state === 'escalated' && decision.verdict === 'hold' && ESCALATION_ENDING_HOLDS.has(decision.code));
    if (ends) {
      const why = 'code' in decision ? `${decision.code}: ${decision.message}` : 'a rule forbids it now';
      const to = decision.verdict === 'refuse' && order.state !== 'escalated' ? 'refused' : 'cancelled';
      this.move(order, to, now, why);
      this.clearDesired(order.meterId, order.id, now);
      if (order.escalatedAt !== null) this.p.work.cancelFor(order.id, `the disconnect was stopped by the rules: ${why}`, now);
      this.p.audit.append(now, 'gateway', `order.${to}`, order.meterId, { orderId: order.id, ...('code' in decision ? { code: decision.code, rule: decision.rule, message: decision.message } : {}) });
    } else if (decision.verdict === 'hold') {
      this.holdSync(order, now, decision.until, `${decision.code}: ${decision.message}`);
    } else if (decision.verdict === 'second_notice') {
      const payload = secondNoticePayload(order, now, decision.until);
      this.db
        .prepare('INSERT INTO notifications (id, kind, meter_id, order_id, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(payload.notificationId, 'pre_disconnect_notice', order.meterId, order.id, JSON.stringify(payload), now, now);
      this.prepFollowed('UPDATE orders SET second_notice_at = ? WHERE id = ?').run(now, order.id);
      this.orderRows.forget(order.id);
      this.p.audit.append(now, 'gateway', 'order.second_notice', order.meterId, { orderId: order.id, notificationId: payload.notificationId, notBefore: payload.notBefore });
      this.holdSync(orderFromRow(this.s.getOrder.get(order.id) as Row), now, decision.until, secondNoticeHoldReason(payload, now, decision.until));
    }
    return orderFromRow(this.s.getOrder.get(order.id) as Row);
  }

  /** Hold a queued order; a held or escalated one stays in its state with the new reason and time to look again. */
  private holdSync(order: SwitchOrder, now: number, until: number, reason: string): void {
    if (order.state === 'held' || order.state === 'escalated') {
      this.prepFollowed('UPDATE orders SET next_attempt_at = ?, state_reason = ?, updated_at = ? WHERE id = ?').run(until, reason, now, order.id);
      this.orderRows.forget(order.id);
      if (order.stateReason !== reason) this.event(order.id, now, order.state, order.state, reason);
    } else {
      this.move(order, 'held', now, reason, { nextAttemptAt: until });
    }
  }

  gateDisconnect(orderId: string, now: number, policy: PolicyConfig): Promise<{ order: SwitchOrder; decision: GateDecision | null }> {
    return this.enqueue(() => {
      const order = orderFromRow(this.s.getOrder.get(orderId) as Row);
      if (!GATED_STATES.has(order.state)) return { order, decision: null };
      const decision = evaluateDisconnectGate(this.gateInput(order, now, 'attempt', policy));
      return { order: this.applyGate(order, decision, now), decision };
    });
  }

  recordPaymentCheck(orderId: string, now: number, outcome: 'paid' | 'unreachable', detail: string, retryAt: number): Promise<SwitchOrder> {
    return this.enqueue(() => {
      const order = orderFromRow(this.s.getOrder.get(orderId) as Row);
      if (!GATED_STATES.has(order.state)) return order;
      if (outcome === 'paid') {
        this.move(order, 'cancelled', now, `E_PAID: ${detail} (rule 3: payment re-checked at the last moment)`);
        this.clearDesired(order.meterId, orderId, now);
        if (order.escalatedAt !== null) this.p.work.cancelFor(orderId, `the account is paid: ${detail}`, now);
        this.p.audit.append(now, 'gateway', 'order.cancelled', order.meterId, { orderId, code: 'E_PAID', detail });
      } else {
        this.holdSync(order, now, retryAt, `E_BILLING_UNREACHABLE: ${detail}; asking again at ${new Date(retryAt).toISOString()} (rule 3: payment re-checked at the last moment)`);
      }
      return orderFromRow(this.s.getOrder.get(orderId) as Row);
    });
  }

  leaseDisconnect(orderId: string, now: number, policy: PolicyConfig, lease: Lease): Promise<DisconnectLease> {
    return this.enqueue((): DisconnectLease => {
      let order = orderFromRow(this.s.getOrder.get(orderId) as Row);
      if (!GATED_STATES.has(order.state)) return { leased: null, order, decision: null };
      if (this.s.meterInFlight.get(order.meterId)) return { leased: null, order, decision: null };
      const decision = evaluateDisconnectGate(this.gateInput(order, now, 'attempt', policy));
      if (decision.verdict !== 'allow') return { leased: null, order: this.applyGate(order, decision, now), decision };
      if (takesCapSlot(order)) {
        const today = localParts(now, policy.windows.timezone).date;
        if (order.capDay !== today) {
          const region = this.meterRow(order.meterId)!.region as string;
          this.prep('INSERT INTO cap_usage (day, region, used) VALUES (?, ?, 1) ON CONFLICT (day, region) DO UPDATE SET used = used + 1').run(today, region);
          this.prepFollowed('UPDATE orders SET cap_day = ? WHERE id = ?').run(today, orderId);
          this.orderRows.forget(orderId);
        }
      }
      if (order.state === 'held') {
        this.move(order, 'queued', now, 'every rule allows it now');
        order = orderFromRow(this.s.getOrder.get(orderId) as Row);
      }
      const begun = this.s.begin.run({ id: orderId, now, owner: lease.owner, until: lease.until }).changes;
      this.orderRows.forget(orderId);
      if (begun !== 1) return { leased: null, order, decision: null };
      const leased = orderFromRow(this.s.getOrder.get(orderId) as Row);
      this.s.insertAttempt.run(orderId, leased.attempts, now);
      this.event(orderId, now, order.state, 'in_flight', `attempt ${leased.attempts}`);
      return { leased };
    });
  }

  wakeHeldDisconnects(filter: WakeFilter, now: number): Promise<number> {
    return this.enqueue(() => this.wakeHeldSync(filter, now));
  }

  private wakeHeldSync(filter: WakeFilter, now: number): number {
    // An order waiting for the field with no remote attempt at all (the meter refuses our keys) is not woken.
    const where = [`state IN ('held', 'escalated')`, `action = 'disconnect'`, 'next_attempt_at > ?', `next_attempt_at < ${NO_REMOTE_ATTEMPT}`];
    const args: unknown[] = [now, now];
    if (filter.meterId !== undefined) (where.push('meter_id = ?'), args.push(filter.meterId));
    if (filter.orderId !== undefined) (where.push('id = ?'), args.push(filter.orderId));
    if (filter.codes && filter.codes.length > 0) {
      where.push(`(${filter.codes.map(() => 'state_reason LIKE ?').join(' OR ')})`);
      args.push(...filter.codes.map((c) => `${c}:%`));
    }
    return this.prep(`UPDATE orders SET next_attempt_at = ? WHERE ${where.join(' AND ')}`).run(...args).changes;
  }

  approveOrder(orderId: string, actor: string, now: number): Promise<SwitchOrder> {
    return this.enqueue(() => {
      const r = this.s.getOrder.get(orderId) as Row | undefined;
      if (!r) throw new MeterlineError('E_ORDER_NOT_FOUND', `order ${orderId} does not exist`);
      const order = orderFromRow(r);
      approvalProblem(order, actor);
      this.prepFollowed('UPDATE orders SET approved_by = ?, approved_at = ?, updated_at = ? WHERE id = ?').run(actor, now, now, orderId);
      this.orderRows.forget(orderId);
      this.event(orderId, now, order.state, order.state, `approved by ${actor}`);
      this.p.audit.append(now, actor, 'order.approve', order.meterId, { orderId, reason: order.reason, reference: order.reference, requestedBy: order.requestedBy, approvedAt: new Date(now).toISOString() });
      this.wakeHeldSync({ orderId }, now);
      return orderFromRow(this.s.getOrder.get(orderId) as Row);
    });
  }

  async getOrder(orderId: string): Promise<SwitchOrder | undefined> {
    const r = this.s.getOrder.get(orderId) as Row | undefined;
    return r ? orderFromRow(r) : undefined;
  }

  async listOrders(q: OrderQuery): Promise<SwitchOrder[]> {
    let afterSeq: number | undefined;
    if (q.after !== undefined) {
      const s = this.s.seqOf.get(q.after) as { seq: number } | undefined;
      if (!s) throw new MeterlineError('E_VALIDATION', unknownCursorMessage(q.after));
      afterSeq = s.seq;
    }
    const args: unknown[] = [];
    const param = (v: unknown): string => (args.push(v), '?');
    const sql = orderListSql(q, afterSeq, {
      param,
      contains: (column, needle) => `instr(${column}, ${needle}) > 0`,
      anyOf: (column, values) => `${column} IN (SELECT value FROM json_each(${param(JSON.stringify(values))}))`,
    });
    return (this.prep(sql).all(...args) as Row[]).map(orderFromRow);
  }

  async openOrdersForMeter(meterId: string): Promise<SwitchOrder[]> {
    return (this.s.openForMeter.all(meterId) as Row[]).map(orderFromRow);
  }

  async listAttempts(orderId: string): Promise<Attempt[]> {
    return (this.s.attempts.all(orderId) as Row[]).map(attemptFromRow);
  }

  async listOrderEvents(orderId: string): Promise<OrderEvent[]> {
    return (this.s.events.all(orderId) as Row[]).map((r) => ({
      orderId: r.order_id as string,
      at: num(r.at),
      from: strOrNull(r.from_state) as OrderState | null,
      to: r.to_state as OrderState,
      reason: strOrNull(r.reason),
    }));
  }

  async countOrdersByState(): Promise<Partial<Record<OrderState, number>>> {
    const out: Partial<Record<OrderState, number>> = {};
    for (const r of this.s.counts.all() as { state: OrderState; n: number }[]) out[r.state] = r.n;
    return out;
  }

  async countOpenOrdersByState(): Promise<Partial<Record<OpenOrderState, number>>> {
    const out: Partial<Record<OpenOrderState, number>> = {};
    for (const r of this.s.openCounts.all() as { state: OpenOrderState; n: number }[]) out[r.state] = r.n;
    return out;
  }

  orderSeries(from: number, to: number, stepMs: number): Promise<OrderSeriesBucket[]> {
    // Bound as integers, so the bucket number is an integer division.
    return queryOrderSeries((sql, args) => this.prep(sql).all(...args) as Record<string, unknown>[], () => 'CAST(? AS INTEGER)', from, to, stepMs);
  }

  // ---- control loop -------------------------------------------------------------------------------------

  async dueOrders(now: number, limit: number, excludeLinks: readonly string[]): Promise<DueOrder[]> {
    await this.flushNow();
    const rows = this.s.due.all({ now, limit, exclude: JSON.stringify(excludeLinks) }) as Row[];
    // The rows as the file holds them now: kept, so that leasing them needs no `SELECT *` each (issue 19: 0.7 per order
    // in a backlog deeper than the cache, whose admission rows had left it by their lease). Read whole, they cost
    // little more than the columns the due order needs: the statement reads each row's record anyway.
    for (const r of rows) this.orderRows.put(r.id as string, r);
    return rows.map(dueOrderFromRow);
  }

  beginAttempts(orderIds: readonly string[], now: number, lease: Lease): Promise<SwitchOrder[]> {
    return this.enqueue(() => {
      const taken: SwitchOrder[] = [];
      for (const id of orderIds) {
        const before = this.orderRow(id);
        if (before === undefined) continue;
        const begun = this.s.begin.run({ id, now, owner: lease.owner, until: lease.until }).changes;
        if (begun !== 1) {
          // Not leased (no longer queued, or its meter has an attempt on the wire): the row is unchanged, but read it again next time.
          this.orderRows.forget(id);
          continue;
        }
        // The row as the lease's UPDATE left it, from the row before and what it wrote (read when that cannot be told).
        const written = this.writtenOrderRow(before, { state: 'in_flight', attempts: num(before.attempts) + 1, updated_at: now, state_reason: null, lease_owner: lease.owner, lease_until: lease.until });
        this.followOrderWrite(id, written);
        const order = orderFromRow(written ?? (this.s.getOrder.get(id) as Row));
        this.s.insertAttempt.run(id, order.attempts, now);
        this.event(id, now, before.state as string, 'in_flight', `attempt ${order.attempts}`);
        taken.push(order);
      }
      return taken;
    });
  }

  releaseAttempt(orderId: string, attempt: number, now: number, nextAttemptAt: number, reason: string, leaseOwner: string): Promise<SwitchOrder> {
    return this.enqueue(() => {
      const released = this.s.release.run({ id: orderId, attempt, now, nextAttemptAt, reason, owner: leaseOwner }).changes;
      this.orderRows.forget(orderId);
      if (released !== 1) {
        throw new Error(`order ${orderId} is not in flight at attempt ${attempt} under ${leaseOwner}'s lease`);
      }
      this.s.deleteOpenAttempt.run(orderId, attempt);
      this.event(orderId, now, 'in_flight', 'queued', reason);
      return orderFromRow(this.s.getOrder.get(orderId) as Row);
    });
  }

  completeAttempt(report: AttemptReport): Promise<SwitchOrder> {
    return this.enqueue(() => {
      const row = this.orderRow(report.orderId) as Row;
      const current = orderFromRow(row);
      if (current.state !== 'in_flight' || current.attempts !== report.attempt) {
        throw new Error(`order ${report.orderId} is ${current.state} at attempt ${current.attempts}, not in flight at attempt ${report.attempt}`);
      }
      const holder = strOrNull(row.lease_owner);
      if (holder !== report.leaseOwner) throw new MeterlineError('E_LEASE_LOST', `order ${report.orderId} was taken over by ${holder ?? 'nobody'}; ${report.leaseOwner}'s report is not recorded`);
      const verdict = decideAttempt(current, report.judgement);
      this.s.finishAttempt.run({
        orderId: report.orderId,
        attempt: report.attempt,
        endedAt: report.endedAt,
        outcome: verdict.outcome,
        latencyMs: report.latencyMs,
        observedRelay: report.observedRelay,
        commandEvidence: report.commandEvidence,
        readEvidence: report.readEvidence,
        detail: report.detail,
      });
      if (report.observation) this.observe(current.meterId, report.observation);
      if (verdict.escalation) {
        const region = this.meterRow(current.meterId)!.region as string;
        this.p.work.raise(fieldOrder(current), region, verdict.escalation, report.endedAt);
      }
      if (verdict.reviseWorkOrder) this.runScript(reviseOpenWorkOrder(current.id, verdict.reviseWorkOrder, report.endedAt));
      const limited = limitFlagsAfter(current, verdict.next, parseFlags(this.meterRow(current.meterId)!.flags), report.endedAt);
      if (limited) this.p.facts.setFlags(current.meterId, limited, 'gateway', report.endedAt);
      const after = this.move(current, verdict.next, report.endedAt, verdict.escalation ? `${verdict.next === 'escalated' ? 'escalated to the field' : 'field work order raised'}: ${verdict.escalation.reason}` : verdict.reason, {
        ...(verdict.nextAttemptAt !== undefined ? { nextAttemptAt: verdict.nextAttemptAt } : {}),
        resultRelay: report.observedRelay,
        // `row` is still the order's row unless a work order or the meter's flags were written since (they may touch it).
      }, verdict.escalation || verdict.reviseWorkOrder || limited ? undefined : row);
      if (verdict.next !== 'escalated' && current.escalatedAt !== null) {
        const why = verdict.next === 'done' || verdict.next === 'armed' ? `restored remotely by attempt ${report.attempt} (${verdict.reason})` : `the order ended ${verdict.next}: ${verdict.reason}`;
        this.p.work.cancelFor(current.id, why, report.endedAt);
      }
      return after;
    });
  }

  cancelOrder(orderId: string, actor: string, reason: string, now: number): Promise<SwitchOrder> {
    return this.enqueue(() => {
      const r = this.s.getOrder.get(orderId) as Row | undefined;
      if (!r) throw new MeterlineError('E_ORDER_NOT_FOUND', `order ${orderId} does not exist`);
      const order = orderFromRow(r);
      if (order.state === 'in_flight') throw new MeterlineError('E_ORDER_ON_WIRE', `order ${orderId} has an attempt on the wire; cancel again in a few seconds, once it has been read back`);
      if (!['accepted', 'held', 'queued', 'escalated'].includes(order.state)) throw new MeterlineError('E_ORDER_FINISHED', `order ${orderId} is already ${order.state}`);
      this.move(order, 'cancelled', now, `cancelled by ${actor}: ${reason}`);
      this.clearDesired(order.meterId, orderId, now);
      if (order.escalatedAt !== null) this.p.work.cancelFor(orderId, `the order was cancelled by ${actor}: ${reason}`, now);
      this.p.audit.append(now, actor, 'order.cancel', order.meterId, { orderId, before: { state: order.state }, after: { state: 'cancelled' }, reason });
      return orderFromRow(this.s.getOrder.get(orderId) as Row);
    });
  }

  async inFlightOrders(): Promise<SwitchOrder[]> {
    await this.flushNow();
    return (this.s.inFlight.all() as Row[]).map(orderFromRow);
  }

  renewLeases(lease: Lease, orderIds: readonly string[]): Promise<number> {
    if (orderIds.length === 0) return Promise.resolve(0);
    return this.enqueue(() => {
      const renewed = this.s.renewLeases.run({ owner: lease.owner, until: lease.until, ids: JSON.stringify(orderIds) }).changes;
      for (const id of orderIds) this.orderRows.forget(id);
      return renewed;
    });
  }

  holdDuty(name: string, lease: Lease, now: number): Promise<boolean> {
    return this.enqueue(() => {
      const row = this.db
        .prepare(
          `INSERT INTO duties (name, owner, lease_until) VALUES (@name, @owner, @until)
           ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
           WHERE duties.owner = excluded.owner OR duties.lease_until < @now
           RETURNING owner`,
        )
        .get({ name, owner: lease.owner, until: lease.until, now }) as { owner: string } | undefined;
      return row?.owner === lease.owner;
    });
  }

  releaseDuty(name: string, owner: string): Promise<void> {
    return this.enqueue(() => {
      this.prep('UPDATE duties SET lease_until = 0 WHERE name = ? AND owner = ?').run(name, owner);
    });
  }

  claimOrphans(lease: Lease, now: number, limit: number, includeOwn: boolean): Promise<SwitchOrder[]> {
    return this.enqueue(() => {
      const rows = this.s.orphans.all({ now, limit, owner: lease.owner, includeOwn: includeOwn ? 1 : 0 }) as Row[];
      for (const r of rows) {
        this.s.claim.run({ id: r.id, owner: lease.owner, until: lease.until });
        this.orderRows.forget(r.id as string);
        const from = strOrNull(r.lease_owner);
        const why = from === lease.owner ? `${lease.owner} restarted while attempt ${num(r.attempts)} was on the wire; verifying it by a read` : `lease of ${from ?? 'an earlier version'} ran out; ${lease.owner} takes attempt ${num(r.attempts)} over and verifies it by a read`;
        this.event(r.id as string, now, 'in_flight', 'in_flight', why);
      }
      return rows.map((r) => orderFromRow(this.s.getOrder.get(r.id) as Row));
    });
  }

  // ---- facts, weather, plans, notifications, keys, history ------------------------------------------------

  setMeterFlags(meterId: string, patch: Partial<MeterFlags>, actor: string, now: number): Promise<MeterFlags> {
    return this.enqueue(() => {
      const flags = this.p.facts.setFlags(meterId, patch, actor, now);
      this.wakeHeldSync({ meterId }, now);
      return flags;
    });
  }

  addNotice(notice: Omit<NoticeRecord, 'id' | 'recordedAt'>, now: number): Promise<NoticeRecord> {
    return this.enqueue(() => this.p.facts.addNotice(notice, now));
  }

  async listNotices(meterId: string): Promise<NoticeRecord[]> {
    return this.p.facts.notices(meterId);
  }

  importMeterFacts(rows: readonly MeterFactsRow[], actor: string, now: number): Promise<{ meters: number; notices: number }> {
    return this.enqueue(() => {
      const result = this.p.facts.import(rows, actor, now);
      for (const meterId of new Set(rows.filter((r) => r.flags && Object.keys(r.flags).length > 0).map((r) => r.meterId))) this.wakeHeldSync({ meterId }, now);
      return result;
    });
  }

  declareWeather(period: Omit<WeatherPeriod, 'id'>, actor: string, now: number): Promise<WeatherPeriod> {
    return this.enqueue(() => this.p.facts.declareWeather(period, actor, now));
  }

  liftWeather(id: string, actor: string, now: number): Promise<WeatherPeriod | undefined> {
    return this.enqueue(() => {
      const lifted = this.p.facts.liftWeather(id, actor, now);
      if (lifted) this.wakeHeldSync({ codes: ['E_OUTSIDE_WINDOW'] }, now);
      return lifted;
    });
  }

  async listWeather(activeAt?: number): Promise<WeatherPeriod[]> {
    return this.p.facts.weather(activeAt);
  }

  createPlan(draft: PlanDraft, actor: string, now: number): Promise<PlanView> {
    return this.enqueue(() => this.p.plans.create(draft, actor, now));
  }

  async getPlan(planId: string): Promise<PlanView | undefined> {
    return this.p.plans.get(planId);
  }

  async listPlans(status?: PlanFacts['status']): Promise<PlanView[]> {
    return this.p.plans.list(status);
  }

  decidePlan(planId: string, decision: 'approve' | 'reject' | 'cancel', actor: string, ctx: SubmitContext): Promise<PlanView> {
    return this.enqueue(() => this.p.plans.decide(planId, decision, actor, ctx));
  }

  async pendingNotifications(now: number, limit: number, kindPrefixes: readonly string[]): Promise<NotificationRecord[]> {
    if (kindPrefixes.length === 0) return [];
    await this.flushNow();
    const kinds = kindPrefixes.map(() => 'kind LIKE ?').join(' OR ');
    const rows = this.db
      .prepare(`SELECT * FROM notifications WHERE delivered_at IS NULL AND next_attempt_at <= ? AND (${kinds}) ORDER BY created_at LIMIT ?`)
      .all(now, ...kindPrefixes.map((p) => `${p}%`), limit) as Row[];
    return rows.map(notificationFromRow);
  }

  markNotification(id: string, now: number, result: { delivered: true } | { delivered: false; error: string; retryAt: number }): Promise<void> {
    return this.enqueue(() => {
      if (result.delivered) {
        const row = this.prep('UPDATE notifications SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ? RETURNING order_id, kind').get(now, id) as Row | undefined;
        // A delivered pre-disconnect notification starts rule 2's minutes: the order is looked at again now.
        if (row && row.kind === 'pre_disconnect_notice' && row.order_id) this.wakeHeldSync({ orderId: row.order_id as string }, now);
      } else this.prep('UPDATE notifications SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?').run(result.error, result.retryAt, id);
    });
  }

  async listNotifications(meterId: string): Promise<NotificationRecord[]> {
    return (this.prep('SELECT * FROM notifications WHERE meter_id = ? ORDER BY created_at').all(meterId) as Row[]).map(notificationFromRow);
  }

  createApiKey(key: NewApiKey, actor: string, now: number): Promise<ApiKeyRecord> {
    return this.enqueue(() => this.runScript(keys.createApiKey(key, actor, now)));
  }

  registerClients(clients: readonly { id: string; name: string }[], now: number): Promise<void> {
    return this.enqueue(() => this.runScript(keys.registerClients(clients, now)));
  }

  rotateApiKey(id: string, sha256: string, actor: string, now: number): Promise<ApiKeyRecord | undefined> {
    return this.enqueue(() => this.runScript(keys.rotateApiKey(id, sha256, actor, now)));
  }

  revokeApiKey(id: string, actor: string, now: number): Promise<ApiKeyRecord | undefined> {
    return this.enqueue(() => this.runScript(keys.revokeApiKey(id, actor, now)));
  }

  async findApiKey(sha256: string): Promise<(ApiKeyRecord & { sha256: string }) | undefined> {
    return this.runScript(keys.findApiKey(sha256));
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    return this.runScript(keys.listApiKeys());
  }

  touchApiKey(id: string, now: number): Promise<void> {
    return this.enqueue(() => this.runScript(keys.touchApiKey(id, now)));
  }

  async listObservations(meterId: string, limit: number): Promise<ObservationRecord[]> {
    const rows = this.prep('SELECT * FROM observations WHERE meter_id = ? ORDER BY at DESC LIMIT ?').all(meterId, limit) as Row[];
    return rows.map((r) => ({
      meterId,
      at: num(r.at),
      relay: r.relay as RelayState,
      source: r.source as Observation['source'],
      voltageV: numOrNull(r.voltage_v) ?? undefined,
      energyWh: numOrNull(r.energy_wh) ?? undefined,
    }));
  }

  async energyReadings(meterId: string, limit: number): Promise<{ at: number; energyWh: number }[]> {
    const rows = this.prep(SQLITE_ENERGY_READINGS).all(meterId, limit) as { at: number; energy_wh: number }[];
    return rows.reverse().map((r) => ({ at: r.at, energyWh: r.energy_wh }));
  }

  async lastCompletedOrder(meterId: string, action: SwitchAction): Promise<SwitchOrder | undefined> {
    const r = this.db
      .prepare(`SELECT * FROM orders WHERE meter_id = ? AND action = ? AND state IN ('done', 'armed', 'done_by_field') ORDER BY completed_at DESC, seq DESC LIMIT 1`)
      .get(meterId, action) as Row | undefined;
    return r ? orderFromRow(r) : undefined;
  }

  // ---- field work orders and success rates --------------------------------------------------------------

  escalateOrder(orderId: string, now: number, plan: WorkOrderPlan, slowRetryAt: number): Promise<{ order: SwitchOrder; workOrder: WorkOrder } | undefined> {
    return this.enqueue(() => {
      const order = orderFromRow(this.s.getOrder.get(orderId) as Row);
      if (!['queued', 'held', 'in_flight', 'escalated'].includes(order.state)) return undefined;
      const region = this.meterRow(order.meterId)!.region as string;
      const workOrder = this.p.work.raise(fieldOrder(order), region, plan, now);
      if (order.state === 'queued' || order.state === 'held') {
        this.move(order, 'escalated', now, `escalated to the field: ${plan.reason}`, { nextAttemptAt: Math.min(order.nextAttemptAt, slowRetryAt) });
      }
      return { order: orderFromRow(this.s.getOrder.get(orderId) as Row), workOrder };
    });
  }

  async reconnectsNearDeadline(before: number, limit: number): Promise<SwitchOrder[]> {
    const rows = this.db
      .prepare(
        // completed_at IS NULL (true of every order in these states) lets the statement walk orders_deadline in its
        // order up to the limit (the planner, with no ANALYZE statistics, would read every open order and sort them).
        `SELECT * FROM orders INDEXED BY orders_deadline WHERE action = 'reconnect' AND escalated_at IS NULL AND deadline IS NOT NULL AND deadline <= ? AND completed_at IS NULL
         AND state IN ('queued', 'held', 'in_flight') ORDER BY deadline LIMIT ?`,
      )
      .all(before, limit) as Row[];
    return rows.map(orderFromRow);
  }

  async listWorkOrders(query: { status?: WorkOrderStatus; region?: string; orderId?: string; limit: number }): Promise<WorkOrder[]> {
    return this.p.work.list(query);
  }

  async getWorkOrder(id: string): Promise<WorkOrder | undefined> {
    return this.p.work.get(id);
  }

  assignWorkOrder(id: string, assignee: string, actor: string, now: number): Promise<WorkOrder> {
    return this.enqueue(() => this.p.work.assign(id, assignee, actor, now));
  }

  completeWorkOrder(id: string, outcome: FieldOutcome, note: string | null, actor: string, now: number): Promise<{ workOrder: WorkOrder; order: SwitchOrder | null }> {
    return this.enqueue(() => {
      const existing = this.p.work.get(id);
      if (!existing) throw new MeterlineError('E_WORK_ORDER_NOT_FOUND', `work order ${id} does not exist`);
      if (existing.orderId === null) {
        // An inspection: no switch order to settle; the relay the crew left is what the meter now shows.
        const workOrder = this.p.work.complete(id, outcome, note, actor, now);
        const relay = inspectedRelay(outcome);
        if (relay) this.observe(existing.meterId, { relay, at: now, source: 'field' });
        return { workOrder, order: null };
      }
      const order = orderFromRow(this.s.getOrder.get(existing.orderId) as Row);
      if (order.state === 'in_flight') throw new MeterlineError('E_ORDER_ON_WIRE', `a remote attempt for order ${order.id} is on the wire right now; report the outcome again in a few seconds`);
      const workOrder = this.p.work.complete(id, outcome, note, actor, now);
      const restored = (outcome === 'reconnected' && order.action === 'reconnect') || (outcome === 'disconnected' && order.action === 'disconnect');
      if (restored) this.observe(order.meterId, { relay: order.action === 'reconnect' ? 'connected' : 'disconnected', at: now, source: 'field' });
      if (['queued', 'held', 'escalated'].includes(order.state)) {
        if (restored) this.move(order, 'done_by_field', now, `done on site by ${actor} (work order ${id})${note ? `: ${note}` : ''}`, { resultRelay: order.action === 'reconnect' ? 'connected' : 'disconnected' });
        else this.move(order, 'failed', now, `field visit (work order ${id}): ${outcome}${note ? `: ${note}` : ''}`);
      }
      return { workOrder, order: orderFromRow(this.s.getOrder.get(order.id) as Row) };
    });
  }

  async attemptStats(since: number): Promise<AttemptStatsRow[]> {
    await this.flushNow();
    return this.p.work.attemptStats(since);
  }

  async orderOutcomeStats(since: number): Promise<OrderOutcomeRow[]> {
    await this.flushNow();
    return this.p.work.orderOutcomeStats(since);
  }

  openBreaker(scope: BreakerScope, key: string, action: SwitchAction, reason: string, now: number): Promise<CircuitBreaker | undefined> {
    return this.enqueue(() => this.p.work.openBreaker(scope, key, action, reason, now));
  }

  async listBreakers(openOnly: boolean): Promise<CircuitBreaker[]> {
    return this.p.work.breakers(openOnly);
  }

  resetBreaker(id: string, actor: string, now: number): Promise<CircuitBreaker | undefined> {
    return this.enqueue(() => {
      const reset = this.p.work.resetBreaker(id, actor, now);
      if (reset) this.wakeHeldSync({ codes: ['E_CIRCUIT_OPEN'] }, now);
      return reset;
    });
  }

  recordAlert(kind: string, payload: Record<string, unknown>, now: number): Promise<void> {
    return this.enqueue(() => this.p.work.recordAlert(kind, payload, now));
  }

  async listMeters(afterMeterId: string | null, limit: number): Promise<MeterView[]> {
    const rows = this.prep('SELECT * FROM meters WHERE meter_id > ? ORDER BY meter_id LIMIT ?').all(afterMeterId ?? '', limit) as Row[];
    return rows.map(meterFromRow);
  }

  async relayAuditFacts(meterIds: readonly string[]): Promise<Map<string, { hasOpenOrder: boolean; lastDisconnectDone: boolean; armedSince: number | null }>> {
    const out = new Map<string, { hasOpenOrder: boolean; lastDisconnectDone: boolean; armedSince: number | null }>();
    // The relay's orders only: a limit order says nothing of whether the relay should be open.
    const open = this.prep(`SELECT 1 FROM orders WHERE meter_id = ? AND action IN ('disconnect', 'reconnect') AND state IN ('accepted', 'held', 'queued', 'in_flight', 'escalated') LIMIT 1`, true);
    const last = this.prep(`SELECT action, state, completed_at FROM orders WHERE meter_id = ? AND action IN ('disconnect', 'reconnect') AND state IN ('done', 'armed', 'done_by_field') ORDER BY completed_at DESC, seq DESC LIMIT 1`);
    for (const id of meterIds) {
      const l = last.get(id) as { action: string; state: string; completed_at: number } | undefined;
      out.set(id, {
        hasOpenOrder: open.get(id) !== undefined,
        lastDisconnectDone: l?.action === 'disconnect',
        armedSince: l?.state === 'armed' ? l.completed_at : null,
      });
    }
    return out;
  }

  saveRelayAudit(run: RelayAuditRun): Promise<void> {
    return this.enqueue(() => {
      this.prep('INSERT INTO relay_audit_runs (id, ran_at, meters, exceptions) VALUES (?, ?, ?, ?)').run(run.id, run.ranAt, run.meters, JSON.stringify(run.exceptions));
      this.p.audit.append(run.ranAt, 'gateway', 'relay_audit.run', run.id, { meters: run.meters, exceptions: run.exceptions.length });
    });
  }

  async latestRelayAudit(): Promise<RelayAuditRun | undefined> {
    const r = this.prep('SELECT * FROM relay_audit_runs ORDER BY ran_at DESC LIMIT 1').get() as Row | undefined;
    return r ? { id: r.id as string, ranAt: num(r.ran_at), meters: num(r.meters), exceptions: JSON.parse(r.exceptions as string) as unknown[] } : undefined;
  }

  async listAlerts(limit: number, state?: AlertState): Promise<AlertRecord[]> {
    await this.flushNow();
    const where = state === undefined ? '' : ` AND ${ALERT_STATE_SQL[state]}`;
    return (this.prep(`SELECT * FROM notifications WHERE kind LIKE 'alert.%'${where} ORDER BY created_at DESC LIMIT ?`).all(limit) as Row[]).map(alertFromRow);
  }

  actOnAlert(id: string, act: AlertAct, note: string | null, actor: string, now: number): Promise<AlertRecord> {
    return this.enqueue(() => this.p.work.actOnAlert(id, act, note, actor, now));
  }

  claimEpisode(claim: EpisodeClaim, now: number): Promise<{ episode: AlertEpisode; opened: boolean }> {
    return this.enqueue(() => this.runScript(scripts.claimEpisode(claim, now)));
  }

  endEpisodes(kindPrefix: string, keep: readonly { meterId: string; kind: EpisodeKind }[], now: number): Promise<AlertEpisode[]> {
    return this.enqueue(() => this.runScript(scripts.endEpisodes(kindPrefix, keep, now)));
  }

  async listEpisodes(query: { meterId?: string; kindPrefix?: string; openOnly?: boolean; limit: number }): Promise<AlertEpisode[]> {
    await this.flushNow();
    return this.runScript(scripts.listEpisodes(query));
  }

  recordMeterSwap(swap: Omit<MeterSwap, 'id' | 'recordedAt'>, now: number): Promise<MeterSwap> {
    return this.enqueue(() => {
      // Before the write: should it roll back, the set names one meter too many, which costs a lookup, never an answer.
      this.metersWithSwaps().add(swap.meterId);
      return this.runScript(scripts.recordMeterSwap(swap, now));
    });
  }

  /**
   * The meters with a recorded swap. Swaps are rare (a meter replaced in the field), and the consumption check asks
   * for a meter's swaps after every reading: a meter not in this set has none, with no statement run.
   */
  private swapMeters: Set<string> | undefined;
  private metersWithSwaps(): Set<string> {
    this.swapMeters ??= new Set(this.prep('SELECT DISTINCT meter_id FROM meter_swaps', true).all() as string[]);
    return this.swapMeters;
  }

  async listMeterSwaps(meterId: string, limit: number): Promise<MeterSwap[]> {
    if (!this.metersWithSwaps().has(meterId)) return [];
    return this.runScript(scripts.listMeterSwaps(meterId, limit));
  }

  async countWorkOrdersByStatus(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const r of this.prep('SELECT status, COUNT(*) AS n FROM work_orders GROUP BY status').all() as { status: string; n: number }[]) out[r.status] = r.n;
    return out;
  }

  async mostUrgentReconnectDeadline(): Promise<number | null> {
    const r = this.db
      .prepare(`SELECT MIN(deadline) AS d FROM orders WHERE action = 'reconnect' AND deadline IS NOT NULL AND state IN ('accepted', 'held', 'queued', 'in_flight', 'escalated')`)
      .get() as { d: number | null };
    return r.d;
  }

  // ---- billing --------------------------------------------------------------------------------------------

  recordPayments(requests: readonly PaymentRequest[], ctx: SubmitContext, limits: PaymentLimits): Promise<{ kind: 'created' | 'replayed'; payment: PaymentRecord }[]> {
    return this.enqueue(() => {
      const out: { kind: 'created' | 'replayed'; payment: PaymentRecord }[] = [];
      const bound = new CreditBalanceBound(limits.maxCreditBalanceMinor);
      const byKey = this.prep('SELECT * FROM payments WHERE client = ? AND idempotency_key = ?');
      const meterExists = this.prep('SELECT 1 FROM meters WHERE meter_id = ?', true);
      const accountMeters = this.prep('SELECT meter_id FROM meters WHERE account_id = ? ORDER BY meter_id', true);
      const missing: { index: number; meterId: string | null; accountId: string | null }[] = [];
      const resolved = requests.map((r, index) => {
        const ids = r.meterId !== null ? (meterExists.get(r.meterId) ? [r.meterId] : []) : (accountMeters.all(r.accountId) as string[]);
        if (ids.length === 0) missing.push({ index, meterId: r.meterId, accountId: r.accountId });
        return ids;
      });
      if (missing.length > 0) {
        throw new MeterlineError('E_METER_NOT_FOUND', `${missing.length} payment(s) name meters or accounts that are not registered; nothing was recorded`, { missing: missing.slice(0, 100) });
      }
      const openDisconnects = this.prep(
        `SELECT * FROM orders WHERE meter_id = ? AND action = 'disconnect' AND reason IN ('arrears', 'credit_exhausted') AND state IN ('accepted', 'held', 'queued', 'in_flight', 'escalated') ORDER BY seq`,
      );
      const openReconnect = this.prep(`SELECT 1 FROM orders WHERE meter_id = ? AND action = 'reconnect' AND state IN ('accepted', 'held', 'queued', 'in_flight', 'escalated') LIMIT 1`, true);
      const lastDone = this.prep(`SELECT action, reason FROM orders WHERE meter_id = ? AND action IN ('disconnect', 'reconnect') AND state IN ('done', 'armed', 'done_by_field') ORDER BY completed_at DESC, seq DESC LIMIT 1`);
      const latestLimit = this.prep(`SELECT reason, limit_w, state FROM orders WHERE meter_id = ? AND action = 'limit' ORDER BY seq DESC LIMIT 1`);
      requests.forEach((req, i) => {
        const prior = byKey.get(req.client, req.idempotencyKey) as Row | undefined;
        if (prior) {
          if (prior.request_hash !== req.requestHash) {
            throw new MeterlineError('E_IDEMPOTENCY_CONFLICT', `Idempotency-Key "${req.idempotencyKey}" was already used for payment ${prior.id as string} with a different request; use a new key for a new payment`);
          }
          out.push({ kind: 'replayed', payment: paymentFromRow(prior) });
          return;
        }
        const now = ctx.now;
        const id = `pay_${now.toString(36)}${randomBytes(5).toString('hex')}`;
        const effects: PaymentEffect[] = [];
        for (const meterId of resolved[i]!) {
          const flags = parseFlags(this.meterRow(meterId)!.flags);
          if (req.kind === 'top_up' && flags.prepaymentMode) {
            if (!bound.knows(meterId)) bound.start(meterId, this.creditEventsSync(meterId));
            const fit = bound.add(meterId, req.amountMinor);
            if (!fit.fits) throw creditBalanceLimitError([{ index: i, meterId, balanceAfterMinor: fit.balanceAfterMinor }], bound.maxMinor); // rolls the whole call back
            this.creditEventSync(meterId, { type: 'top_up', amount: req.amountMinor, at: req.receivedAt, ref: id }, req.client);
          }
          const open = (openDisconnects.all(meterId) as Row[]).map(orderFromRow);
          const cancelled: string[] = [];
          let onWire = false;
          for (const o of open) {
            if (o.state === 'in_flight') {
              onWire = true;
              continue;
            }
            this.move(o, 'cancelled', now, paymentCancelReason(id, req));
            cancelled.push(o.id);
          }
          const last = lastDone.get(meterId) as { action: string; reason: string } | undefined;
          const offForNonPayment = last?.action === 'disconnect' && (last.reason === 'arrears' || last.reason === 'credit_exhausted');
          let reconnectOrderId: string | null = null;
          let note = cancelled.length > 0 ? 'pending disconnect cancelled' : 'recorded';
          if ((offForNonPayment || onWire) && !openReconnect.get(meterId)) {
            const [created] = this.submitSync(
              [paymentReconnectRequest(id, meterId, req)],
              ctx,
            );
            reconnectOrderId = created!.order.id;
            note = onWire ? 'a disconnect was on the wire: reconnect ordered to follow it' : 'meter off for non-payment: reconnect ordered';
          } else if (openReconnect.get(meterId)) {
            note = 'a reconnect is already under way';
          }
          // Rule 10: the limit was the step before a cut for non-payment; paid, it is lifted.
          let limitRemovalOrderId: string | null = null;
          if (limitSetForArrears(latestLimit.get(meterId) as Row | undefined)) {
            limitRemovalOrderId = this.submitSync([paymentLimitRemovalRequest(id, meterId, req)], ctx)[0]!.order.id;
            note += '; limit set for arrears: removal ordered';
          }
          effects.push({ meterId, cancelledOrders: cancelled, reconnectOrderId, limitRemovalOrderId, note });
        }
        this.db
          .prepare(
            `INSERT INTO payments (id, client, idempotency_key, request_hash, account_id, meter_id, amount_minor, kind, posted, reference, received_at, recorded_at, effects)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(id, req.client, req.idempotencyKey, req.requestHash, req.accountId, req.meterId, req.amountMinor, req.kind, req.posted ? 1 : 0, req.reference, req.receivedAt, now, JSON.stringify(effects));
        this.p.audit.append(now, req.client, `payment.${req.kind}`, req.meterId ?? `account:${req.accountId}`, { paymentId: id, amountMinor: req.amountMinor, posted: req.posted, reference: req.reference, effects });
        out.push({ kind: 'created', payment: paymentFromRow(byKey.get(req.client, req.idempotencyKey) as Row) });
      });
      return out;
    });
  }

  async checkPayments(requests: readonly PaymentRequest[], limits: PaymentLimits): Promise<PaymentCheck> {
    await this.flushNow();
    const meterFlags = this.prep('SELECT flags FROM meters WHERE meter_id = ?', true);
    const accountMeters = this.prep('SELECT meter_id, flags FROM meters WHERE account_id = ? ORDER BY meter_id');
    const byKey = this.prep('SELECT request_hash FROM payments WHERE client = ? AND idempotency_key = ?', true);
    const bound = new CreditBalanceBound(limits.maxCreditBalanceMinor);
    const out: PaymentCheck = { missing: [], conflicts: [], overLimit: [] };
    requests.forEach((r, index) => {
      const reached: { meterId: string; flags: unknown }[] =
        r.meterId !== null
          ? ((f) => (f === undefined ? [] : [{ meterId: r.meterId!, flags: f }]))(meterFlags.get(r.meterId))
          : (accountMeters.all(r.accountId) as { meter_id: string; flags: unknown }[]).map((m) => ({ meterId: m.meter_id, flags: m.flags }));
      if (reached.length === 0) out.missing.push({ index, meterId: r.meterId, accountId: r.accountId });
      const prior = byKey.get(r.client, r.idempotencyKey) as string | undefined;
      if (prior !== undefined && prior !== r.requestHash) out.conflicts.push({ index, key: r.idempotencyKey });
      if (prior !== undefined || r.kind !== 'top_up') return; // a replay adds nothing
      for (const m of reached) {
        if (!parseFlags(m.flags).prepaymentMode) continue;
        if (!bound.knows(m.meterId)) bound.start(m.meterId, this.creditEventsSync(m.meterId));
        const fit = bound.add(m.meterId, r.amountMinor);
        if (!fit.fits) out.overLimit.push({ index, meterId: m.meterId, balanceAfterMinor: fit.balanceAfterMinor });
      }
    });
    return out;
  }

  async listPayments(query: { client?: string; from?: number; to?: number; limit: number }): Promise<PaymentRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (query.client) (where.push('client = ?'), args.push(query.client));
    if (query.from !== undefined) (where.push('received_at >= ?'), args.push(query.from));
    if (query.to !== undefined) (where.push('received_at < ?'), args.push(query.to));
    const rows = this.prep(`SELECT * FROM payments ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY received_at LIMIT ?`).all(...args, query.limit) as Row[];
    return rows.map(paymentFromRow);
  }

  setCallback(client: string, url: string, secret: string, now: number): Promise<CallbackSubscription> {
    return this.enqueue(() => {
      const sub = this.p.billing.setCallback(client, url, secret, now);
      this.p.audit.append(now, client, 'callback.set', client, { after: { url } });
      return sub;
    });
  }

  async getCallback(client: string): Promise<CallbackSubscription | undefined> {
    return this.p.billing.callback(client);
  }

  async listCallbacks(): Promise<CallbackSubscription[]> {
    return this.p.billing.callbacks();
  }

  async clientEvents(client: string, afterSeq: number, limit: number, orderId?: string): Promise<ClientEvent[]> {
    await this.flushNow();
    return this.p.billing.events(client, afterSeq, limit, orderId);
  }

  async pendingClientEvents(client: string, limit: number): Promise<ClientEvent[]> {
    await this.flushNow();
    return this.p.billing.pending(client, limit);
  }

  markClientEvent(client: string, seq: number, now: number, result: { delivered: true } | { delivered: false; error: string; retryAt: number }): Promise<void> {
    return this.enqueue(() => this.p.billing.mark(client, seq, now, result));
  }

  // ---- prepayment credit ----------------------------------------------------------------------------------

  appendCreditEvent(meterId: string, event: CreditEvent, actor: string): Promise<void> {
    return this.enqueue(() => this.creditEventSync(meterId, event, actor));
  }

  private creditEventSync(meterId: string, event: CreditEvent, actor: string): void {
    this.prep('INSERT INTO credit_events (meter_id, event, at) VALUES (?, ?, ?)').run(meterId, creditEventJson(event), event.at);
    if (event.type !== 'consumption') this.p.audit.append(event.at, actor, `credit.${event.type}`, meterId, { after: event });
  }

  async creditEvents(meterId: string): Promise<CreditEvent[]> {
    await this.flushNow();
    return this.creditEventsSync(meterId);
  }

  private creditEventsSync(meterId: string): CreditEvent[] {
    return (this.prep('SELECT event FROM credit_events WHERE meter_id = ? ORDER BY seq', true).all(meterId) as string[]).map((e) => JSON.parse(e) as CreditEvent);
  }

  async creditControl(meterId: string): Promise<CreditControlMemory> {
    await this.flushNow();
    const r = this.prep('SELECT * FROM credit_control WHERE meter_id = ?').get(meterId) as Row | undefined;
    if (!r) return { cycleRef: null, warningsSent: [], emergencyOffered: false, lastReading: null };
    return {
      cycleRef: strOrNull(r.cycle_ref),
      warningsSent: JSON.parse(r.warnings_sent as string) as number[],
      emergencyOffered: r.emergency_offered === 1,
      lastReading: r.last_reading_at === null ? null : { at: num(r.last_reading_at), energyWh: num(r.last_reading_wh) },
    };
  }

  setCreditControl(meterId: string, m: CreditControlMemory): Promise<void> {
    return this.enqueue(() => {
      this.db
        .prepare(
          `INSERT INTO credit_control (meter_id, cycle_ref, warnings_sent, emergency_offered, last_reading_at, last_reading_wh) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (meter_id) DO UPDATE SET cycle_ref = excluded.cycle_ref, warnings_sent = excluded.warnings_sent,
             emergency_offered = excluded.emergency_offered, last_reading_at = excluded.last_reading_at, last_reading_wh = excluded.last_reading_wh`,
        )
        .run(meterId, m.cycleRef, JSON.stringify(m.warningsSent), m.emergencyOffered ? 1 : 0, m.lastReading?.at ?? null, m.lastReading?.energyWh ?? null);
    });
  }

  // ---- per-meter DLMS keys and invocation counters (meter-key-sets.ts) ----

  putMeterKeySets(sets: readonly NewMeterKeySet[], options: { replace: boolean }, actor: string, now: number): Promise<KeySetPutOutcome[]> {
    return this.enqueue(() => this.runScript(meterKeys.putMeterKeySets(sets, options, actor, now)));
  }

  async meterKeySets(meterId: string): Promise<StoredMeterKeySet[]> {
    return this.runScript(meterKeys.meterKeySets(meterId));
  }

  async meterKeySetBySystemTitle(systemTitle: string): Promise<{ meterId: string; keySetId: string } | undefined> {
    return this.runScript(meterKeys.meterKeySetBySystemTitle(systemTitle));
  }

  async meterKeySetsWithoutSystemTitle(limit: number): Promise<StoredMeterKeySet[]> {
    return this.runScript(meterKeys.meterKeySetsWithoutSystemTitle(limit));
  }

  recordMeterKeySetSystemTitle(meterId: string, keySetId: string, systemTitle: string): Promise<void> {
    return this.enqueue(() => this.runScript(meterKeys.recordMeterKeySetSystemTitle(meterId, keySetId, systemTitle)));
  }

  stageMeterKeySet(set: NewMeterKeySet, actor: string, now: number): Promise<MeterKeySetRecord> {
    return this.enqueue(() => this.runScript(meterKeys.stageMeterKeySet(set, actor, now)));
  }

  confirmMeterKeySet(meterId: string, keySetId: string, actor: string, now: number): Promise<MeterKeySetRecord> {
    return this.enqueue(() => this.runScript(meterKeys.confirmMeterKeySet(meterId, keySetId, actor, now)));
  }

  retireMeterKeySet(meterId: string, keySetId: string, actor: string, now: number): Promise<MeterKeySetRecord> {
    return this.enqueue(() => this.runScript(meterKeys.retireMeterKeySet(meterId, keySetId, actor, now)));
  }

  reserveInvocationCounters(meterId: string, keySetId: string, block: number): Promise<number> {
    return this.enqueue(() => this.runScript(meterKeys.reserveInvocationCounters(meterId, keySetId, block)));
  }

  raiseInvocationCounter(meterId: string, keySetId: string, atLeast: number): Promise<void> {
    return this.enqueue(() => this.runScript(meterKeys.raiseInvocationCounter(meterId, keySetId, atLeast)));
  }

  reserveIdempotentWrite(principal: string, key: string, requestHash: string, now: number): Promise<{ reserved: true } | { reserved: false; prior: IdempotentAnswer }> {
    return this.enqueue(() => this.runScript(answers.reserveIdempotentWrite(principal, key, requestHash, now)));
  }

  async getIdempotentResponse(principal: string, key: string): Promise<IdempotentAnswer | undefined> {
    return this.runScript(answers.getIdempotentAnswer(principal, key));
  }

  saveIdempotentResponse(principal: string, key: string, requestHash: string, status: number, body: unknown): Promise<void> {
    return this.enqueue(() => this.runScript(answers.saveIdempotentAnswer(principal, key, requestHash, status, body)));
  }

  releaseIdempotentWrite(principal: string, key: string, requestHash: string): Promise<void> {
    return this.enqueue(() => this.runScript(answers.releaseIdempotentWrite(principal, key, requestHash)));
  }

  // ---- audit --------------------------------------------------------------------------------------------

  appendAudit(entry: Omit<AuditEntry, 'seq' | 'hash'>): Promise<void> {
    return this.enqueue(() => this.p.audit.append(entry.at, entry.actor, entry.action, entry.target, entry.details));
  }

  async listAudit(query: AuditQuery): Promise<AuditEntry[]> {
    return this.p.audit.list(query);
  }

  async verifyAudit(options: { anchors?: readonly AuditAnchor[] } = {}): Promise<AuditVerification> {
    await this.flushNow();
    return this.p.audit.verify(options.anchors);
  }

  async auditHead(): Promise<AuditHead> {
    await this.flushNow();
    return this.p.audit.head();
  }
}

