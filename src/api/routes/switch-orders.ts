import { hash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ERRORS, MeterlineError, type ErrorCode } from '../../errors.js';
import type { OrderRequest, SubmitOutcome } from '../../store/store.js';
import { createdOrders } from '../../control/due-buffer.js';
import { REASON_RULES } from '../../domain/policy/disconnect-gate.js';
import { orderRules } from '../../domain/policy/order-rules.js';
import type { OrderReason } from '../../domain/switch-order.js';
import { checkDisconnectReason, requirePermission, type Role } from '../auth.js';
import { idempotentWrite } from '../idempotent-write.js';
import { requireLoadLimiters } from '../limit-admission.js';
import { bulkSerializerCompiler, bulkValidatorCompiler } from '../bulk-admission.js';
import { bulkBodyLimit } from '../request-body.js';
import type { ApiDeps } from '../deps.js';
import {
  BULK_LIMIT,
  BulkBody,
  ORDER_ITEM_BYTES,
  DisconnectBody,
  ErrorView,
  IdempotencyHeaders,
  LimitBody,
  limitReasonProblem,
  MeterIdParam,
  OrderIdParam,
  OrderView,
  ReconnectBody,
} from '../schemas.js';
import { orderView } from '../views.js';
import { EXPORT_PAGE, OrderFilters, OrderListQuery, orderQuery, ordersCsv } from '../order-list.js';

/** sha256 of the value's JSON, hex (the one-shot hash: no Hash object per order of a bulk request). */
const hashOf = (value: unknown): string => hash('sha256', JSON.stringify(value), 'hex');
/** ms of an ISO time with its offset (the schemas demand one, so the same text is always the same instant). The last
 * text is kept: a bulk request's lines mostly share their payment time, and Date.parse was 1.7 % of its route's time. */
let lastIso = '';
let lastMs = Number.NaN;
const msOrNull = (iso: string | undefined): number | null => {
  if (iso === undefined) return null;
  if (iso !== lastIso) {
    lastMs = Date.parse(iso);
    lastIso = iso;
  }
  return lastMs;
};

function requireKey(key: string | undefined): string {
  if (!key) throw new MeterlineError('E_IDEMPOTENCY_KEY_MISSING', 'send an Idempotency-Key header (any unique string, e.g. a UUID or your payment reference) so a retried request cannot create a second order');
  return key;
}

type ReconnectInput = z.infer<typeof ReconnectBody>;
type DisconnectInput = z.infer<typeof DisconnectBody>;
type LimitInput = z.infer<typeof LimitBody>;

/**
 * A direct disconnect's authority (DOMAIN.md rule 7), checked before anything is stored: the caller's role may name
 * the reason (src/api/auth.ts), and the reason's evidence is there. The gate checks the same again in the store.
 */
function checkDisconnect(role: Role, body: DisconnectInput): void {
  checkDisconnectReason(role, body.reason);
  const needs = REASON_RULES[body.reason].reference;
  if (needs !== null && (body.reference === undefined || body.reference.trim() === '')) {
    throw new MeterlineError('E_REFERENCE_REQUIRED', `a ${body.reason} disconnect needs "reference": ${needs} (a ticket, case or record number); nothing was created`);
  }
}

/**
 * A limit order's own checks, before anything is stored (DOMAIN.md rule 10): its reason fits (a limit or a removal
 * reason), and the meter's firmware profile has a limiter, without which the limit could never be read back.
 */
async function checkLimit(deps: ApiDeps, meterId: string, body: LimitInput): Promise<void> {
  const problem = limitReasonProblem(body);
  if (problem !== null) throw new MeterlineError('E_VALIDATION', `${problem}; nothing was created`);
  await requireLoadLimiters(deps, [meterId]);
}

function toRequest(meterId: string, action: 'reconnect' | 'disconnect' | 'limit', body: ReconnectInput | DisconnectInput | LimitInput, requestedBy: string, key: string): OrderRequest {
  const reconnect = action === 'reconnect' ? (body as ReconnectInput) : undefined;
  const withReference = action === 'reconnect' ? undefined : (body as DisconnectInput | LimitInput);
  return {
    meterId,
    action,
    ...(action === 'limit' ? { limitW: (body as LimitInput).limitW } : {}),
    reason: body.reason as OrderReason,
    note: body.note ?? null,
    urgent: reconnect?.urgent ?? false,
    notBefore: msOrNull(body.notBefore),
    paymentAt: msOrNull(reconnect?.paymentReceivedAt),
    requestedBy,
    idempotencyKey: key,
    requestHash: hashOf({ meterId, action, body }),
    origin: 'api',
    reference: withReference?.reference ?? null,
  };
}

