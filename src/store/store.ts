import type { StoreWriteHealth } from './store-availability.js';
import type { EpisodeContinuation, EpisodeKind } from '../domain/alert-episodes.js';
import type { AttemptJudgement } from '../domain/attempt-decision.js';
import type { WorkOrderPlan } from '../domain/escalation.js';
import type { WeatherPeriod } from '../domain/policy/calendar.js';
import type { GateDecision } from '../domain/policy/disconnect-gate.js';
import type { MeterFlags, NoticeRecord, PlanFacts } from '../domain/policy/meter-facts.js';
import type { PolicyConfig } from '../domain/policy/policy-config.js';
import type { CreditEvent } from '../domain/prepayment/credit-ledger.js';
import type { OrderAction, RelayState, SwitchAction } from '../domain/relay.js';
import type { Attempt, OpenOrderState, OrderEvent, OrderOrigin, OrderReason, OrderState, SwitchOrder } from '../domain/switch-order.js';
import type { AuditAnchor, AuditHead } from './audit-chain.js';
import type { SealedKeySet } from '../keys/key-envelope.js';
import type { OrderSeriesBucket } from './order-series.js';

/**
 * The store interface the control loop and the API depend on. SQLite implements it for the embedded default;
 * PostgreSQL will implement the same interface and pass the same conformance suite (tests/store/).
 * Every method that changes an order does so in one transaction together with its event and audit rows.
 */

/**
 * A due order as the control loop picks it: enough to choose what starts now, and to place an admitted order among
 * those it holds (priority, deadline: the due query's order); the rest comes when it is leased.
 */
export type DueOrder = Pick<SwitchOrder, 'id' | 'meterId' | 'link' | 'action' | 'reason' | 'state' | 'priority' | 'deadline'>;

export interface MeterRecord {
  meterId: string;
  profileId: string;
  link: string;
  region: string;
  /** Where the meter sits on its link: Modbus unit id, DLMS HDLC server address; absent for MQTT (the id is the address). */
  address?: string | null;
  /** The billing account the meter belongs to (payments by account reach all its meters). */
  accountId?: string | null;
}

/**
 * How the gateway learnt a meter's state: it read it (`read`), the meter reported it on its status topic (`status`,
 * MQTT), the meter pushed it unasked (`push`, a DLMS Data-/Event-Notification, deciphered and checked when ciphered),
 * or the field crew reported it (`field`).
 */
export type ObservationSource = 'read' | 'status' | 'push' | 'field';

export interface Observation {
  relay: RelayState;
  at: number;
  source: ObservationSource;
  voltageV?: number | undefined;
  energyWh?: number | undefined;
}

export interface MeterView extends MeterRecord {
  createdAt: number;
  updatedAt: number;
  observed: { relay: RelayState; at: number; source: ObservationSource; voltageV: number | null; energyWh: number | null } | null;
  desiredRelay: 'connected' | 'disconnected' | null;
  desiredOrderId: string | null;
  flags: MeterFlags;
}

export interface OrderRequest {
  meterId: string;
  action: OrderAction;
  /** For `limit`: the demand limit in watts, or null to remove it (DOMAIN.md rule 10); absent for relay orders. */
  limitW?: number | null;
  reason: OrderReason;
  note: string | null;
  urgent: boolean;
  notBefore: number | null;
  paymentAt: number | null;
  requestedBy: string;
  /** Scoped to `requestedBy`; null when the caller gave none. */
  idempotencyKey: string | null;
  /** Hash of the request body, to tell a retry (same body) from a conflicting reuse of the key. */
  requestHash: string;
  /** The approved disconnect plan the order belongs to (DOMAIN.md rule 7). */
  planId?: string | null;
  /** The path it comes in by, set by the admitting code (default `api`): only `credit_control` may cut off for credit. */
  origin?: OrderOrigin;
  /** The evidence a disconnect reason needs: the request, the move-out record, the incident (rule 7). */
  reference?: string | null;
}

export interface SubmitContext {
  now: number;
  reconnectLimitHours: number;
  newOrderId: () => string;
  /** The disconnect rules, applied to every disconnect at admission (and again before every attempt). */
  policy: PolicyConfig;
}

export type SubmitOutcome = { kind: 'created' | 'replayed'; order: SwitchOrder };

/**
 * An instance's hold on the orders it has put on the wire. Other instances take an in-flight order over (and
 * verify it by a read) only once its lease has run out; the holder renews its leases while it lives.
 */
export interface Lease {
  /** The instance holding it (its configured `instanceId`). */
  owner: string;
  /** Epoch ms the lease runs out unless renewed. */
  until: number;
}

export interface AttemptReport {
  orderId: string;
  attempt: number;
  /** The instance reporting; the report is refused (E_LEASE_LOST) if another instance has taken the order over. */
  leaseOwner: string;
  endedAt: number;
  latencyMs: number | null;
  commandEvidence: string | null;
  readEvidence: string | null;
  observedRelay: RelayState | null;
  detail: string | null;
  /** The read-back, recorded as the meter's observed state. */
  observation: Observation | null;
  /** Decides the order's next state (decideAttempt) from the order as it is in the store now (a later order may have superseded it). */
  judgement: AttemptJudgement;
}

