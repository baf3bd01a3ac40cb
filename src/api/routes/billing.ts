import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { MeterlineError } from '../../errors.js';
import type { ClientEvent, PaymentRecord, PaymentRequest } from '../../store/store.js';
import { requirePermission } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { idempotentWrite } from '../idempotent-write.js';
import { bulkBodyLimit } from '../request-body.js';
import { reconciliationReport, toCsv } from '../../domain/reconciliation.js';
import { checkMinorAmount, creditBalanceLimitError, majorToMinor, MINOR_UNIT_DIGITS, minorToMajor, MONEY_CEILING_MINOR, type MoneyLimits } from '../../domain/money.js';
import type { CreditState } from '../../domain/prepayment/credit-ledger.js';
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

/** What the wire says about money (README "Billing and prepayment"). */
const MONEY_ON_THE_WIRE =
  `Money is exact: whole minor units (cents, pence; the minor unit is 1/${10 ** MINOR_UNIT_DIGITS} of the major unit) as integers. ` +
  `A payment is at most payments.maxAmountMinor (default 10,000,000 = 100,000.00; never above ${MONEY_CEILING_MINOR}); a top-up may not take a ` +
  'prepayment balance over payments.maxCreditBalanceMinor (default 100,000,000). Refused amounts: 400 E_AMOUNT_INVALID, E_AMOUNT_OVER_LIMIT, E_CREDIT_BALANCE_LIMIT.';

const PaymentBody = z
  .object({
    meterId: z.string().min(1).max(64).optional(),
    accountId: z.string().min(1).max(64).optional(),
    // Documented as what it must be; checked in the handler, so every amount refusal has its own code (E_AMOUNT_*).
    amountMinor: z
      .number()
      .meta({ type: 'integer', minimum: 1, maximum: MONEY_CEILING_MINOR })
      .optional()
      .describe(`The amount in whole minor units (1250 for 12.50): an integer from 1 to payments.maxAmountMinor (default 10,000,000). Give this or amount. ${MONEY_ON_THE_WIRE}`),
    amount: z
      .union([z.number(), z.string().max(32)])
      .optional()
      .describe(
        `The amount in major units, as a JSON number or a decimal string ("12.50"), accepted only if it converts exactly: positive, at most ${MINOR_UNIT_DIGITS} decimal places, within the maximum (else 400 E_AMOUNT_INVALID or E_AMOUNT_OVER_LIMIT). Prefer amountMinor.`,
      ),
    receivedAt: iso.describe('When the customer paid; the 24-hour reconnect limit runs from it'),
    posted: z.boolean().default(true).describe('false: received by a bank or agent, not yet posted; it still reconnects (DOMAIN.md rule 13)'),
    kind: z.enum(['payment', 'top_up']).default('payment'),
    reference: z.string().max(100).optional(),
  })
  .strict()
  .refine((p) => (p.meterId === undefined) !== (p.accountId === undefined), { message: 'give exactly one of meterId or accountId' })
  .meta({ examples: [{ meterId: 'SIM-000001', amountMinor: 4250, receivedAt: '2026-11-25T08:12:00Z', posted: true, kind: 'payment', reference: 'BANK-7781' }] });

const Effect = z.object({
  meterId: z.string(),
  cancelledOrders: z.array(z.string()),
  reconnectOrderId: z.string().nullable(),
  limitRemovalOrderId: z.string().nullable().optional().describe('The removal of a limit set for arrears that this payment ordered (DOMAIN.md rule 10); null when none was in force'),
  note: z.string(),
});
/** GET /v1/reconciliation as JSON (domain/reconciliation.ts ReconciliationReport); times are milliseconds since the epoch. */
const ReconciliationView = z.object({
  day: z.string(),
  client: z.string(),
  asOf: z.number().int().describe('When the report was made (ms since the epoch): open orders are judged against it'),
  payments: z.number().int(),
  amountMinor: z.number().int().describe('The payments’ sum, whole minor units'),
  amount: z.number().describe('The same in major units'),
  paymentsWithoutAmount: z.number().int().describe('Payments counted with no amount (legacy rows beyond the ceiling): not in the sum'),
  unposted: z.number().int(),
  paymentsWithoutReconnect: z.number().int().describe('Payments of the day that caused no reconnect order (the meter was on supply)'),
  reconnectsDone: z.number().int(),
  reconnectsArmed: z.number().int(),
  reconnectsEscalated: z.number().int(),
  reconnectsOpen: z.number().int(),
  reconnectsFailed: z.number().int(),
  reconnectsCancelled: z.number().int(),
  late: z
    .array(z.object({ orderId: z.string(), meterId: z.string(), deadline: z.number().int(), completedAt: z.number().int().nullable().describe('When the customer was back on supply; null when not yet'), why: z.string() }))
    .describe('The reconnects over the 24-hour limit, in deadline order'),
});

