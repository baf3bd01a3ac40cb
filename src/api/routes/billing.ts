import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { MeterlineError } from '../../errors.js';
import type { ClientEvent, PaymentRecord, PaymentRequest } from '../../store/store.js';
import { requirePermission } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { idempotentWrite } from '../idempotent-write.js';
import { bulkBodyLimit } from '../request-body.js';
import { reconciliationReport, toCsv } from '../../domain/reconciliation.js';
import { ErrorView, IdempotencyHeaders } from '../schemas.js';

/**
 * The billing system's side (issue 7): payments and top-ups (one or a file of up to 50,000), the callback URL
 * where every order change it cares about is delivered, the same changes by polling with a cursor, and the
 * delivery log.
 */
export const PAYMENTS_BULK_LIMIT = 50_000;
/** One payment at most, as JSON: every field at its longest (ASCII) is about 300 bytes. Sets the bulk body limit. */
export const PAYMENT_ITEM_BYTES = 384;
/** A bulk file is applied this many payments per transaction. */
const PAYMENTS_PER_TRANSACTION = 500;
const iso = z.iso.datetime({ offset: true });

const PaymentBody = z
  .object({
    meterId: z.string().min(1).max(64).optional(),
    accountId: z.string().min(1).max(64).optional(),
    amount: z.number().positive(),
    receivedAt: iso.describe('When the customer paid; the 24-hour reconnect limit runs from it'),
    posted: z.boolean().default(true).describe('false: received by a bank or agent, not yet posted; it still reconnects (DOMAIN.md rule 13)'),
    kind: z.enum(['payment', 'top_up']).default('payment'),
    reference: z.string().max(100).optional(),
  })
  .strict()
  .refine((p) => (p.meterId === undefined) !== (p.accountId === undefined), { message: 'give exactly one of meterId or accountId' })
  .meta({ examples: [{ meterId: 'SIM-000001', amount: 42.5, receivedAt: '2026-11-25T08:12:00Z', posted: true, kind: 'payment', reference: 'BANK-7781' }] });

const Effect = z.object({ meterId: z.string(), cancelledOrders: z.array(z.string()), reconnectOrderId: z.string().nullable(), note: z.string() });
const PaymentView = z.object({
  id: z.string(),
  meterId: z.string().nullable(),
  accountId: z.string().nullable(),
  amount: z.number(),
  kind: z.enum(['payment', 'top_up']),
  posted: z.boolean(),
  reference: z.string().nullable(),
  receivedAt: z.string(),
  recordedAt: z.string(),
  effects: z.array(Effect),
});
/** What `seq` promises a receiver (the change feed, the callbacks' body and `X-Meterline-Event-Seq`, the delivery log). */
const SEQ_CONTRACT =
  "The event's number in this billing client's own feed: 1 for its first event, then exactly one more for each next one, " +
  "whatever other clients' orders do; never skipped, never reused. The change feed lists events in seq order and never shows " +
  'N + 1 before N, so a gap there means loss. Callbacks carry the same seq; they are delivered at least once (a receiver drops a ' +
  'seq it already has) and in order per meter, not across meters, so a seq missing among callbacks is being retried or lost: ' +
  '`GET /v1/changes?after=` the seq before the gap returns it.';
const EventView = z.object({
  seq: z.number().int().min(1).describe(SEQ_CONTRACT),
  kind: z.string(),
  meterId: z.string(),
  orderId: z.string(),
  at: z.string(),
  payload: z.record(z.string(), z.unknown()),
  delivery: z.object({ attempts: z.number(), deliveredAt: z.string().nullable(), lastError: z.string().nullable() }),
});

const paymentView = (p: PaymentRecord): z.infer<typeof PaymentView> => ({
  id: p.id,
  meterId: p.meterId,
  accountId: p.accountId,
  amount: p.amount,
  kind: p.kind,
  posted: p.posted,
  reference: p.reference,
  receivedAt: new Date(p.receivedAt).toISOString(),
  recordedAt: new Date(p.recordedAt).toISOString(),
  effects: p.effects,
});
const eventView = (e: ClientEvent): z.infer<typeof EventView> => ({
  seq: e.seq,
  kind: e.kind,
  meterId: e.meterId,
  orderId: e.orderId,
  at: new Date(e.at).toISOString(),
  payload: e.payload,
  delivery: { attempts: e.attempts, deliveredAt: e.deliveredAt === null ? null : new Date(e.deliveredAt).toISOString(), lastError: e.lastError },
});