export interface OrderQuery {
  meterId?: string;
  /** Any of these states. */
  states?: readonly OrderState[];
  action?: OrderAction;
  requestedBy?: string;
  reason?: string;
  /** A substring of the note, case-sensitive. */
  noteContains?: string;
  /** Created at or after this time (ms). */
  createdFrom?: number;
  /** Created before this time (ms). */
  createdBefore?: number;
  /** The order id, or its beginning. */
  idPrefix?: string;
  /** The cursor: the orders that come after this order id in the chosen order. An id that names no order is E_VALIDATION. */
  after?: string;
  /** Oldest first (default) or newest first; by insertion, which is creation order. */
  order?: 'asc' | 'desc';
  limit: number;
}

export interface AuditEntry {
  seq: number;
  at: number;
  actor: string;
  action: string;
  target: string;
  details: unknown;
  /** This entry's link in the hash chain. */
  hash: string;
}

export interface AuditQuery {
  target?: string;
  actor?: string;
  /** An action (`alert.clear`), or every action under a prefix ending in a dot (`alert.`). */
  action?: string;
  from?: number;
  to?: number;
  afterSeq?: number;
  /** Entries before this one (the next page when newest first). */
  beforeSeq?: number;
  newestFirst?: boolean;
  limit: number;
}

export type AuditVerification =
  | { ok: true; entries: number; lastHash: string; keyId: string; keyedFrom: number; anchorsChecked: number }
  /** `badSeq`: the first entry that is wrong or missing; absent when the keying record itself is. */
  | { ok: false; entries: number; badSeq?: number; problem: string };

/** One row of a bulk import of customer and meter facts: every field but meterId optional. */
export interface MeterFactsRow {
  meterId: string;
  region?: string;
  flags?: Partial<MeterFlags>;
  notice?: Omit<NoticeRecord, 'id' | 'meterId' | 'recordedBy' | 'recordedAt'>;
}

export interface PlanDraft {
  reason: 'arrears' | 'credit_exhausted';
  /** A limiting plan (rule 10): each meter gets a limit order of this many watts instead of a disconnect; absent or null: a disconnect plan. */
  limitW?: number | null;
  note: string | null;
  windowFrom: number;
  windowTo: number;
  meterIds: string[];
}

export interface PlanView extends PlanFacts {
  reason: PlanDraft['reason'];
  limitW: number | null;
  note: string | null;
  author: string;
  createdAt: number;
  decidedBy: string | null;
  decidedAt: number | null;
  items: { meterId: string; orderId: string | null; state: OrderState | null; stateReason: string | null }[];
}

export interface ApiKeyRecord {
  id: string;
  /** The client the key belongs to (its identity; see domain/client-identity.ts). Rotation keeps it. */
  clientId: string;
  /** The client's label when the key was made; decides nothing. */
  name: string;
  role: string;
  createdBy: string;
  createdAt: number;
  revokedAt: number | null;
  /** When it last authenticated a request, to within API_KEY_USE_GRANULARITY_MS; null: never (or before this was kept). */
  lastUsedAt: number | null;
}

/** A key's use is recorded at most this often: a write per minute per key, not per request. */
export const API_KEY_USE_GRANULARITY_MS = 60_000;

/** A new key for an existing client (by id: it acts as that client) or for a new client (by its label). */
export interface NewApiKey {
  client: { id: string } | { name: string };
  role: string;
  sha256: string;
}

/**
 * The answer kept for an Idempotency-Key of a write other than a switch order or a payment. The key is reserved
 * (`pending`) before the write acts, so one request acts and every other with that key gets its answer.
 */
export type IdempotentAnswer =
  | { state: 'pending'; requestHash: string; since: number }
  | { state: 'done'; requestHash: string; status: number; body: unknown };

export interface NotificationRecord {
  id: string;
  kind: string;
  meterId: string;
  orderId: string | null;
  payload: unknown;
  createdAt: number;
  attempts: number;
  deliveredAt: number | null;
  lastError: string | null;
}

/** What a person made of an alert (issue 17): open until someone acknowledges it (seen, being handled), then cleared (over). */
export const ALERT_STATES = ['open', 'acknowledged', 'cleared'] as const;
export type AlertState = (typeof ALERT_STATES)[number];
export const ALERT_ACTS = ['acknowledge', 'clear'] as const;
export type AlertAct = (typeof ALERT_ACTS)[number];

/** An alert (an outbox record of kind `alert.*`) with who acknowledged and cleared it. */
export interface AlertRecord extends NotificationRecord {
  state: AlertState;
  acknowledgedAt: number | null;
  acknowledgedBy: string | null;
  clearedAt: number | null;
  clearedBy: string | null;
}

export interface ObservationRecord extends Observation {
  meterId: string;
}

