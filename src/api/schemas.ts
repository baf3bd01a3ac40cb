import { z } from 'zod';
import { ATTEMPT_OUTCOMES, ORDER_ACTIONS, RELAY_STATES } from '../domain/relay.js';
import { DISCONNECT_REASONS, LIMIT_REASONS, LIMIT_REMOVAL_REASONS, LIMIT_W_MAX, ORDER_ORIGINS, ORDER_STATES, RECONNECT_REASONS } from '../domain/switch-order.js';

/** The API's wire shapes. Times are ISO 8601 strings in UTC. */

/** A meter id: the route parameter's, and a bulk line's (src/api/bulk-admission.ts checks bulk lines with it too). */
export const METER_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;
export const MeterIdParam = z.object({ meterId: z.string().regex(METER_ID_PATTERN, 'letters, digits, ".", "_", ":" and "-", at most 64') });
export const OrderIdParam = z.object({ orderId: z.string().min(1).max(64) });

export const IdempotencyHeaders = z.object({
  'idempotency-key': z
    .string()
    .min(1)
    .max(200)
    .optional()
    .describe(
      'Required. A key unique to this request, scoped to your client; retrying with the same key and body returns the first answer (idempotent-replayed: true) and changes nothing. Requests with one key at the same time: one acts, the others get its answer (409 E_IDEMPOTENCY_IN_PROGRESS after 10 s). The same key with another body: 409 E_IDEMPOTENCY_CONFLICT',
    ),
});

const isoTime = z.iso.datetime({ offset: true });

export const ReconnectBody = z
  .object({
    reason: z.enum(RECONNECT_REASONS).default('payment'),
    paymentReceivedAt: isoTime.optional().describe('When the payment or top-up was received; the 24-hour limit runs from it'),
    urgent: z.boolean().default(false).describe('Medical emergency: head of every queue (DOMAIN.md rule 15)'),
    notBefore: isoTime.optional(),
    note: z.string().max(500).optional(),
  })
  .strict()
  .meta({ examples: [{ reason: 'payment', paymentReceivedAt: '2026-11-25T08:12:00Z', note: 'receipt 2026-554812' }] });

export const DisconnectBody = z
  .object({
    reason: z
      .enum(DISCONNECT_REASONS)
      .describe(
        'customer_request and vacant_premises need a reference (the request, the move-out record) and, for a protected customer, a supervisor’s approval; safety needs an incident reference (and approval for a medical-equipment customer); arrears only through an approved plan; credit_exhausted is reserved to the gateway’s credit control (403 E_CREDIT_CUTOFF_RESERVED)',
      ),
    reference: z.string().min(1).max(200).optional().describe('The evidence the reason needs: the customer’s request, the move-out record, the incident (README "Disconnect safety")'),
    notBefore: isoTime.optional(),
    note: z.string().max(500).optional(),
  })
  .strict()
  .meta({ examples: [{ reason: 'customer_request', reference: 'CRM-2026-88121', note: 'moving out on 2026-11-30' }] });

export const LIMIT_ANY_REASON = [...new Set([...LIMIT_REASONS, ...LIMIT_REMOVAL_REASONS])] as [string, ...string[]];

/** A limit order's body. Its reason must fit: a limit names a limit reason, a removal a removal reason (`limitReasonProblem`). */
export const LimitBody = z
  .object({
    limitW: z
      .number()
      .int()
      .min(1)
      .max(LIMIT_W_MAX)
      .nullable()
      .describe(`The demand limit to set, in watts (1 to ${LIMIT_W_MAX}); null removes the meter's limit. Done only when the meter's read-back shows exactly this value (none, for a removal)`),
    reason: z
      .enum(LIMIT_ANY_REASON)
      .describe(`A limit: ${LIMIT_REASONS.join(', ')} (arrears: the step before any cut for non-payment, rule 10; customer_request and safety need a reference). A removal (limitW null): ${LIMIT_REMOVAL_REASONS.join(', ')}`),
    reference: z.string().min(1).max(200).optional().describe('The evidence a customer_request or safety limit needs (the request, the incident)'),
    notBefore: isoTime.optional(),
    note: z.string().max(500).optional(),
  })
  .strict()
  .meta({ examples: [{ limitW: 1500, reason: 'arrears', note: 'hardship step before suspension' }, { limitW: null, reason: 'payment' }] });