function toRequest(body: z.infer<typeof PaymentBody>, client: string, key: string): PaymentRequest {
  return {
    client,
    idempotencyKey: key,
    requestHash: createHash('sha256').update(JSON.stringify(body)).digest('hex'),
    meterId: body.meterId ?? null,
    accountId: body.accountId ?? null,
    amount: body.amount,
    kind: body.kind,
    posted: body.posted,
    reference: body.reference ?? null,
    receivedAt: Date.parse(body.receivedAt),
  };
}

function requireKey(key: string | undefined): string {
  if (!key) throw new MeterlineError('E_IDEMPOTENCY_KEY_MISSING', 'send an Idempotency-Key header (e.g. your payment reference) so a retried payment cannot be applied twice');
  return key;
}

export async function billingRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  /** A top-up changes a prepayment meter's credit: warnings reset, a cut-off is lifted, the meter reconnects. */
  const creditAfter = async (payments: PaymentRecord[]) => {
    if (!deps.credit) return;
    for (const p of payments) if (p.kind === 'top_up') for (const e of p.effects) await deps.credit.evaluate(e.meterId);
  };

  const CreditView = z.object({
    meterId: z.string(),
    balance: z.number().describe('The customer’s own credit, minor units (cents, pence)'),
    status: z.enum(['in_credit', 'low', 'emergency_available', 'on_emergency_credit', 'exhausted']),
    emergencyCreditInUse: z.boolean(),
    emergencyCreditRemaining: z.number(),
    emergencyDebt: z.number(),
    lastTopUp: z.object({ amount: z.number(), at: z.string(), ref: z.string() }).nullable(),
    thresholdsCrossed: z.array(z.number()),
  });
  const creditView = (meterId: string, c: import('../../domain/prepayment/credit-ledger.js').CreditState): z.infer<typeof CreditView> => ({
    meterId,
    balance: c.balance,
    status: c.status,
    emergencyCreditInUse: c.emergencyCreditInUse,
    emergencyCreditRemaining: c.emergencyCreditRemaining,
    emergencyDebt: c.emergencyDebt,
    lastTopUp: c.lastTopUp ? { amount: c.lastTopUp.amount, at: new Date(c.lastTopUp.at).toISOString(), ref: c.lastTopUp.ref } : null,
    thresholdsCrossed: c.thresholdsCrossed,
  });
  r.get('/v1/meters/:meterId/credit', {
    schema: { summary: 'A prepayment meter’s credit: balance, emergency credit, thresholds crossed since the last top-up', tags: ['billing'], params: z.object({ meterId: z.string() }), response: { 200: CreditView, 401: ErrorView, 404: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'meter:read'),
    handler: async (req) => {
      if (!deps.credit) throw new MeterlineError('E_NOT_FOUND', 'credit control is not running');
      if (!(await deps.store.getMeter(req.params.meterId))) throw new MeterlineError('E_METER_NOT_FOUND', `meter ${req.params.meterId} is not registered`);
      return creditView(req.params.meterId, await deps.credit.state(req.params.meterId));
    },
  });
  r.post('/v1/meters/:meterId/emergency-credit', {
    schema: { summary: 'The customer accepts the emergency credit offered; a meter cut off for credit is reconnected', tags: ['billing'], params: z.object({ meterId: z.string() }), headers: IdempotencyHeaders, response: { 200: CreditView, 401: ErrorView, 403: ErrorView, 404: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'payment:write'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, deps.submitContext().now, async () => {
        const meter = await deps.store.getMeter(req.params.meterId);
        if (!meter) throw new MeterlineError('E_METER_NOT_FOUND', `meter ${req.params.meterId} is not registered`);
        if (!deps.credit || !meter.flags.prepaymentMode) throw new MeterlineError('E_NO_PREPAYMENT_AGREEMENT', `meter ${req.params.meterId} is not in prepayment mode`);
        return { status: 200, body: creditView(req.params.meterId, await deps.credit.grantEmergencyCredit(req.params.meterId, req.principal!.clientId)) };
      });
    },
  });

  r.post('/v1/payments', {
    schema: {
      summary: 'Report a payment or top-up: pending disconnects are cancelled, and a meter off for non-payment is reconnected within the limit',
      tags: ['billing'],
      headers: IdempotencyHeaders,
      body: PaymentBody,
      response: { 201: PaymentView, 200: PaymentView, 400: ErrorView, 401: ErrorView, 403: ErrorView, 404: ErrorView, 409: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'payment:write'),
    handler: async (req, reply) => {
      const [out] = await deps.store.recordPayments([toRequest(req.body, req.principal!.clientId, requireKey(req.headers['idempotency-key']))], deps.submitContext());
      deps.controller.wake();
      if (out!.kind === 'created') await creditAfter([out!.payment]);
      if (out!.kind === 'replayed') reply.header('idempotent-replayed', 'true');
      return reply.code(out!.kind === 'created' ? 201 : 200).send(paymentView(out!.payment));
    },
  });

  const paymentsLimit = bulkBodyLimit(PAYMENTS_BULK_LIMIT, PAYMENT_ITEM_BYTES);
  r.post('/v1/payments/bulk', {
    bodyLimit: paymentsLimit,
    schema: {
      summary: `Report up to ${PAYMENTS_BULK_LIMIT} payments in one request (a payment file): all or nothing`,
      description: `Each payment gets the idempotency key "<Idempotency-Key>#<index>": retrying the same file changes nothing. A body over ${paymentsLimit} bytes: 413 E_BODY_TOO_LARGE.`,
      tags: ['billing'],
      headers: IdempotencyHeaders,
      body: z
        .object({ payments: z.array(PaymentBody).min(1) })
        .strict()
        .meta({ examples: [{ payments: [{ accountId: 'ACC-1001', amount: 30, receivedAt: '2026-11-25T07:00:00Z', posted: false, reference: 'AGENT-33' }] }] }),
      response: {
        202: z.object({ created: z.number(), replayed: z.number(), reconnects: z.number(), results: z.array(z.object({ index: z.number(), paymentId: z.string(), effects: z.array(Effect) })) }),
        400: ErrorView,
        404: ErrorView,
        409: ErrorView,
        413: ErrorView,
      },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'payment:write'),
    handler: async (req, reply) => {
      const key = requireKey(req.headers['idempotency-key']);
      if (req.body.payments.length > PAYMENTS_BULK_LIMIT) throw new MeterlineError('E_BULK_TOO_LARGE', `${req.body.payments.length} payments in one request; send at most ${PAYMENTS_BULK_LIMIT}`);
      const requests = req.body.payments.map((p, i) => toRequest(p, req.principal!.clientId, `${key}#${i}`));
      // All or nothing for what can be checked up front; then applied in parts, so a 50,000-row file does not hold
      // the gateway's event loop. A file cut short by a crash is completed by sending it again (same key).
      const check = await deps.store.checkPayments(requests);
      if (check.missing.length > 0) {
        throw new MeterlineError('E_METER_NOT_FOUND', `${check.missing.length} payment(s) name meters or accounts that are not registered; nothing was recorded`, { missing: check.missing.slice(0, 100) });
      }
      if (check.conflicts.length > 0) {
        throw new MeterlineError('E_IDEMPOTENCY_CONFLICT', `${check.conflicts.length} row(s) reuse their idempotency key with a different payment; nothing was recorded`, { conflicts: check.conflicts.slice(0, 100) });
      }
      const outs: Awaited<ReturnType<typeof deps.store.recordPayments>> = [];
      for (let i = 0; i < requests.length; i += PAYMENTS_PER_TRANSACTION) {
        outs.push(...(await deps.store.recordPayments(requests.slice(i, i + PAYMENTS_PER_TRANSACTION), deps.submitContext())));
        deps.controller.wake();
      }
      deps.controller.wake();
      await creditAfter(outs.filter((o) => o.kind === 'created').map((o) => o.payment));
      return reply.code(202).send({
        created: outs.filter((o) => o.kind === 'created').length,
        replayed: outs.filter((o) => o.kind === 'replayed').length,
        reconnects: outs.reduce((n, o) => n + o.payment.effects.filter((e) => e.reconnectOrderId !== null).length, 0),
        results: outs.map((o, index) => ({ index, paymentId: o.payment.id, effects: o.payment.effects })),
      });
    },
  });

  r.get('/v1/payments', {
    schema: {
      summary: "Payments reported by this client (a billing key sees its own; operators and auditors see all)",
      tags: ['billing'],
      querystring: z.object({ from: iso.optional(), to: iso.optional(), limit: z.coerce.number().int().min(1).max(10_000).default(1000) }),
      response: { 200: z.object({ items: z.array(PaymentView) }), 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'payment:read'),
    handler: async (req) => {
      const own = req.principal!.role === 'billing' ? { client: req.principal!.clientId } : {};
      const items = await deps.store.listPayments({ ...own, ...(req.query.from ? { from: Date.parse(req.query.from) } : {}), ...(req.query.to ? { to: Date.parse(req.query.to) } : {}), limit: req.query.limit });
      return { items: items.map(paymentView) };
    },
  });

  r.put('/v1/callbacks', {
    schema: {
      summary: "Register this client's callback URL and HMAC secret; every change to its orders (done, armed, failed, escalated, refused, cancelled, superseded) is delivered there, in order per meter",
      tags: ['billing'],
      headers: IdempotencyHeaders,
      body: z.object({ url: z.string().url(), secret: z.string().min(16).max(200) }).strict().meta({ examples: [{ url: 'https://billing.example/meterline/events', secret: 'a-long-shared-secret-0001' }] }),
      response: { 200: z.object({ client: z.string(), url: z.string(), updatedAt: z.string() }), 400: ErrorView, 401: ErrorView, 403: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'callback:manage'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, deps.submitContext().now, async () => {
        const sub = await deps.store.setCallback(req.principal!.clientId, req.body.url, req.body.secret, deps.submitContext().now);
        return { status: 200, body: { client: sub.client, url: sub.url, updatedAt: new Date(sub.updatedAt).toISOString() } };
      });
    },
  });

  r.get('/v1/reconciliation', {
    schema: {
      summary: "The daily reconciliation for this billing client: payments received, reconnects done, armed, escalated, open, and the late ones (over the limit) with why; JSON or CSV",
      tags: ['billing'],
      querystring: z.object({
        day: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'YYYY-MM-DD'),
        client: z.string().optional().describe('Operators and auditors give the billing client’s id (its keys’ clientId, not its label); a billing key gets its own'),
        format: z.enum(['json', 'csv']).default('json'),
        timezone: z.string().default('UTC'),
      }),
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'payment:read'),
    handler: async (req, reply) => {
      const client = req.principal!.role === 'billing' ? req.principal!.clientId : req.query.client;
      if (!client) throw new MeterlineError('E_VALIDATION', 'give the billing client’s id (client=…, the clientId of its keys)');
      const dayStart = Date.parse(`${req.query.day}T00:00:00Z`);
      // A generous range around the day in any time zone; the report keeps the payments of the local day.
      const payments = await deps.store.listPayments({ client, from: dayStart - 86_400_000, to: dayStart + 2 * 86_400_000, limit: 1_000_000 });
      const orders = [];
      for (const p of payments) {
        for (const e of p.effects) {
          if (!e.reconnectOrderId) continue;
          const o = await deps.store.getOrder(e.reconnectOrderId);
          if (o) orders.push({ orderId: o.id, paymentId: p.id, meterId: o.meterId, state: o.state, createdAt: o.createdAt, completedAt: o.completedAt, deadline: o.deadline, stateReason: o.stateReason, escalatedAt: o.escalatedAt });
        }
      }
      const report = reconciliationReport({
        day: req.query.day,
        client,
        timezone: req.query.timezone,
        now: deps.submitContext().now,
        payments: payments.flatMap((p) => p.effects.map((e) => ({ paymentId: p.id, meterId: e.meterId, amount: p.amount, receivedAt: p.receivedAt, posted: p.posted }))),
        orders,
      });
      if (req.query.format === 'csv') return reply.type('text/csv').send(toCsv(report));
      return report;
    },
  });

  const Cursor = z.object({
    after: z.coerce.number().int().min(0).default(0).describe('Return events with a seq above this one (0: from the first); pass the last `seq` you have'),
    limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  });
  r.get('/v1/changes', {
    schema: {
      summary: "This client's order changes since a cursor (the same events the callbacks carry); page with `after` = the last `seq`",
      description:
        "Each billing client's events are numbered 1, 2, 3, … in its own feed with no gaps, and appear here in that order: a page " +
        'never shows seq N + 1 before N has committed, so a receiver that sees a gap has lost an event. `next` is the last seq on the page.',
      tags: ['billing'],
      querystring: Cursor,
      response: { 200: z.object({ items: z.array(EventView), next: z.number() }), 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'changes:read'),
    handler: async (req) => {
      const items = await deps.store.clientEvents(req.principal!.clientId, req.query.after, req.query.limit);
      return { items: items.map(eventView), next: items.length ? items[items.length - 1]!.seq : req.query.after };
    },
  });
  r.get('/v1/callbacks/deliveries', {
    schema: {
      summary: 'The delivery log of this client’s callbacks: every event with its attempts, delivery time and last error',
      tags: ['billing'],
      querystring: Cursor,
      response: { 200: z.object({ items: z.array(EventView) }), 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'changes:read'),
    handler: async (req) => ({ items: (await deps.store.clientEvents(req.principal!.clientId, req.query.after, req.query.limit)).map(eventView) }),
  });
}