export const FIELD_OUTCOMES = ['reconnected', 'disconnected', 'meter_faulty', 'no_access', 'customer_refused'] as const;
export type FieldOutcome = (typeof FIELD_OUTCOMES)[number];
export const WORK_ORDER_STATUSES = ['open', 'assigned', 'done', 'cancelled'] as const;
export type WorkOrderStatus = (typeof WORK_ORDER_STATUSES)[number];
/**
 * `switch_order`: raised from a failed or late remote action, settles its switch order (rule 11); `credentials`:
 * raised when the meter refused the gateway's keys (no remote retry follows), settles its switch order the same
 * way, and says the key file or the meter's keys must be put right; `load_side_voltage`: raised when a close was
 * refused for voltage on the load side (rule 14, no remote close follows), settles its switch order the same way,
 * priority 1, the crew makes the customer's side safe first; `inspection`: raised by the relay audit
 * (rule 17) with no switch order behind it, someone must look at the customer.
 */
export const WORK_ORDER_KINDS = ['switch_order', 'credentials', 'load_side_voltage', 'inspection'] as const;
export type WorkOrderKind = (typeof WORK_ORDER_KINDS)[number];
export const WORK_ORDER_ACTIONS = ['disconnect', 'reconnect', 'inspect'] as const;
export type WorkOrderAction = (typeof WORK_ORDER_ACTIONS)[number];

/** A field work order: from a failed or late remote action, due before the deadline (rule 11), or an inspection (rule 17). */
export interface WorkOrder {
  id: string;
  kind: WorkOrderKind;
  /** The switch order it belongs to; null for an inspection. */
  orderId: string | null;
  meterId: string;
  region: string;
  /** The switch order's action; `inspect` for an inspection. */
  action: WorkOrderAction;
  /** Why it was raised. */
  reason: string;
  raisedAt: number;
  dueAt: number;
  deadline: number | null;
  /** 1 (most urgent) to 4. */
  priority: number;
  status: WorkOrderStatus;
  assignedTo: string | null;
  assignedAt: number | null;
  completedAt: number | null;
  outcome: FieldOutcome | null;
  /** The crew's note, or why the order was cancelled. */
  note: string | null;
  updatedAt: number;
}

export type BreakerScope = 'profile' | 'link' | 'region';

/** A population whose disconnect success collapsed: new disconnects for it are held until an operator resets it. */
export interface CircuitBreaker {
  id: string;
  scope: BreakerScope;
  key: string;
  action: SwitchAction;
  openedAt: number;
  reason: string;
  resetAt: number | null;
  resetBy: string | null;
}

export interface AttemptStatsRow {
  profileId: string;
  link: string;
  region: string;
  action: OrderAction;
  attempts: number;
  ok: number;
  firstAttempts: number;
  firstOk: number;
  /** Distinct meters with at least one attempt that did not end ok (a scope alert needs failures on enough meters). */
  failedMeters: number;
}

export interface OrderOutcomeRow {
  profileId: string;
  link: string;
  region: string;
  action: OrderAction;
  finished: number;
  succeeded: number;
  /** Distinct meters with at least one order that did not end well remotely. */
  failedMeters: number;
}

export interface PaymentRequest {
  client: string;
  idempotencyKey: string;
  requestHash: string;
  /** One of meterId or accountId (all the account's meters). */
  meterId: string | null;
  accountId: string | null;
  /** Whole minor units (cents, pence), validated at the edge: 1 to payments.maxAmountMinor (money.ts). */
  amountMinor: number;
  kind: 'payment' | 'top_up';
  /** Reported but not yet posted (bank or agent collection) still reconnects (DOMAIN.md rule 13). */
  posted: boolean;
  reference: string | null;
  receivedAt: number;
}

/** What the store checks of payments beyond their own form (money.ts): the prepayment balance bound. */
export interface PaymentLimits {
  /** A top-up may not leave a prepayment meter's credit balance above this, minor units. */
  maxCreditBalanceMinor: number;
}

/** Why a payment file would be refused, by row index. */
export interface PaymentCheck {
  missing: { index: number; meterId: string | null; accountId: string | null }[];
  conflicts: { index: number; key: string }[];
  /** Top-ups that would take a prepayment meter's balance over the limit (the file's earlier top-ups counted in). */
  overLimit: { index: number; meterId: string; balanceAfterMinor: number }[];
}

export interface PaymentEffect {
  meterId: string;
  /** Disconnects for non-payment not yet on the wire, cancelled by this payment. */
  cancelledOrders: string[];
  /** The reconnect this payment created (the meter was off for arrears or credit, or being cut off). */
  reconnectOrderId: string | null;
  /** The removal of a limit set for arrears this payment created (DOMAIN.md rule 10); absent on payments recorded before limits. */
  limitRemovalOrderId?: string | null;
  note: string;
}

export interface PaymentRecord {
  id: string;
  client: string;
  accountId: string | null;
  meterId: string | null;
  /**
   * Whole minor units. Null only for a row recorded before amounts were bounded (issue 14) whose amount could not
   * be a payment (beyond MONEY_CEILING_MINOR): the upgrade keeps the row but no amount, and the ledger never
   * counted it.
   */
  amountMinor: number | null;
  kind: 'payment' | 'top_up';
  posted: boolean;
  reference: string | null;
  receivedAt: number;
  recordedAt: number;
  effects: PaymentEffect[];
}