/** Why a limit body's reason does not fit its limitW, or null when it does. */
export function limitReasonProblem(b: { limitW: number | null; reason: string }): string | null {
  const allowed: readonly string[] = b.limitW === null ? LIMIT_REMOVAL_REASONS : LIMIT_REASONS;
  if (allowed.includes(b.reason)) return null;
  return b.limitW === null ? `a limit's removal names one of ${LIMIT_REMOVAL_REASONS.join(', ')}, not ${b.reason}` : `a limit names one of ${LIMIT_REASONS.join(', ')}, not ${b.reason}`;
}

export const BULK_LIMIT = 10_000;
/** One bulk order item at most, as JSON: every field at its longest (ASCII) is about 900 bytes. Sets the bulk body limit. */
export const ORDER_ITEM_BYTES = 1024;

export const BulkOrderItem = z.discriminatedUnion('action', [
  ReconnectBody.extend({ action: z.literal('reconnect'), meterId: MeterIdParam.shape.meterId }).strict(),
  DisconnectBody.extend({ action: z.literal('disconnect'), meterId: MeterIdParam.shape.meterId }).strict(),
  LimitBody.extend({ action: z.literal('limit'), meterId: MeterIdParam.shape.meterId }).strict(),
]);
export const BulkBody = z
  .object({ orders: z.array(BulkOrderItem).min(1) })
  .strict()
  .meta({
    examples: [
      {
        orders: [
          { meterId: 'SIM-000001', action: 'reconnect', reason: 'payment', paymentReceivedAt: '2026-11-25T08:12:00Z' },
          { meterId: 'SIM-000002', action: 'disconnect', reason: 'vacant_premises', reference: 'MOVE-OUT-7731' },
        ],
      },
    ],
  });

export const MeterBody = z
  .object({
    profileId: z.string().min(1),
    link: z.string().min(1).max(100),
    region: z.string().min(1).max(100),
    address: z.string().min(1).max(100).nullable().optional().describe('Where the meter sits on its link: Modbus unit id, DLMS HDLC address; omit for MQTT'),
    accountId: z.string().min(1).max(64).nullable().optional().describe('The billing account; payments by account reach all its meters'),
  })
  .strict()
  .meta({ examples: [{ profileId: 'brk-rc100-modbus-fw3.2', link: 'feeder-7-bus', region: 'north', address: '17', accountId: 'ACC-1001' }] });

export const AttemptView = z.object({
  attempt: z.number().int(),
  startedAt: z.string(),
  endedAt: z.string().nullable(),
  outcome: z.enum(ATTEMPT_OUTCOMES).nullable(),
  latencyMs: z.number().nullable(),
  observedRelay: z.enum(RELAY_STATES).nullable(),
  evidence: z.object({ command: z.string().nullable(), readBack: z.string().nullable() }),
  detail: z.string().nullable(),
});

export const OrderEventView = z.object({
  at: z.string(),
  from: z.enum(ORDER_STATES).nullable(),
  to: z.enum(ORDER_STATES),
  reason: z.string().nullable(),
});

export const RuleView = z.object({
  rule: z.string().describe('The rule\'s key in the gate (e.g. plan, notice, window, reconnectWins)'),
  name: z.string().describe('The rule in words, with its DOMAIN.md number: "rule 7: central authority, maker–checker"'),
  outcome: z
    .enum(['passed', 'held', 'stopped', 'not_checked', 'not_applicable'])
    .describe('passed: evaluated and let the order through; held: it makes the order wait (now, or when the order ended); stopped: it refused or cancelled the order; not_checked: not evaluated (a rule before it held or stopped the order, or the order has not got that far); not_applicable: this action and reason do not go through it'),
  code: z.string().nullable().describe('The code it held or stopped the order with (or, for a rule passed later, the code it held it with before)'),
  detail: z.string().nullable(),
});