const PaymentView = z.object({
  id: z.string(),
  meterId: z.string().nullable(),
  accountId: z.string().nullable(),
  amountMinor: z
    .number()
    .int()
    .nullable()
    .describe('Whole minor units. Null only for a payment recorded before amounts were bounded whose amount was beyond any the gateway holds (README "Billing and prepayment")'),
  amount: z.number().nullable().describe('The same amount in major units (amountMinor / 100; its JSON text is exact), for display'),
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
  amountMinor: p.amountMinor,
  amount: p.amountMinor === null ? null : minorToMajor(p.amountMinor),
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

type PaymentBodyIn = z.infer<typeof PaymentBody>;

/** A payment's amount in whole minor units, or why not (money.ts: exact, positive, within the maximum). */
function amountOf(body: PaymentBodyIn, max: number): { minor: number } | { code: 'E_AMOUNT_INVALID' | 'E_AMOUNT_OVER_LIMIT'; message: string } {
  if ((body.amountMinor === undefined) === (body.amount === undefined)) {
    return { code: 'E_AMOUNT_INVALID', message: 'give exactly one of amountMinor (whole minor units, 1250 for 12.50) or amount (major units, "12.50")' };
  }
  const r = body.amountMinor !== undefined ? checkMinorAmount(body.amountMinor, max) : majorToMinor(body.amount!, max);
  return 'minor' in r ? r : { code: r.kind === 'over_limit' ? 'E_AMOUNT_OVER_LIMIT' : 'E_AMOUNT_INVALID', message: r.message };
}

/**
 * The request's fingerprint for its Idempotency-Key: the body as the API took it before amounts were exact, with
 * `amount` in major units as a JSON number. So 12.5, "12.50" and amountMinor 1250 are the same payment, and a
 * retry of a payment recorded before the upgrade still matches its stored fingerprint.
 */
function requestHash(body: PaymentBodyIn, minor: number): string {
  const canonical = { meterId: body.meterId, accountId: body.accountId, amount: minorToMajor(minor), receivedAt: body.receivedAt, posted: body.posted, kind: body.kind, reference: body.reference };
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}

function toRequest(body: PaymentBodyIn, minor: number, client: string, key: string): PaymentRequest {
  return {
    client,
    idempotencyKey: key,
    requestHash: requestHash(body, minor),
    meterId: body.meterId ?? null,
    accountId: body.accountId ?? null,
    amountMinor: minor,
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
  const money: MoneyLimits = deps.money;
  /** A top-up changes a prepayment meter's credit: warnings reset, a cut-off is lifted, the meter reconnects. Once per meter (level-triggered). */
  const creditAfter = async (payments: PaymentRecord[]) => {
    if (!deps.credit) return;
    const meters = new Set(payments.filter((p) => p.kind === 'top_up').flatMap((p) => p.effects.map((e) => e.meterId)));
    for (const meterId of meters) await deps.credit.evaluate(meterId);
  };
  /** Every row's amount in minor units, or 400 naming the rows that are not (nothing is recorded). */
  const amountsOf = (bodies: readonly PaymentBodyIn[]): number[] => {
    const bad: { index: number; code: 'E_AMOUNT_INVALID' | 'E_AMOUNT_OVER_LIMIT'; problem: string }[] = [];
    const minors = bodies.map((b, index) => {
      const a = amountOf(b, money.maxAmountMinor);
      if ('minor' in a) return a.minor;
      bad.push({ index, code: a.code, problem: a.message });
      return 0;
    });
    if (bad.length > 0) {
      // The first refused row names the code; each row in the details carries its own.
      const first = bad[0]!;
      const where = bodies.length > 1 ? `${bad.length} payment(s) have an amount the gateway cannot take, the first at index ${first.index}: ` : '';
      throw new MeterlineError(first.code, `${where}${first.problem}; nothing was recorded`, { maxAmountMinor: money.maxAmountMinor, invalid: bad.slice(0, 100) });
    }
    return minors;
  };

  const minor = (what: string) => z.number().int().describe(`${what}, whole minor units (cents, pence)`);
  const CreditView = z.object({
    meterId: z.string(),
    balance: minor('The customer’s own credit (the exact balance rounded up by less than one minor unit: see unchargedMicro)'),
    status: z.enum(['in_credit', 'low', 'emergency_available', 'on_emergency_credit', 'exhausted']),
    emergencyCreditInUse: z.boolean(),
    emergencyCreditRemaining: minor('Emergency credit granted and not used yet'),
    emergencyDebt: minor('Used beyond the customer’s own credit and owed back (a top-up repays it first)'),
    unchargedMicro: z
      .number()
      .int()
      .describe('Energy used but not charged yet because it does not make a whole minor unit, in millionths of a minor unit (0 to 999,999); charged when it does'),
    lastTopUp: z.object({ amount: minor('The top-up'), at: z.string(), ref: z.string() }).nullable(),
    thresholdsCrossed: z.array(z.number()),
  });
  const creditView = (meterId: string, c: CreditState): z.infer<typeof CreditView> => ({
    meterId,
    balance: c.balance,
    status: c.status,
    emergencyCreditInUse: c.emergencyCreditInUse,
    emergencyCreditRemaining: c.emergencyCreditRemaining,
    emergencyDebt: c.emergencyDebt,
    unchargedMicro: c.unchargedMicro,
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
      description: MONEY_ON_THE_WIRE,
      tags: ['billing'],
      headers: IdempotencyHeaders,
      body: PaymentBody,
      response: { 201: PaymentView, 200: PaymentView, 400: ErrorView, 401: ErrorView, 403: ErrorView, 404: ErrorView, 409: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'payment:write'),
    handler: async (req, reply) => {
      const key = requireKey(req.headers['idempotency-key']);
      const [amount] = amountsOf([req.body]);
      const [out] = await deps.store.recordPayments([toRequest(req.body, amount!, req.principal!.clientId, key)], deps.submitContext(), money);
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
      description: `Each payment gets the idempotency key "<Idempotency-Key>#<index>": retrying the same file changes nothing. Every row's amount and every prepayment balance is checked before anything is recorded. A body over ${paymentsLimit} bytes: 413 E_BODY_TOO_LARGE. ${MONEY_ON_THE_WIRE}`,
      tags: ['billing'],
      headers: IdempotencyHeaders,
      body: z
        .object({ payments: z.array(PaymentBody).min(1) })
        .strict()
        .meta({ examples: [{ payments: [{ accountId: 'ACC-1001', amountMinor: 3000, receivedAt: '2026-11-25T07:00:00Z', posted: false, reference: 'AGENT-33' }] }] }),
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
      const amounts = amountsOf(req.body.payments);
      const requests = req.body.payments.map((p, i) => toRequest(p, amounts[i]!, req.principal!.clientId, `${key}#${i}`));
      // All or nothing for what can be checked up front; then applied in parts, so a 50,000-row file does not hold
      // the gateway's event loop. A file cut short by a crash is completed by sending it again (same key).
      const check = await deps.store.checkPayments(requests, money);
      if (check.missing.length > 0) {
        throw new MeterlineError('E_METER_NOT_FOUND', `${check.missing.length} payment(s) name meters or accounts that are not registered; nothing was recorded`, { missing: check.missing.slice(0, 100) });
      }
      if (check.conflicts.length > 0) {
        throw new MeterlineError('E_IDEMPOTENCY_CONFLICT', `${check.conflicts.length} row(s) reuse their idempotency key with a different payment; nothing was recorded`, { conflicts: check.conflicts.slice(0, 100) });
      }
      if (check.overLimit.length > 0) throw creditBalanceLimitError(check.overLimit, money.maxCreditBalanceMinor);
      const outs: Awaited<ReturnType<typeof deps.store.recordPayments>> = [];
      for (let i = 0; i < requests.length; i += PAYMENTS_PER_TRANSACTION) {
        outs.push(...(await deps.store.recordPayments(requests.slice(i, i + PAYMENTS_PER_TRANSACTION), deps.submitContext(), money)));
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
      response: { 200: ReconciliationView },
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
        payments: payments.flatMap((p) => p.effects.map((e) => ({ paymentId: p.id, meterId: e.meterId, amountMinor: p.amountMinor, receivedAt: p.receivedAt, posted: p.posted }))),
        orders,
      });
      // CSV is sent as text, past the JSON response schema (a string with its own type is not serialized).
      if (req.query.format === 'csv') return (reply as FastifyReply).type('text/csv').send(toCsv(report));
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
      description: '`orderId` narrows it to one order’s events (the console’s order page); only this client’s own callbacks are ever listed.',
      tags: ['billing'],
      querystring: Cursor.extend({ orderId: z.string().min(1).max(200).optional().describe('Only the events about this order') }),
      response: { 200: z.object({ items: z.array(EventView) }), 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'changes:read'),
    handler: async (req) => ({ items: (await deps.store.clientEvents(req.principal!.clientId, req.query.after, req.query.limit, req.query.orderId)).map(eventView) }),
  });
}
