import type { AttemptVerdict } from '../domain/attempt-verdict.js';
import type { RelayState, SwitchAction } from '../domain/relay.js';
import type { Attempt, OrderEvent, OrderReason, OrderState, SwitchOrder } from '../domain/switch-order.js';

/**
 * The store interface the control loop and the API depend on. SQLite implements it for the embedded default;
 * PostgreSQL will implement the same interface and pass the same conformance suite (tests/store/).
 * Every method that changes an order does so in one transaction together with its event and audit rows.
 */

export interface MeterRecord {
  meterId: string;
  profileId: string;
  link: string;
  region: string;
  /** Where the meter sits on its link: Modbus unit id, DLMS HDLC server address; absent for MQTT (the id is the address). */
  address?: string | null;
}

export type ObservationSource = 'read' | 'status';

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
}

export interface OrderRequest {
  meterId: string;
  action: SwitchAction;
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
}

export interface SubmitContext {
  now: number;
  reconnectLimitHours: number;
  newOrderId: () => string;
}

export type SubmitOutcome = { kind: 'created' | 'replayed'; order: SwitchOrder };

export interface AttemptReport {
  orderId: string;
  attempt: number;
  endedAt: number;
  latencyMs: number | null;
  commandEvidence: string | null;
  readEvidence: string | null;
  observedRelay: RelayState | null;
  detail: string | null;
  /** The read-back, recorded as the meter's observed state. */
  observation: Observation | null;
  /** Decides the order's next state from the order as it is in the store now (a later order may have superseded it). */
  decide: (current: SwitchOrder) => AttemptVerdict;
}

export interface OrderQuery {
  meterId?: string;
  state?: OrderState;
  /** Orders created after this order id (cursor pagination, oldest first). */
  after?: string;
  limit: number;
}

export interface AuditEntry {
  seq: number;
  at: number;
  actor: string;
  action: string;
  target: string;
  details: unknown;
}

export interface GatewayStore {
  migrate(): Promise<void>;
  close(): Promise<void>;

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

  /** Queued orders whose time has come, whose meter has nothing on the wire, highest priority first. */
  dueOrders(now: number, limit: number, excludeLinks: readonly string[]): Promise<SwitchOrder[]>;
  /** queued → in_flight and a new attempt row, for each order still queued; returns the orders actually taken. */
  beginAttempts(orderIds: readonly string[], now: number): Promise<SwitchOrder[]>;
  /**
   * Give back a lease whose attempt never went on the wire (its link was down): in_flight → queued, the
   * attempt row removed and the attempt not counted, retried from `nextAttemptAt`.
   */
  releaseAttempt(orderId: string, attempt: number, now: number, nextAttemptAt: number, reason: string): Promise<SwitchOrder>;
  /** Close the open attempt and move the order as `decide` says; returns the order after the move. */
  completeAttempt(report: AttemptReport): Promise<SwitchOrder>;
  /** Orders left in flight (by a crash): the control loop verifies each by a read before anything else. */
  inFlightOrders(): Promise<SwitchOrder[]>;

  appendAudit(entry: Omit<AuditEntry, 'seq'>): Promise<void>;
  listAudit(target?: string, limit?: number): Promise<AuditEntry[]>;
}