const ORDER_RESPONSES = { 202: OrderView, 400: ErrorView, 401: ErrorView, 403: ErrorView, 404: ErrorView, 409: ErrorView, 500: ErrorView };

export async function switchOrderRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();

  const submitOne = async (request: OrderRequest): Promise<SubmitOutcome> => {
    const [outcome] = await deps.store.submitOrders([request], deps.submitContext());
    deps.controller.wake(outcome!.kind === 'created' ? [outcome!.order] : []);
    deps.events.emit('order', outcome!.order);
    return outcome!;
  };

  const replyWith = (outcome: SubmitOutcome) => {
    if (outcome.order.state === 'refused') {
      // The stored reason starts with the rule's code: "E_PLAN_REQUIRED: disconnect for non-payment refused: ...".
      const reason = outcome.order.stateReason ?? '';
      const code = /^(E_[A-Z_]+):/.exec(reason)?.[1];
      throw new MeterlineError(code && code in ERRORS ? (code as ErrorCode) : 'E_INTERNAL', reason.replace(/^E_[A-Z_]+: /, ''), { order: orderView(outcome.order) });
    }
    return orderView(outcome.order);
  };

  r.post('/v1/meters/:meterId/reconnect', {
    schema: {
      summary: 'Reconnect a meter (after payment or top-up)',
      description: 'Creates a reconnect order. It supersedes any pending disconnect for the meter. The answer is 202 with the order; poll GET /v1/orders/{orderId} until it is done (relay read back connected), armed (the customer presses the button) or failed.',
      tags: ['switching'],
      params: MeterIdParam,
      headers: IdempotencyHeaders,
      body: ReconnectBody,
      response: ORDER_RESPONSES,
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'order:reconnect'),
    handler: async (req, reply) => {
      const outcome = await submitOne(toRequest(req.params.meterId, 'reconnect', req.body, req.principal!.clientId, requireKey(req.headers['idempotency-key'])));
      if (outcome.kind === 'replayed') reply.header('idempotent-replayed', 'true');
      return reply.code(202).send(replyWith(outcome));
    },
  });

  r.post('/v1/meters/:meterId/disconnect', {
    schema: {
      summary: 'Disconnect a meter',
      description:
        'Creates a disconnect order, subject to every rule of DOMAIN.md (README "Disconnect safety": reason × role × rule). The key\'s role must be allowed the reason (403 E_REASON_NOT_ALLOWED; credit_exhausted is never a caller\'s: 403 E_CREDIT_CUTOFF_RESERVED) and the reason\'s reference must be there (400 E_REFERENCE_REQUIRED); nothing is created then. Refused (409, with the rule\'s code) while a reconnect is open (E_RECONNECT_PENDING), for a protected customer in arrears or a meter in protected mode, and for non-payment outside an approved plan (E_PLAN_REQUIRED); held (202, state "held") while a rule says "not yet" (notice, window, cap, second notice, a supervisor\'s approval).',
      tags: ['switching'],
      params: MeterIdParam,
      headers: IdempotencyHeaders,
      body: DisconnectBody,
      response: ORDER_RESPONSES,
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'order:disconnect'),
    handler: async (req, reply) => {
      checkDisconnect(req.principal!.role, req.body);
      const outcome = await submitOne(toRequest(req.params.meterId, 'disconnect', req.body, req.principal!.clientId, requireKey(req.headers['idempotency-key'])));
      if (outcome.kind === 'replayed') reply.header('idempotent-replayed', 'true');
      return reply.code(202).send(replyWith(outcome));
    },
  });

  r.post('/v1/meters/:meterId/limit', {
    schema: {
      summary: 'Set or remove a meter’s demand limit (DOMAIN.md rule 10)',
      description:
        'Creates a limit order: `limitW` watts, or null to remove the limit. Verified like every switch: done only when the meter’s read-back shows exactly that limit (none, for a removal). A later limit order supersedes an earlier unfinished one; relay orders are not superseded by it, nor it by them. A meter whose firmware profile has no limiter: 409 E_NO_LOAD_LIMITER, nothing created. A limit (not a removal) is refused for a meter in protected mode (E_PROTECTED_MODE), for a protected customer unless policy.limitBeforeCut.protectedCustomers (E_PROTECTED_CUSTOMER), and without the reference a customer_request or safety limit needs (E_REFERENCE_REQUIRED). A verified limit starts the limiting period rule 10 counts before an arrears cut; a payment lifts a limit set for arrears.',
      tags: ['switching'],
      params: MeterIdParam,
      headers: IdempotencyHeaders,
      body: LimitBody,
      response: ORDER_RESPONSES,
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'order:limit'),
    handler: async (req, reply) => {
      await checkLimit(deps, req.params.meterId, req.body);
      const outcome = await submitOne(toRequest(req.params.meterId, 'limit', req.body, req.principal!.clientId, requireKey(req.headers['idempotency-key'])));
      if (outcome.kind === 'replayed') reply.header('idempotent-replayed', 'true');
      return reply.code(202).send(replyWith(outcome));
    },
  });

  const bulkLimit = bulkBodyLimit(BULK_LIMIT, ORDER_ITEM_BYTES);
  r.post('/v1/orders/bulk', {
    bodyLimit: bulkLimit,
    // Its 10,000 lines checked without zod's per-line copies, and its 202 answer serialised without a second parse
    // (src/api/bulk-admission.ts); every refusal is still zod's.
    validatorCompiler: bulkValidatorCompiler,
    serializerCompiler: bulkSerializerCompiler,
    schema: {
      summary: `Create up to ${BULK_LIMIT} switch orders in one request`,
      description: `Lines are reconnect, disconnect or limit orders (a limit line carries limitW, null to remove). All or nothing: if any meter is unknown, any limit line names a meter without load limiter (409 E_NO_LOAD_LIMITER) or the key was used for another request, nothing is created. Each order gets the idempotency key "<Idempotency-Key>#<index>", so retrying the same request returns the same orders. More than ${BULK_LIMIT} orders: 413 E_BULK_TOO_LARGE; a body over ${bulkLimit} bytes: 413 E_BODY_TOO_LARGE.`,
      tags: ['switching'],
      headers: IdempotencyHeaders,
      body: BulkBody,
      response: {
        202: z.object({
          created: z.number().int(),
          replayed: z.number().int(),
          refused: z.number().int(),
          results: z.array(z.object({ index: z.number().int(), outcome: z.enum(['created', 'replayed', 'refused']), order: OrderView })),
        }),
        400: ErrorView,
        401: ErrorView,
        403: ErrorView,
        404: ErrorView,
        409: ErrorView,
        413: ErrorView,
      },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'order:bulk'),
    handler: async (req, reply) => {
      const key = requireKey(req.headers['idempotency-key']);
      const items = req.body.orders;
      if (items.length > BULK_LIMIT) throw new MeterlineError('E_BULK_TOO_LARGE', `${items.length} orders in one request; send at most ${BULK_LIMIT} per request`);
      // All or nothing: one disconnect the caller has no authority for refuses the whole request.
      for (const [index, item] of items.entries()) {
        if (item.action === 'reconnect') continue;
        try {
          if (item.action === 'disconnect') checkDisconnect(req.principal!.role, item);
          else await checkLimit(deps, item.meterId, item);
        } catch (e) {
          if (e instanceof MeterlineError) throw new MeterlineError(e.code, `order ${index} (meter ${item.meterId}): ${e.message}; nothing was created`, { index, meterId: item.meterId });
          throw e;
        }
      }
      const meterIds = new Set<string>();
      for (const item of items) meterIds.add(item.meterId);
      const known = await deps.store.existingMeterIds([...meterIds]);
      let missingCount = 0;
      const missing: { index: number; meterId: string }[] = [];
      for (let index = 0; index < items.length; index++) {
        const meterId = items[index]!.meterId;
        if (known.has(meterId)) continue;
        missingCount++;
        if (missing.length < 100) missing.push({ index, meterId });
      }
      if (missingCount > 0) {
        throw new MeterlineError('E_METER_NOT_FOUND', `${missingCount} order(s) name meters that are not registered; nothing was created. Register them first or remove them`, { missing });
      }
      const clientId = req.principal!.clientId;
      const requests = items.map(({ action, meterId, ...body }, index) => toRequest(meterId, action, body, clientId, `${key}#${index}`));
      const outcomes = await deps.store.submitOrders(requests, deps.submitContext());
      deps.controller.wake(createdOrders(outcomes));
      for (const o of outcomes) if (o.kind === 'created') deps.events.emit('order', o.order);
      let created = 0;
      let replayed = 0;
      let refused = 0;
      const results = outcomes.map((o, index) => {
        const outcome = o.order.state === 'refused' ? ('refused' as const) : o.kind;
        if (outcome === 'created') created++;
        else if (outcome === 'replayed') replayed++;
        else refused++;
        return { index, outcome, order: orderView(o.order) };
      });
      return reply.code(202).send({ created, replayed, refused, results });
    },
  });

  r.post('/v1/orders/:orderId/cancel', {
    schema: {
      summary: 'Cancel an order that is not on the wire (queued, held or escalated); an attempt on the wire finishes first',
      description: 'Audited with the reason. Cancelling a reconnect leaves the customer off: do it only when the payment was reversed or reported in error.',
      tags: ['switching'],
      params: OrderIdParam,
      headers: IdempotencyHeaders,
      body: z.object({ reason: z.string().min(3).max(500) }).strict().meta({ examples: [{ reason: 'payment reversed by the bank' }] }),
      response: { 200: OrderView, 400: ErrorView, 401: ErrorView, 403: ErrorView, 404: ErrorView, 409: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'order:cancel'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, deps.submitContext().now, async () => {
        const order = await deps.store.cancelOrder(req.params.orderId, req.principal!.clientId, req.body.reason, deps.submitContext().now);
        deps.events.emit('order', order);
        return { status: 200, body: orderView(order) };
      });
    },
  });

  r.post('/v1/orders/:orderId/approve', {
    schema: {
      summary: 'A supervisor approves one disconnect that waits for approval (maker–checker, never the one who asked for it)',
      description:
        'For a disconnect held with E_APPROVAL_REQUIRED: a customer_request or vacant_premises disconnect of a protected customer, or a safety disconnect of a medical-equipment customer. The approval (who, when) is recorded on the order and audited; the order then passes every other rule as usual. Not for arrears (plans) and never by the key that asked for the order (403 E_SELF_APPROVAL).',
      tags: ['switching'],
      params: OrderIdParam,
      headers: IdempotencyHeaders,
      response: { 200: OrderView, 400: ErrorView, 401: ErrorView, 403: ErrorView, 404: ErrorView, 409: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'order:approve'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, deps.submitContext().now, async () => {
        const order = await deps.store.approveOrder(req.params.orderId, req.principal!.clientId, deps.submitContext().now);
        deps.controller.wake();
        deps.events.emit('order', order);
        return { status: 200, body: orderView(order) };
      });
    },
  });

  r.get('/v1/orders/:orderId', {
    schema: {
      summary: 'An order: its state, every attempt with outcome, latency and evidence, every state change, and the rules it passed or was held or stopped by',
      tags: ['switching'],
      params: OrderIdParam,
      response: { 200: OrderView, 401: ErrorView, 404: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'order:read'),
    handler: async (req) => {
      const order = await deps.store.getOrder(req.params.orderId);
      if (!order) throw new MeterlineError('E_ORDER_NOT_FOUND', `order ${req.params.orderId} does not exist; check the id returned when the order was created`);
      const [attempts, events, notifications] = await Promise.all([deps.store.listAttempts(order.id), deps.store.listOrderEvents(order.id), deps.store.listNotifications(order.meterId)]);
      const rules = orderRules({ ...order, events, policy: deps.submitContext().policy });
      return orderView(order, attempts, events, notifications.filter((n) => n.orderId === order.id), rules);
    },
  });

  r.get('/v1/orders', {
    schema: {
      summary: 'List orders, newest first (order=asc for oldest first), filtered; page with `after` = the previous page\'s `next`',
      description: 'A page continues from its cursor, so orders created while a user pages neither repeat nor push others off the page.',
      tags: ['switching'],
      querystring: OrderListQuery,
      response: { 200: z.object({ items: z.array(OrderView), next: z.string().nullable().describe('The cursor for the next page; null on the last page') }), 400: ErrorView, 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'order:read'),
    handler: async (req) => {
      const { after, limit, ...filters } = req.query;
      // One more than asked tells whether a next page exists, so the last page says null and no empty page follows.
      const items = await deps.store.listOrders(orderQuery(filters, { after, limit: limit + 1 }));
      const page = items.slice(0, limit);
      return { items: page.map((o) => orderView(o)), next: items.length > limit ? page[page.length - 1]!.id : null };
    },
  });

  r.get('/v1/orders/export', {
    schema: {
      summary: 'Every order the filters match, as CSV (same filters as GET /v1/orders), streamed',
      tags: ['switching'],
      querystring: OrderFilters,
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'order:read'),
    handler: async (req, reply) => {
      // The query is built (and a bad range refused) before the 200 and the header row go out.
      const rows = ordersCsv(deps.store, orderQuery(req.query, { limit: EXPORT_PAGE }));
      return reply.type('text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="orders.csv"').send(Readable.from(rows));
    },
  });

  r.get('/v1/queue', {
    schema: {
      summary: 'Orders by state, and attempts on the wire per link',
      tags: ['switching'],
      response: { 200: z.object({ byState: z.record(z.string(), z.number()), inFlightByLink: z.record(z.string(), z.number()) }), 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'order:read'),
    handler: async () => ({ byState: await deps.store.countOrdersByState(), inFlightByLink: deps.controller.inFlightByLink() }),
  });
}