export interface CallbackSubscription {
  client: string;
  url: string;
  secret: string;
  updatedAt: number;
}

/** One change a billing client hears about: the change feed and, with its delivery state, the delivery log. */
export interface ClientEvent {
  /**
   * The event's number in its client's feed: 1 for the client's first event, then exactly one more for each
   * next one, whatever other clients do; never skipped, never reused. (client, seq) names the event.
   */
  seq: number;
  client: string;
  meterId: string;
  orderId: string;
  kind: string;
  payload: Record<string, unknown>;
  at: number;
  attempts: number;
  /** When a failed delivery is tried again. */
  nextAttemptAt: number;
  deliveredAt: number | null;
  lastError: string | null;
}

/** What credit control remembers per meter: the top-up cycle, the warnings and offer made in it, the last reading charged. */
export interface CreditControlMemory {
  cycleRef: string | null;
  warningsSent: number[];
  emergencyOffered: boolean;
  lastReading: { at: number; energyWh: number } | null;
}

/**
 * One alert episode (domain/alert-episodes.ts): a lasting condition on one meter, alerted once when it starts.
 * `from`..`to` is the period the evidence covers (relay audit: first and latest run that saw it).
 */
export interface AlertEpisode {
  id: string;
  meterId: string;
  kind: EpisodeKind;
  /** When it was claimed, and alerted. */
  openedAt: number;
  from: number;
  to: number;
  /** Consumption: the rate (Wh/h) behind the alert; null where no rate applies. */
  whPerHour: number | null;
  message: string;
  details: Record<string, unknown>;
  /** When a later sighting showed it over (relay audit: a run no longer saw it; consumption: a new episode began). */
  endedAt: number | null;
  /** The inspection work order raised with it, if any. */
  workOrderId: string | null;
}

/** A sighting of a condition, claimed as an episode: only the claim that opens the episode alerts. */
export interface EpisodeClaim {
  meterId: string;
  kind: EpisodeKind;
  from: number;
  to: number;
  whPerHour: number | null;
  message: string;
  details: Record<string, unknown>;
  continues: EpisodeContinuation;
  /** Recorded in the outbox (with the episode and work order ids) only when the claim opens a new episode. */
  alert: { kind: string; payload: Record<string, unknown> };
  /** An inspection work order raised with a new episode. */
  inspection?: (WorkOrderPlan & { region: string }) | null;
}

/** A meter (or its register) replaced: readings before `at` are never compared with readings after it. */
export interface MeterSwap {
  id: string;
  meterId: string;
  at: number;
  oldFinalWh: number;
  newFirstWh: number;
  newSerial: string | null;
  reference: string | null;
  recordedBy: string;
  recordedAt: number;
}

export interface RelayAuditRun {
  id: string;
  ranAt: number;
  meters: number;
  exceptions: unknown[];
}

/** Which held disconnects a policy change wakes, so the gate looks at them again within one tick. */
export interface WakeFilter {
  meterId?: string;
  orderId?: string;
  /** Only orders held by one of these codes (their state reason starts with it). */
  codes?: readonly string[];
}

/** What the gate saw and did for one disconnect just before its attempt. */
export type DisconnectLease = { leased: SwitchOrder } | { leased: null; order: SwitchOrder; decision: GateDecision | null };

/** Where a meter's key set stands: in use, staged by a renewal and not yet proven, or no longer used. */
export type KeySetState = 'current' | 'pending' | 'retired';

/** A meter's key set as anyone may see it: ids, state and times, never key bytes. */
export interface MeterKeySetRecord {
  meterId: string;
  keySetId: string;
  state: KeySetState;
  createdBy: string;
  createdAt: number;
  confirmedAt: number | null;
  retiredAt: number | null;
}

/** A key set as the keyring reads it: the record and its material, sealed under the key master (never in clear). */
export interface StoredMeterKeySet extends MeterKeySetRecord {
  sealed: SealedKeySet;
}

/** A key set to put in the store: its id and its sealed material. */
export interface NewMeterKeySet {
  meterId: string;
  keySetId: string;
  sealed: SealedKeySet;
  /**
   * The meter's system title (16 hex digits, lower case) when the key file gives it. Not a secret (the meter sends it
   * in clear in every ciphered APDU); kept beside the sealed material so a pushed notification finds its meter.
   */
  systemTitle?: string | null;
}

/** What importing one key set did: made it the meter's keys, found it already there, or replaced other keys (`replace`). */
export interface KeySetPutOutcome {
  meterId: string;
  keySetId: string;
  result: 'created' | 'unchanged' | 'replaced';
  /** The key sets this one retired (with `replace` only). */
  replaced: string[];
}

/** The largest DLMS invocation counter (a 32-bit unsigned integer, Green Book 9.2.7.2.4.2). */
export const MAX_INVOCATION_COUNTER = 0xffff_ffff;

export interface GatewayStore {
  migrate(): Promise<void>;
  close(): Promise<void>;
  /**
   * Whether the store takes writes, judged by its latest writes (and, for a file, the free space beside it). A write
   * the store cannot take (disk full, read-only, server down) fails with E_STORE_UNAVAILABLE; this stays false,
   * naming the store and the cause, until a write succeeds again.
   */
  writeHealth(): StoreWriteHealth;

