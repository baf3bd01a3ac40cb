import type { RelayState, SwitchAction } from '../domain/relay.js';
import type { PlanFacts } from '../domain/policy/meter-facts.js';
import type { Attempt, OrderState, SwitchOrder } from '../domain/switch-order.js';
import { MeterlineError } from '../errors.js';
import { parseFlags } from './sqlite-meter-facts.js';
import type { EpisodeKind } from '../domain/alert-episodes.js';
import type {
  AlertEpisode,
  ApiKeyRecord,
  BreakerScope,
  CircuitBreaker,
  FieldOutcome,
  MeterSwap,
  MeterView,
  NotificationRecord,
  Observation,
  OrderRequest,
  PaymentRequest,
  PlanDraft,
  PlanView,
  WorkOrder,
  WorkOrderStatus,
} from './store.js';

/**
 * Rows of the store's tables as the domain's types: one set of mappers for SQLite and PostgreSQL (whose pool
 * returns BIGINT as numbers), so both stores hand the rest of the gateway the same objects.
 */
export type Row = Record<string, unknown>;

export const num = (v: unknown): number => v as number;
export const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : (v as number));
export const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : (v as string));

export function orderFromRow(r: Row): SwitchOrder {
  return {
    id: r.id as string,
    meterId: r.meter_id as string,
    action: r.action as SwitchOrder['action'],
    reason: r.reason as SwitchOrder['reason'],
    note: strOrNull(r.note),
    requestedBy: r.requested_by as string,
    state: r.state as OrderState,
    stateReason: strOrNull(r.state_reason),
    priority: num(r.priority),
    urgent: r.urgent === 1 || r.urgent === true,
    link: r.link as string,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
    notBefore: num(r.not_before),
    deadline: numOrNull(r.deadline),
    paymentAt: numOrNull(r.payment_at),
    attempts: num(r.attempts),
    nextAttemptAt: num(r.next_attempt_at),
    supersededBy: strOrNull(r.superseded_by),
    completedAt: numOrNull(r.completed_at),
    resultRelay: strOrNull(r.result_relay) as RelayState | null,
    planId: strOrNull(r.plan_id),
    secondNoticeAt: numOrNull(r.second_notice_at),
    capDay: strOrNull(r.cap_day),
    escalatedAt: numOrNull(r.escalated_at),
  };
}

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

export function workOrderFromRow(r: Row): WorkOrder {
  return {
    id: r.id as string,
    // Rows from before inspections existed have no kind: they all belong to switch orders.
    kind: (strOrNull(r.kind) ?? 'switch_order') as WorkOrder['kind'],
    orderId: strOrNull(r.order_id),
    meterId: r.meter_id as string,
    region: r.region as string,
    action: r.action as WorkOrder['action'],
    reason: r.reason as string,
    raisedAt: num(r.raised_at),
    dueAt: num(r.due_at),
    deadline: numOrNull(r.deadline),
    priority: num(r.priority),
    status: r.status as WorkOrderStatus,
    assignedTo: strOrNull(r.assigned_to),
    assignedAt: numOrNull(r.assigned_at),
    completedAt: numOrNull(r.completed_at),
    outcome: strOrNull(r.outcome) as FieldOutcome | null,
    note: strOrNull(r.note),
    updatedAt: num(r.updated_at),
  };
}

/** The relay an inspection's crew left, as its outcome says (none for an outcome that says nothing about it). */
export function inspectedRelay(outcome: FieldOutcome): RelayState | null {
  return outcome === 'reconnected' ? 'connected' : outcome === 'disconnected' ? 'disconnected' : null;
}

/** What a work-order notification and its audit entry carry. */
export function workOrderPayload(w: WorkOrder): Record<string, unknown> {
  return {
    workOrderId: w.id,
    kind: w.kind,
    orderId: w.orderId,
    meterId: w.meterId,
    region: w.region,
    action: w.action,
    priority: w.priority,
    reason: w.reason,
    raisedAt: new Date(w.raisedAt).toISOString(),
    dueAt: new Date(w.dueAt).toISOString(),
    deadline: w.deadline === null ? null : new Date(w.deadline).toISOString(),
    status: w.status,
    note: w.note,
  };
}

