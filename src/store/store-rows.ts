import { createHash } from 'node:crypto';
import type { RelayState, SwitchAction } from '../domain/relay.js';
import type { WeatherPeriod } from '../domain/policy/calendar.js';
import type { GateInput } from '../domain/policy/disconnect-gate.js';
import type { MeterFlags, NoticeRecord, PlanFacts } from '../domain/policy/meter-facts.js';
import type { PolicyConfig } from '../domain/policy/policy-config.js';
import { balanceAfterTopUp, CreditEventSchema, ledgerBalances, ledgerShowsNoCredit, type CreditEvent } from '../domain/prepayment/credit-ledger.js';
import { ORDER_ORIGINS, type Attempt, type OrderOrigin, type OrderState, type SwitchOrder } from '../domain/switch-order.js';
import { MeterlineError } from '../errors.js';
import type { DueOrder } from './store.js';
import { parseFlags } from './sqlite-meter-facts.js';
import type { EpisodeKind } from '../domain/alert-episodes.js';
import type {
  AlertAct,
  AlertEpisode,
  AlertRecord,
  AlertState,
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
    limitW: numOrNull(r.limit_w),
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
    origin: (ORDER_ORIGINS as readonly string[]).includes(r.origin as string) ? (r.origin as OrderOrigin) : 'api',
    reference: strOrNull(r.reference),
    approvedBy: strOrNull(r.approved_by),
    approvedAt: numOrNull(r.approved_at),
  };
}

/** The states in which a disconnect still passes the gate before an attempt. */
export const GATED_STATES: ReadonlySet<OrderState> = new Set(['queued', 'held', 'escalated']);

/**
 * Holds that end an escalated disconnect (a crew may be on its way to cut the supply) instead of pausing it: the
 * meter went into protected mode, or the customer became protected and nobody approved the disconnect since.
 */
export const ESCALATION_ENDING_HOLDS: ReadonlySet<string> = new Set(['E_PROTECTED_MODE', 'E_APPROVAL_REQUIRED']);

/** Throws unless `actor` may approve this order now (DOMAIN.md rule 7: maker–checker, one order at a time). */
export function approvalProblem(order: SwitchOrder, actor: string): void {
  if (order.action !== 'disconnect' || !GATED_STATES.has(order.state) || !(order.stateReason ?? '').startsWith('E_APPROVAL_REQUIRED')) {
    throw new MeterlineError('E_NOT_AWAITING_APPROVAL', `order ${order.id} is ${order.state}${order.stateReason ? ` (${order.stateReason.split(':')[0]})` : ''}, not a disconnect waiting for a supervisor's approval; disconnects for arrears are approved through plans`);
  }
  if (order.approvedBy !== null) {
    throw new MeterlineError('E_NOT_AWAITING_APPROVAL', `order ${order.id} was already approved by ${order.approvedBy} at ${new Date(order.approvedAt ?? 0).toISOString()}`);
  }
  if (order.requestedBy === actor) {
    throw new MeterlineError('E_SELF_APPROVAL', `order ${order.id} was asked for by ${actor}; another supervisor approves it (maker–checker, DOMAIN.md rule 7)`);
  }
}

/** The pre-disconnect notification of rule 2, as the customer channel receives it. */
export function secondNoticePayload(order: SwitchOrder, now: number, until: number) {
  return {
    kind: 'pre_disconnect_notice',
    notificationId: `ntf_${order.id}_${now}`,
    meterId: order.meterId,
    orderId: order.id,
    reason: order.reason,
    /** The command goes no earlier than this, and no earlier than the delivery plus the configured minutes. */
    notBefore: new Date(until).toISOString(),
    sentAt: new Date(now).toISOString(),
  };
}

export const secondNoticeHoldReason = (payload: { notificationId: string }, now: number, until: number): string =>
  `E_SECOND_NOTICE_PENDING: pre-disconnect notification ${payload.notificationId} sent; the command waits for its delivery to the customer and ${Math.round((until - now) / 60_000)} minutes after it (rule 2: second notice 30 minutes before)`;

/** The facts the disconnect gate needs about one order, as each store reads them in its own dialect. */
export interface GateFacts {
  meter: Row;
  capUsage: { overall: number; region: number };
  plan: PlanFacts | null;
  notices: readonly NoticeRecord[];
  weather: readonly WeatherPeriod[];
  breakers: readonly CircuitBreaker[];
  /** The order's latest pre-disconnect notification row (arrears only), if one went out. */
  secondNotice: Row | undefined;
  /** The meter's credit events (credit cut-offs only). */
  creditEvents: readonly CreditEvent[] | null;
}