  upsertMeters(meters: readonly MeterRecord[], now: number): Promise<void>;
  getMeter(meterId: string): Promise<MeterView | undefined>;
  /** Which of these meter ids are registered. */
  existingMeterIds(meterIds: readonly string[]): Promise<Set<string>>;
  recordObservation(meterId: string, observation: Observation): Promise<void>;

  /**
   * Admit new orders atomically: all or none. Applies idempotency (same key and body → the existing order;
   * same key, other body → E_IDEMPOTENCY_CONFLICT) and latest-intent-wins per meter (domain/admission.ts).
   * Throws MeterlineError E_METER_NOT_FOUND / E_IDEMPOTENCY_CONFLICT and changes nothing.
   */
  submitOrders(requests: readonly OrderRequest[], ctx: SubmitContext): Promise<SubmitOutcome[]>;

  getOrder(orderId: string): Promise<SwitchOrder | undefined>;
  listOrders(query: OrderQuery): Promise<SwitchOrder[]>;
  openOrdersForMeter(meterId: string): Promise<SwitchOrder[]>;
  listAttempts(orderId: string): Promise<Attempt[]>;
  listOrderEvents(orderId: string): Promise<OrderEvent[]>;
  countOrdersByState(): Promise<Partial<Record<OrderState, number>>>;
  /** Open orders by state (OPEN_ORDER_STATES only; a state with none is absent), read through the state index. */
  countOpenOrdersByState(): Promise<Partial<Record<OpenOrderState, number>>>;
  /**
   * Orders over time (src/store/order-series.ts): buckets of `stepMs` from `from` covering `to`, each with the
   * orders finished in it, how many ended well remotely, and the orders open at its end. Index range scans only.
   */
  orderSeries(from: number, to: number, stepMs: number): Promise<OrderSeriesBucket[]>;

  /** Queued orders whose time has come, whose meter has nothing on the wire, highest priority first (what the loop needs to pick them). */
  dueOrders(now: number, limit: number, excludeLinks: readonly string[]): Promise<DueOrder[]>;
  /** queued → in_flight and a new attempt row under `lease`, for each order still queued; returns the orders actually taken. */
  beginAttempts(orderIds: readonly string[], now: number, lease: Lease): Promise<SwitchOrder[]>;
  /**
   * Give back a lease whose attempt never went on the wire (its link was down): in_flight → queued, the
   * attempt row removed and the attempt not counted, retried from `nextAttemptAt`.
   */
  releaseAttempt(orderId: string, attempt: number, now: number, nextAttemptAt: number, reason: string, leaseOwner: string): Promise<SwitchOrder>;
  /** Close the open attempt and move the order as `decide` says; returns the order after the move. */
  completeAttempt(report: AttemptReport): Promise<SwitchOrder>;
  /** A person withdraws an order not yet on the wire (queued, held, escalated): cancelled, audited, its work order cancelled. */
  cancelOrder(orderId: string, actor: string, reason: string, now: number): Promise<SwitchOrder>;
  /** Every order in flight now, on any instance (inspection and tests). */
  inFlightOrders(): Promise<SwitchOrder[]>;
  /** Extend to `lease.until` the leases `lease.owner` still holds on these in-flight orders; returns how many. */
  renewLeases(lease: Lease, orderIds: readonly string[]): Promise<number>;
  /**
   * Take over in-flight orders whose lease ran out by `now` (their instance died or lost the store), and with
   * `includeOwn` also those still leased to `lease.owner` (a restarted instance's own previous life); at most
   * `limit`, oldest first, each now under `lease`. The caller verifies each by a read before anything else.
   */
  claimOrphans(lease: Lease, now: number, limit: number, includeOwn: boolean): Promise<SwitchOrder[]>;
  /**
   * Hold the named duty (work one instance at a time must do) under `lease`: true when `lease.owner` holds it
   * now, because it was free, its holder's lease ran out by `now`, or it already held it (renewed).
   */
  holdDuty(name: string, lease: Lease, now: number): Promise<boolean>;
  /** Give the duty up at once if `owner` holds it, so another instance takes it without waiting a lease. */
  releaseDuty(name: string, owner: string): Promise<void>;

  // ---- customer and meter facts (DOMAIN.md rules 1, 6, 8, 9, 10) ----
  setMeterFlags(meterId: string, patch: Partial<MeterFlags>, actor: string, now: number): Promise<MeterFlags>;
  addNotice(notice: Omit<NoticeRecord, 'id' | 'recordedAt'>, now: number): Promise<NoticeRecord>;
  listNotices(meterId: string): Promise<NoticeRecord[]>;
  /** All rows or none; throws E_METER_NOT_FOUND naming the rows whose meter is unknown. */
  importMeterFacts(rows: readonly MeterFactsRow[], actor: string, now: number): Promise<{ meters: number; notices: number }>;

  // ---- extreme-weather periods (rule 5) ----
  declareWeather(period: Omit<WeatherPeriod, 'id'>, actor: string, now: number): Promise<WeatherPeriod>;
  liftWeather(id: string, actor: string, now: number): Promise<WeatherPeriod | undefined>;
  listWeather(activeAt?: number): Promise<WeatherPeriod[]>;