export function episodeFromRow(r: Row): AlertEpisode {
  return {
    id: r.id as string,
    meterId: r.meter_id as string,
    kind: r.kind as EpisodeKind,
    openedAt: num(r.opened_at),
    from: num(r.from_at),
    to: num(r.to_at),
    whPerHour: numOrNull(r.wh_per_hour),
    message: r.message as string,
    details: JSON.parse((r.details as string | null) ?? '{}') as Record<string, unknown>,
    endedAt: numOrNull(r.ended_at),
    workOrderId: strOrNull(r.work_order_id),
  };
}

export function meterSwapFromRow(r: Row): MeterSwap {
  return {
    id: r.id as string,
    meterId: r.meter_id as string,
    at: num(r.at),
    oldFinalWh: num(r.old_final_wh),
    newFirstWh: num(r.new_first_wh),
    newSerial: strOrNull(r.new_serial),
    reference: strOrNull(r.reference),
    recordedBy: r.recorded_by as string,
    recordedAt: num(r.recorded_at),
  };
}

/** A plan row and its meters (plan_meters left-joined to orders, in plan order). */
export function planFromRows(r: Row, items: readonly Row[]): PlanView {
  return {
    id: r.id as string,
    status: r.status as PlanFacts['status'],
    windowFrom: num(r.window_from),
    windowTo: num(r.window_to),
    reason: r.reason as PlanDraft['reason'],
    note: strOrNull(r.note),
    author: r.author as string,
    createdAt: num(r.created_at),
    decidedBy: strOrNull(r.decided_by),
    decidedAt: numOrNull(r.decided_at),
    items: items.map((i) => ({
      meterId: i.meter_id as string,
      orderId: strOrNull(i.order_id),
      state: strOrNull(i.state) as OrderState | null,
      stateReason: strOrNull(i.state_reason),
    })),
  };
}

export function apiKeyFromRow(r: Row): ApiKeyRecord {
  return {
    id: r.id as string,
    name: r.name as string,
    role: r.role as string,
    createdBy: r.created_by as string,
    createdAt: num(r.created_at),
    revokedAt: numOrNull(r.revoked_at),
  };
}

/** What a billing client's change feed says about an order transition. */
export function orderEventPayload(order: SwitchOrder, now: number): Record<string, unknown> {
  return {
    orderId: order.id,
    meterId: order.meterId,
    action: order.action,
    reason: order.reason,
    state: order.state,
    stateReason: order.stateReason,
    attempts: order.attempts,
    relay: order.resultRelay,
    verified: order.state === 'done' || order.state === 'armed',
    deadline: order.deadline === null ? null : new Date(order.deadline).toISOString(),
    at: new Date(now).toISOString(),
  };
}

/** Why a payment cancels a pending disconnect (DOMAIN.md rule 3). */
/** What the audit log records when an order is admitted. */
/** An order request that reuses its caller's idempotency key with another body: refused, nothing changes. */
export function orderKeyConflict(key: string, orderId: string): MeterlineError {
  return new MeterlineError('E_IDEMPOTENCY_CONFLICT', `Idempotency-Key "${key}" was already used for order ${orderId} with a different request; use a new key for a new request`, { orderId });
}

export function orderAdmissionAudit(req: OrderRequest, orderId: string, outcome: string, stateReason: string | null): Record<string, unknown> {
  return { orderId, reason: req.reason, note: req.note, urgent: req.urgent, paymentAt: req.paymentAt, planId: req.planId ?? null, outcome, stateReason };
}

export const paymentCancelReason = (paymentId: string, req: PaymentRequest): string =>
  `E_PAID: payment ${paymentId} received ${new Date(req.receivedAt).toISOString()}; the disconnect is cancelled (rule 3: payment re-checked)`;

/** The reconnect a payment orders for a meter that is off for non-payment (or whose disconnect is on the wire). */
export function paymentReconnectRequest(paymentId: string, meterId: string, req: PaymentRequest): OrderRequest {
  return {
    meterId,
    action: 'reconnect',
    reason: req.kind === 'top_up' ? 'top_up' : 'payment',
    note: `payment ${paymentId}${req.reference ? ` (${req.reference})` : ''}${req.posted ? '' : ', reported, not yet posted'}`,
    urgent: false,
    notBefore: null,
    paymentAt: req.receivedAt,
    requestedBy: req.client,
    idempotencyKey: `payment:${paymentId}:${meterId}`,
    requestHash: paymentId,
  };
}