export const OrderView = z.object({
  id: z.string(),
  meterId: z.string(),
  action: z.enum(ORDER_ACTIONS).describe('disconnect or reconnect (the relay), or limit (the demand limit, DOMAIN.md rule 10)'),
  limitW: z.number().int().nullable().describe('For a limit order: the limit asked for in watts, null for a removal; null for relay orders'),
  reason: z.string(),
  note: z.string().nullable(),
  state: z.enum(ORDER_STATES),
  stateReason: z.string().nullable(),
  requestedBy: z.string(),
  urgent: z.boolean(),
  priority: z.number(),
  createdAt: z.string(),
  updatedAt: z.string(),
  notBefore: z.string(),
  deadline: z.string().nullable(),
  paymentReceivedAt: z.string().nullable(),
  attemptsUsed: z.number().int(),
  planId: z.string().nullable(),
  origin: z.enum(ORDER_ORIGINS).describe('The path the order came in by: api, plan, or the gateway’s own credit_control'),
  reference: z.string().nullable().describe('The evidence behind a disconnect’s reason (request, move-out record, incident)'),
  approvedBy: z.string().nullable().describe('The supervisor who approved this one disconnect, if one had to'),
  approvedAt: z.string().nullable(),
  nextAttemptAt: z.string().nullable(),
  supersededBy: z.string().nullable(),
  completedAt: z.string().nullable(),
  result: z
    .object({ relay: z.enum(RELAY_STATES).nullable(), verified: z.boolean() })
    .describe('The relay state the last read-back showed; verified is true only for done and armed'),
  attempts: z.array(AttemptView).optional(),
  events: z.array(OrderEventView).optional(),
  rules: z
    .array(RuleView)
    .optional()
    .describe('GET /v1/orders/{orderId} only: the rules the order passed or was held or stopped by, in the gate\'s order, told from its stored events; a rule is never called passed unless it was evaluated'),
  notifications: z
    .array(
      z.object({
        id: z.string(),
        kind: z.string(),
        createdAt: z.string(),
        deliveredAt: z.string().nullable(),
        attempts: z.number().int(),
        lastError: z.string().nullable(),
      }),
    )
    .optional()
    .describe('What went to the customer or the field about this order (the pre-disconnect notification of rule 2), with its delivery attempts'),
});

export const ObservedView = z.object({
  relay: z.enum(RELAY_STATES),
  at: z.string(),
  source: z.enum(['read', 'status', 'push', 'field']).describe('read: the gateway read the meter; status: the meter reported on its status topic (MQTT); push: the meter pushed it (DLMS notification); field: a crew reported it'),
  voltageV: z.number().nullable(),
  energyWh: z.number().nullable(),
});

export const MeterView = z.object({
  meterId: z.string(),
  profile: z.object({ id: z.string(), manufacturer: z.string(), model: z.string(), firmware: z.string(), protocol: z.string(), remoteReconnect: z.enum(['closes', 'arms']) }).nullable(),
  profileId: z.string(),
  link: z.string(),
  region: z.string(),
  address: z.string().nullable(),
  accountId: z.string().nullable(),
  observed: ObservedView.nullable(),
  desiredRelay: z.enum(['connected', 'disconnected']).nullable(),
  desiredOrderId: z.string().nullable(),
  flags: z.record(z.string(), z.unknown()).describe('Protection flags, protected mode, prepayment mode and agreement, load limiter'),
  loadLimit: z
    .object({ limitW: z.number().int(), since: z.string().nullable(), orderId: z.string(), reason: z.string() })
    .nullable()
    .describe('The demand limit in force, as the last verified limit order set it, and since when the meter is limited (rule 10); null when none'),
  openOrders: z.array(OrderView),
});

export const ErrorView = z.object({ code: z.string(), message: z.string(), details: z.unknown().optional(), requestId: z.string().optional() });