  // ---- disconnect plans, maker–checker (rule 7) ----
  createPlan(draft: PlanDraft, actor: string, now: number): Promise<PlanView>;
  getPlan(planId: string): Promise<PlanView | undefined>;
  listPlans(status?: PlanFacts['status']): Promise<PlanView[]>;
  /** approve (creates the plan's orders; not by its author) | reject | cancel (cancels its open orders). */
  decidePlan(planId: string, decision: 'approve' | 'reject' | 'cancel', actor: string, ctx: SubmitContext): Promise<PlanView>;

  // ---- the gate before each disconnect attempt ----
  /** Evaluate the rules on fresh facts; apply a refusal, a hold or a second notice. `decision` is null when the order no longer waits. */
  gateDisconnect(orderId: string, now: number, policy: PolicyConfig): Promise<{ order: SwitchOrder; decision: GateDecision | null }>;
  /** The billing hook answered "paid" (cancel) or could not be reached (hold until `retryAt`). */
  recordPaymentCheck(orderId: string, now: number, outcome: 'paid' | 'unreachable', detail: string, retryAt: number): Promise<SwitchOrder>;
  /** Re-check the rules, reserve the day's cap slot and lease the order, atomically. */
  leaseDisconnect(orderId: string, now: number, policy: PolicyConfig, lease: Lease): Promise<DisconnectLease>;
  /**
   * A policy changed (a weather period lifted, a breaker reset, a meter's flags, an approval, a restart with a new
   * calendar): the held disconnects it may concern are due now, so the gate looks at them again within one tick.
   * Escalated disconnects too: a crew must not go and cut a customer a rule now protects. Returns how many.
   */
  wakeHeldDisconnects(filter: WakeFilter, now: number): Promise<number>;
  /**
   * A supervisor approves one disconnect that waits for approval (rule 7, maker–checker): never the one who asked
   * for it (E_SELF_APPROVAL), only an open disconnect (E_NOT_AWAITING_APPROVAL). Audited; the order is woken.
   */
  approveOrder(orderId: string, actor: string, now: number): Promise<SwitchOrder>;

  // ---- notifications outbox (rule 2's pre-disconnect notice, later billing callbacks) ----
  /** Undelivered notifications due now whose kind starts with one of `kindPrefixes`. */
  pendingNotifications(now: number, limit: number, kindPrefixes: readonly string[]): Promise<NotificationRecord[]>;
  markNotification(id: string, now: number, result: { delivered: true } | { delivered: false; error: string; retryAt: number }): Promise<void>;
  listNotifications(meterId: string): Promise<NotificationRecord[]>;

  // ---- clients and their API keys (keys stored hashed, rotatable, revocable) ----
  /** Throws E_CLIENT_NOT_FOUND for a key asked for an unknown client id. Audited (the secret's hash is not). */
  createApiKey(key: NewApiKey, actor: string, now: number): Promise<ApiKeyRecord>;
  /** The clients of keys from configuration (and demo keys): created, or their label updated, so keys can be issued to them. */
  registerClients(clients: readonly { id: string; name: string }[], now: number): Promise<void>;
  rotateApiKey(id: string, sha256: string, actor: string, now: number): Promise<ApiKeyRecord | undefined>;
  revokeApiKey(id: string, actor: string, now: number): Promise<ApiKeyRecord | undefined>;
  findApiKey(sha256: string): Promise<(ApiKeyRecord & { sha256: string }) | undefined>;
  listApiKeys(): Promise<ApiKeyRecord[]>;
  /** Record that the key authenticated a request now (kept only when the last record is a minute old or more). */
  touchApiKey(id: string, now: number): Promise<void>;

  // ---- history for the timeline and "fault or disconnect?" (rules 18, 19) ----
  listObservations(meterId: string, limit: number): Promise<ObservationRecord[]>;
  /** The meter's last `limit` readings of its energy register, oldest first (abnormal consumption, rule 20). */
  energyReadings(meterId: string, limit: number): Promise<{ at: number; energyWh: number }[]>;
  /** The last order of this action for the meter that ended done (or armed): for `limit`, the limit in force. */
  lastCompletedOrder(meterId: string, action: OrderAction): Promise<SwitchOrder | undefined>;

  // ---- field work orders (DOMAIN.md rule 11) ----
  /** Raise the order's work order (once) and put the order on slow remote retries. */
  escalateOrder(orderId: string, now: number, plan: WorkOrderPlan, slowRetryAt: number): Promise<{ order: SwitchOrder; workOrder: WorkOrder } | undefined>;
  /** Open reconnects not yet escalated whose deadline is at or before `before`. */
  reconnectsNearDeadline(before: number, limit: number): Promise<SwitchOrder[]>;
  listWorkOrders(query: { status?: WorkOrderStatus; region?: string; orderId?: string; limit: number }): Promise<WorkOrder[]>;
  getWorkOrder(id: string): Promise<WorkOrder | undefined>;
  assignWorkOrder(id: string, assignee: string, actor: string, now: number): Promise<WorkOrder>;
  /**
   * The crew's outcome closes the work order and settles the switch order and the meter's state; an inspection
   * has no switch order (`order` null): `reconnected` / `disconnected` record the relay the crew left.
   */
  completeWorkOrder(id: string, outcome: FieldOutcome, note: string | null, actor: string, now: number): Promise<{ workOrder: WorkOrder; order: SwitchOrder | null }>;