/** What a store reads for the gate besides the always-needed facts. */
export const gateNeeds = (order: SwitchOrder): { secondNotice: boolean; credit: boolean } => ({
  secondNotice: order.action === 'disconnect' && order.reason === 'arrears',
  credit: order.action === 'disconnect' && order.reason === 'credit_exhausted',
});

/** One order's gate input from the facts read for it: the same for both stores. */
export function gateInputFrom(order: SwitchOrder, now: number, stage: GateInput['stage'], policy: PolicyConfig, f: GateFacts): GateInput {
  const meter = f.meter;
  const region = meter.region as string;
  const n = f.secondNotice;
  return {
    now,
    stage,
    order: { action: order.action, limitW: order.limitW, reason: order.reason, planId: order.planId, origin: order.origin, reference: order.reference, approvedAt: order.approvedAt, capDay: order.capDay },
    secondNotice: n ? { id: n.id as string, sentAt: num(n.created_at), deliveredAt: numOrNull(n.delivered_at), attempts: num(n.attempts), lastError: strOrNull(n.last_error) } : null,
    credit: f.creditEvents ? ledgerShowsNoCredit(f.creditEvents) : null,
    plan: f.plan,
    meter: { meterId: order.meterId, region, flags: parseFlags(meter.flags) },
    notices: f.notices,
    weather: f.weather,
    capUsage: { overall: Number(f.capUsage.overall), region: Number(f.capUsage.region) },
    openBreakers: f.breakers
      .filter((b) => b.action === 'disconnect' && ((b.scope === 'profile' && b.key === meter.profile_id) || (b.scope === 'link' && b.key === meter.link) || (b.scope === 'region' && b.key === region)))
      .map((b) => ({ id: b.id, scope: b.scope, key: b.key, reason: b.reason })),
    policy,
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

/** The WHERE condition for alerts in a state (a fixed string per state: no user text reaches the SQL). */
export const ALERT_STATE_SQL: Readonly<Record<AlertState, string>> = {
  open: 'acknowledged_at IS NULL AND cleared_at IS NULL',
  acknowledged: 'acknowledged_at IS NOT NULL AND cleared_at IS NULL',
  cleared: 'cleared_at IS NOT NULL',
};

export function alertFromRow(r: Row): AlertRecord {
  const acknowledgedAt = numOrNull(r.acknowledged_at);
  const clearedAt = numOrNull(r.cleared_at);
  return {
    ...notificationFromRow(r),
    state: clearedAt !== null ? 'cleared' : acknowledgedAt !== null ? 'acknowledged' : 'open',
    acknowledgedAt,
    acknowledgedBy: strOrNull(r.acknowledged_by),
    clearedAt,
    clearedBy: strOrNull(r.cleared_by),
  };
}

/** The columns an act on an alert sets, and the error for an alert it cannot act on (shared by both stores). */
export function alertActPlan(alertId: string, current: AlertRecord | undefined, act: AlertAct): { set: 'acknowledged' | 'cleared' } | { set: null } {
  if (!current) throw new MeterlineError('E_ALERT_NOT_FOUND', `alert ${alertId} does not exist; GET /v1/alerts lists them`);
  if (current.state === 'cleared') throw new MeterlineError('E_ALERT_CLEARED', `alert ${alertId} was cleared by ${current.clearedBy ?? 'someone'}; a cleared alert is over and cannot be acknowledged or cleared again`);
  if (act === 'acknowledge') return current.state === 'acknowledged' ? { set: null } : { set: 'acknowledged' };
  return { set: 'cleared' };
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
    limitW: numOrNull(r.limit_w),
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
    clientId: r.client_id as string,
    name: r.name as string,
    role: r.role as string,
    createdBy: r.created_by as string,
    createdAt: num(r.created_at),
    revokedAt: numOrNull(r.revoked_at),
    lastUsedAt: numOrNull(r.last_used_at),
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

/** One change for a billing client's feed, before it has its number. */
export interface FeedEvent {
  client: string;
  meterId: string;
  orderId: string;
  kind: string;
  /** JSON text. */
  payload: string;
  at: number;
}

/** The feed event of an order transition: it goes to the client that asked for the order. */
export function orderFeedEvent(order: SwitchOrder, now: number): FeedEvent {
  return { client: order.requestedBy, meterId: order.meterId, orderId: order.id, kind: `order.${order.state}`, payload: JSON.stringify(orderEventPayload(order, now)), at: now };
}

/**
 * The billing change feed's statements, written once for both stores (placeholders `?`; `numbered` makes them
 * PostgreSQL's). Each client's events are numbered 1, 2, 3, … by its own counter row in client_seq, taken in the
 * transaction that writes the event: a rollback takes the number back with the event, so there is no gap, and on
 * PostgreSQL the row stays locked to COMMIT, so a client's events commit in the order of their numbers (a reader
 * paging with `after` never sees N + 1 before N). An event is named by (client, seq).
 */
export const CLIENT_FEED_SQL = {
  nextSeq: 'INSERT INTO client_seq (client, last_seq) VALUES (?, 1) ON CONFLICT (client) DO UPDATE SET last_seq = client_seq.last_seq + 1 RETURNING last_seq',
  insert: 'INSERT INTO client_feed (client, seq, meter_id, order_id, kind, payload, at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  after: 'SELECT * FROM client_feed WHERE client = ? AND seq > ? ORDER BY seq LIMIT ?',
  /** One order's events in the client's feed (the order page); walks the client's feed by its key. */
  afterForOrder: 'SELECT * FROM client_feed WHERE client = ? AND order_id = ? AND seq > ? ORDER BY seq LIMIT ?',
  pending: 'SELECT * FROM client_feed WHERE client = ? AND delivered_at IS NULL ORDER BY seq LIMIT ?',
  delivered: 'UPDATE client_feed SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE client = ? AND seq = ?',
  failed: 'UPDATE client_feed SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE client = ? AND seq = ?',
} as const;

/** The arguments of `CLIENT_FEED_SQL.insert` (a new event is due for delivery at once). */
export const feedInsertArgs = (e: FeedEvent, seq: number): unknown[] => [e.client, seq, e.meterId, e.orderId, e.kind, e.payload, e.at, e.at];

/** `?` placeholders as PostgreSQL's `$1, $2, …` (the shared statements hold no `?` inside literals). */
export function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/** Why a payment cancels a pending disconnect (DOMAIN.md rule 3). */
/** What the audit log records when an order is admitted. */
/** An order request that reuses its caller's idempotency key with another body: refused, nothing changes. */
export function orderKeyConflict(key: string, orderId: string): MeterlineError {
  return new MeterlineError('E_IDEMPOTENCY_CONFLICT', `Idempotency-Key "${key}" was already used for order ${orderId} with a different request; use a new key for a new request`, { orderId });
}

export function orderAdmissionAudit(req: OrderRequest, orderId: string, outcome: string, stateReason: string | null): Record<string, unknown> {
  const emergency = req.action === 'disconnect' && req.reason === 'safety';
  return {
    orderId,
    reason: req.reason,
    note: req.note,
    urgent: req.urgent,
    paymentAt: req.paymentAt,
    planId: req.planId ?? null,
    origin: req.origin ?? 'api',
    reference: req.reference ?? null,
    ...(emergency ? { emergency: true } : {}),
    outcome,
    stateReason,
  };
}

/** The audit action of an admitted order: a safety disconnect is audited as an emergency (DOMAIN.md rule 7). */
export const orderAdmissionAction = (req: OrderRequest): string => (req.action === 'disconnect' && req.reason === 'safety' ? 'order.disconnect.emergency' : `order.${req.action}`);

/**
 * The orders an approved plan creates, one per meter, each keyed to its place in the plan: disconnects, or for a
 * limiting plan (rule 10) limit orders of the plan's watts.
 */
export function planOrderRequests(plan: PlanView, approver: string, now: number): OrderRequest[] {
  return plan.items.map((item, i) => ({
    meterId: item.meterId,
    ...(plan.limitW !== null ? { action: 'limit' as const, limitW: plan.limitW } : { action: 'disconnect' as const }),
    reason: plan.reason,
    note: `plan ${plan.id} drafted by ${plan.author}, approved by ${approver}${plan.note ? `: ${plan.note}` : ''}`,
    urgent: false,
    notBefore: Math.max(now, plan.windowFrom),
    paymentAt: null,
    requestedBy: plan.author,
    idempotencyKey: `plan:${plan.id}#${i}`,
    requestHash: createHash('sha256').update(`${plan.id}#${i}:${item.meterId}`).digest('hex'),
    planId: plan.id,
    origin: 'plan',
  }));
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

/**
 * What a verified limit order does to the meter's rule 10 facts: a limit starts the limiting period (a change of the
 * watts keeps the period's start), a removal ends it. Undefined for any other order or verdict.
 */
export function limitFlagsAfter(order: SwitchOrder, next: OrderState, flags: MeterFlags, now: number): Partial<MeterFlags> | undefined {
  if (order.action !== 'limit' || next !== 'done') return undefined;
  if (order.limitW === null) return { loadLimitedSince: null };
  return { hasLoadLimiter: true, loadLimitedSince: flags.loadLimitedSince ?? now };
}

/**
 * Whether a payment lifts the meter's limit: the latest limit order of the meter (done, or still open) set a limit for
 * arrears (DOMAIN.md rule 10: the limit was the step before a cut for non-payment; the customer has now paid).
 */
export function limitSetForArrears(latestLimit: Row | undefined): boolean {
  if (!latestLimit) return false;
  const live = !['failed', 'cancelled', 'superseded', 'refused'].includes(latestLimit.state as string);
  return live && latestLimit.limit_w !== null && latestLimit.limit_w !== undefined && latestLimit.reason === 'arrears';
}

/** The removal a payment (or top-up) orders for a meter limited for arrears, next to the reconnect it may order. */
export function paymentLimitRemovalRequest(paymentId: string, meterId: string, req: PaymentRequest): OrderRequest {
  return {
    ...paymentReconnectRequest(paymentId, meterId, req),
    action: 'limit',
    limitW: null,
    paymentAt: null,
    idempotencyKey: `payment:${paymentId}:${meterId}:limit`,
    requestHash: `${paymentId}:limit`,
  };
}

// ---- money (issue 14) ----------------------------------------------------------------------------------------

/**
 * A credit event as stored (credit_events.event): checked against its schema first, so no ledger row holds a
 * fractional, non-finite or unbounded amount. A refusal here is a bug in the caller, never a customer's input
 * (the API refuses bad amounts before they reach the store).
 */
export function creditEventJson(event: CreditEvent): string {
  const checked = CreditEventSchema.safeParse(event);
  if (!checked.success) throw new Error(`credit event not stored, it is not valid: ${checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return JSON.stringify(event);
}

/**
 * The prepayment balance bound (payments.maxCreditBalanceMinor) over a run of top-ups: each meter's ledger is
 * folded once, then each top-up is counted in, so the thousandth top-up of a file is judged with the 999 before it.
 */
export class CreditBalanceBound {
  private readonly pots = new Map<string, { balance: number; emergencyDebt: number }>();
  constructor(readonly maxMinor: number) {}

  knows(meterId: string): boolean {
    return this.pots.has(meterId);
  }

  /** The meter's ledger as it stands, before the run's top-ups. */
  start(meterId: string, events: readonly CreditEvent[]): void {
    this.pots.set(meterId, ledgerBalances(events));
  }

  /** Count a top-up in if the balance it leaves is within the bound; either way, say what that balance is. */
  add(meterId: string, amountMinor: number): { fits: boolean; balanceAfterMinor: number } {
    const pots = this.pots.get(meterId) ?? { balance: 0, emergencyDebt: 0 };
    const after = balanceAfterTopUp(pots, amountMinor);
    if (after > this.maxMinor) return { fits: false, balanceAfterMinor: after };
    this.pots.set(meterId, { balance: after, emergencyDebt: pots.emergencyDebt - Math.min(amountMinor, pots.emergencyDebt) });
    return { fits: true, balanceAfterMinor: after };
  }
}

/** A due order from the columns both stores' due-orders statements select. */
export function dueOrderFromRow(r: Record<string, unknown>): DueOrder {
  return {
    id: r.id as string,
    meterId: r.meter_id as string,
    link: r.link as string,
    action: r.action as DueOrder['action'],
    reason: r.reason as DueOrder['reason'],
    state: r.state as DueOrder['state'],
    priority: num(r.priority),
    deadline: numOrNull(r.deadline),
  };
}