  // ---- success rates and circuit breakers (DOMAIN.md rule 16) ----
  attemptStats(since: number): Promise<AttemptStatsRow[]>;
  orderOutcomeStats(since: number): Promise<OrderOutcomeRow[]>;
  /** Opens a breaker unless one is already open for the population; returns the new one. */
  openBreaker(scope: BreakerScope, key: string, action: SwitchAction, reason: string, now: number): Promise<CircuitBreaker | undefined>;
  listBreakers(openOnly: boolean): Promise<CircuitBreaker[]>;
  resetBreaker(id: string, actor: string, now: number): Promise<CircuitBreaker | undefined>;
  /** Record a population-level alert in the outbox (kind `alert.*`). */
  recordAlert(kind: string, payload: Record<string, unknown>, now: number): Promise<void>;

  // ---- readings, relay audit, alerts, gauges (DOMAIN.md rules 16, 17, 20) ----
  /** Meters in id order after `afterMeterId`, for scheduled reads and the relay audit. */
  listMeters(afterMeterId: string | null, limit: number): Promise<MeterView[]>;
  /** Per meter: whether an order is open, and whether its latest disconnect ended done (for the relay audit and the supply answer). */
  relayAuditFacts(meterIds: readonly string[]): Promise<Map<string, { hasOpenOrder: boolean; lastDisconnectDone: boolean; armedSince: number | null }>>;
  saveRelayAudit(run: RelayAuditRun): Promise<void>;
  latestRelayAudit(): Promise<RelayAuditRun | undefined>;
  /** Alerts, newest first; only those in `state` when given. */
  listAlerts(limit: number, state?: AlertState): Promise<AlertRecord[]>;
  /**
   * Acknowledge or clear an alert, audited (`alert.acknowledge`, `alert.clear`, with the note). Acknowledging an
   * acknowledged alert changes nothing; clearing an acknowledged one is fine. Throws E_ALERT_NOT_FOUND for an unknown
   * id (or a record that is no alert) and E_ALERT_CLEARED for a cleared alert: it is over, nothing more to do.
   */
  actOnAlert(id: string, act: AlertAct, note: string | null, actor: string, now: number): Promise<AlertRecord>;
  /**
   * Claim a sighting atomically: it continues the meter's open episode of its kind (no alert), or it opens a new
   * one, ending the open one, and records its alert and its inspection work order in the same transaction. Two
   * instances (or a restarted one) claiming the same sighting open one episode between them.
   */
  claimEpisode(claim: EpisodeClaim, now: number): Promise<{ episode: AlertEpisode; opened: boolean }>;
  /** End every open episode whose kind starts with `kindPrefix` except those in `keep` (a relay-audit run no longer saw them). */
  endEpisodes(kindPrefix: string, keep: readonly { meterId: string; kind: EpisodeKind }[], now: number): Promise<AlertEpisode[]>;
  /** Episodes, newest first. */
  listEpisodes(query: { meterId?: string; kindPrefix?: string; openOnly?: boolean; limit: number }): Promise<AlertEpisode[]>;
  /** Record a meter swap (audited). Throws E_METER_NOT_FOUND. */
  recordMeterSwap(swap: Omit<MeterSwap, 'id' | 'recordedAt'>, now: number): Promise<MeterSwap>;
  /** The meter's last `limit` swaps, oldest first. */
  listMeterSwaps(meterId: string, limit: number): Promise<MeterSwap[]>;
  countWorkOrdersByStatus(): Promise<Record<string, number>>;
  /** The earliest deadline among open reconnects (for the "time left" gauge). */
  mostUrgentReconnectDeadline(): Promise<number | null>;

  // ---- billing: payments, callbacks, change feed (issue 7) ----
  /**
   * All or nothing: unknown meters or accounts throw E_METER_NOT_FOUND; a key reused with another body throws
   * E_IDEMPOTENCY_CONFLICT; a top-up that would take a prepayment meter's balance over `limits.maxCreditBalanceMinor`
   * throws E_CREDIT_BALANCE_LIMIT.
   */
  recordPayments(requests: readonly PaymentRequest[], ctx: SubmitContext, limits: PaymentLimits): Promise<{ kind: 'created' | 'replayed'; payment: PaymentRecord }[]>;
  /** What would make `recordPayments` refuse these (unknown meters or accounts, reused keys, balances over the limit): checked before a large file is applied in parts. */
  checkPayments(requests: readonly PaymentRequest[], limits: PaymentLimits): Promise<PaymentCheck>;
  listPayments(query: { client?: string; from?: number; to?: number; limit: number }): Promise<PaymentRecord[]>;
  setCallback(client: string, url: string, secret: string, now: number): Promise<CallbackSubscription>;
  getCallback(client: string): Promise<CallbackSubscription | undefined>;
  listCallbacks(): Promise<CallbackSubscription[]>;
  /** The client's events with a seq above `afterSeq`, in seq order; only one order's when `orderId` is given. */
  clientEvents(client: string, afterSeq: number, limit: number, orderId?: string): Promise<ClientEvent[]>;
  pendingClientEvents(client: string, limit: number): Promise<ClientEvent[]>;
  markClientEvent(client: string, seq: number, now: number, result: { delivered: true } | { delivered: false; error: string; retryAt: number }): Promise<void>;

  // ---- prepayment credit (issue 7) ----
  appendCreditEvent(meterId: string, event: CreditEvent, actor: string): Promise<void>;
  creditEvents(meterId: string): Promise<CreditEvent[]>;
  creditControl(meterId: string): Promise<CreditControlMemory>;
  setCreditControl(meterId: string, memory: CreditControlMemory): Promise<void>;

  // ---- idempotent answers for writes other than switch orders and payments (api/idempotent-write.ts) ----
  /**
   * Reserve (principal, key) for the request with this hash, in one atomic insert: `reserved` when this call got
   * it (it now acts, then saves or releases), otherwise what is there (pending or done, maybe for another hash).
   */
  reserveIdempotentWrite(principal: string, key: string, requestHash: string, now: number): Promise<{ reserved: true } | { reserved: false; prior: IdempotentAnswer }>;
  getIdempotentResponse(principal: string, key: string): Promise<IdempotentAnswer | undefined>;
  /** The reserved key's answer, replayed from now on. Never pass a secret: it would be stored. */
  saveIdempotentResponse(principal: string, key: string, requestHash: string, status: number, body: unknown): Promise<void>;
  /** Give a reservation back (its write failed, changing nothing), so that a retry can act. */
  releaseIdempotentWrite(principal: string, key: string, requestHash: string): Promise<void>;

  // ---- per-meter DLMS keys and invocation counters (issue 15; src/keys/) ----
  /**
   * Import key sets, all or none, in one transaction: a set already there is `unchanged` (importing a file twice
   * changes nothing); a meter whose current keys are other keys is E_KEY_SET_CONFLICT unless `replace`, which
   * retires its current and pending sets. Audited per meter with key set ids only.
   */
  putMeterKeySets(sets: readonly NewMeterKeySet[], options: { replace: boolean }, actor: string, now: number): Promise<KeySetPutOutcome[]>;
  /** A meter's key sets, current and pending first, then the retired ones, newest first. */
  meterKeySets(meterId: string): Promise<StoredMeterKeySet[]>;
  /** Stage a renewal's new keys as the meter's pending key set (a pending set before it is retired). */
  stageMeterKeySet(set: NewMeterKeySet, actor: string, now: number): Promise<MeterKeySetRecord>;
  /** The pending set proved itself in an association: it becomes current and the current one is retired. */
  confirmMeterKeySet(meterId: string, keySetId: string, actor: string, now: number): Promise<MeterKeySetRecord>;
  retireMeterKeySet(meterId: string, keySetId: string, actor: string, now: number): Promise<MeterKeySetRecord>;
  /**
   * The meter whose current or pending key set names this system title (16 hex digits, any case), with that key set's
   * id; undefined when none does (retired sets are not asked). A pushed ciphered notification finds its sender so.
   */
  meterKeySetBySystemTitle(systemTitle: string): Promise<{ meterId: string; keySetId: string } | undefined>;
  /** Current and pending key sets whose system title is not recorded (imported before it was kept), at most `limit`. */
  meterKeySetsWithoutSystemTitle(limit: number): Promise<StoredMeterKeySet[]>;
  /** Record a key set's system title (16 hex digits), read from its opened material; a recorded one is kept. */
  recordMeterKeySetSystemTitle(meterId: string, keySetId: string, systemTitle: string): Promise<void>;
  /**
   * Reserve `block` invocation counter values of a meter's key set that were never reserved before, by this or any
   * other instance, and return the first: the block is [start, start + block). Durable before it returns; one
   * atomic statement, so two instances never get overlapping blocks. The first block starts at 1.
   * E_INVOCATION_COUNTER_EXHAUSTED when the block would go past 2^32 - 1.
   */
  reserveInvocationCounters(meterId: string, keySetId: string, block: number): Promise<number>;
  /** No value below `atLeast` is handed out from now on (the meter's frame counter says it expects at least that). */
  raiseInvocationCounter(meterId: string, keySetId: string, atLeast: number): Promise<void>;

  // ---- audit: append-only, a chain keyed with a key outside the database (audit-chain.ts) ----
  appendAudit(entry: Omit<AuditEntry, 'seq' | 'hash'>): Promise<void>;
  listAudit(query: AuditQuery): Promise<AuditEntry[]>;
  /** Check every link under the audit key, and that the log still reaches each anchor with the anchor's head. */
  verifyAudit(options?: { anchors?: readonly AuditAnchor[] }): Promise<AuditVerification>;
  /** The chain's head now (entries, head link, key id): what an anchor records. */
  auditHead(): Promise<AuditHead>;
}
