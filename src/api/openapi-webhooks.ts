import { z } from 'zod';
import { ORDER_ACTIONS, RELAY_STATES } from '../domain/relay.js';
import { ORDER_STATES } from '../domain/switch-order.js';
import { WORK_ORDER_ACTIONS, WORK_ORDER_KINDS, WORK_ORDER_STATUSES } from '../store/store.js';

/**
 * The HTTP calls the gateway makes to its users' systems, as OpenAPI 3.1 `webhooks`: what each receiver must
 * implement, with the exact signature the dispatcher computes (src/integrations/callback-dispatcher.ts,
 * notification-dispatcher.ts, billing-recheck.ts). Nothing here is a timestamp or a nonce: no scheme signs a time,
 * so a receiver protects itself against replays by the event's number (`seq`) or id, which it already deduplicates
 * by since delivery is at least once.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

const schemaOf = (schema: z.ZodType): Json => {
  const { $schema: _, ...json } = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'output' }) as Json;
  return json;
};

const HMAC_HOW =
  'HMAC-SHA256, keyed with the shared secret as UTF-8 bytes, over the raw request body exactly as sent (the UTF-8 JSON text, before any parsing or re-serialising), written as `sha256=` and 64 lowercase hex digits. Compare it in constant time with one you compute over the bytes you received. Only the body is signed: no timestamp, URL or header is part of it, so there is no replay window; reject a replayed body by its number or id, which you deduplicate by anyway (delivery is at least once).';

const signatureHeader = (secret: string, optional: boolean): Json => ({
  name: 'X-Meterline-Signature',
  in: 'header',
  required: !optional,
  description: `\`sha256=<hex>\`: ${HMAC_HOW} The secret is ${secret}.${optional ? ' Sent only when that secret is configured; without one the body is unsigned.' : ''}`,
  schema: { type: 'string', pattern: '^sha256=[0-9a-f]{64}$' },
});

const OrderEventPayload = z.object({
  orderId: z.string(),
  meterId: z.string(),
  action: z.enum(ORDER_ACTIONS),
  reason: z.string(),
  state: z.enum(ORDER_STATES),
  stateReason: z.string().nullable().describe('The code and words behind the state (a hold, a refusal, a failure)'),
  attempts: z.number().int().describe('Attempts on the wire so far'),
  relay: z.enum(RELAY_STATES).nullable().describe('The relay state the last read-back showed; null before any'),
  verified: z.boolean().describe('True only for done and armed'),
  deadline: z.string().nullable().describe('The reconnect deadline (24 hours from the payment), ISO 8601'),
  at: z.string().describe('When the order changed, ISO 8601'),
});

const OrderCallback = z.object({
  seq: z.number().int().min(1).describe("The event's number in this billing client's own feed: 1 for its first event, then exactly one more each time, never skipped: a gap means loss. Delivery is at least once: drop a seq you already have"),
  kind: z.enum(ORDER_STATES.map((s) => `order.${s}`) as [string, ...string[]]).describe('`order.<state>`: the state the order moved to'),
  meterId: z.string(),
  orderId: z.string(),
  at: z.string().describe('When the event was recorded, ISO 8601'),
  payload: OrderEventPayload,
});

const WorkOrderPayload = z.object({
  workOrderId: z.string(),
  kind: z.enum(WORK_ORDER_KINDS),
  orderId: z.string().nullable(),
  meterId: z.string(),
  region: z.string(),
  action: z.enum(WORK_ORDER_ACTIONS),
  priority: z.number(),
  reason: z.string(),
  raisedAt: z.string(),
  dueAt: z.string(),
  deadline: z.string().nullable(),
  status: z.enum(WORK_ORDER_STATUSES),
  note: z.string().nullable(),
});

/** The notification outbox's envelope: every notification webhook carries one. */
const notification = (kinds: readonly string[], payload: z.ZodType, about: string) =>
  z.object({
    id: z.string().describe('The notification id, also in `X-Meterline-Notification-Id`; the same on every retry: deduplicate by it'),
    kind: z.enum(kinds as [string, ...string[]]),
    meterId: z.string().describe('The meter, or `-` for a notification about a population (a link, profile or region)'),
    orderId: z.string().nullable(),
    payload: payload.describe(about),
  });

const notificationIdHeader = { name: 'X-Meterline-Notification-Id', in: 'header', required: true, description: 'The notification id (as `id` in the body)', schema: { type: 'string' } };

const outboxDelivery = (timeoutS: string) =>
  `Delivery: \`POST\` with the JSON body; a 2xx answer marks it delivered, anything else (or no answer in ${timeoutS}) is retried with backoff (from 1 s, doubling, at most 300 s, with jitter). The outbox lives in the gateway's store, so a receiver that is down loses nothing.`;

const delivered = { '2XX': { description: 'Received: the gateway marks the delivery done (the body of the answer is not read)' }, default: { description: 'Anything else, or no answer in time: not delivered; the gateway retries the same body later' } };

function operation(operationId: string, summary: string, description: string, parameters: Json[], body: Json, responses: Json, security: Json[]): Json {
  return { post: { operationId, summary, description, tags: ['webhooks'], parameters, requestBody: { required: true, content: { 'application/json': { schema: body } } }, responses, security } };
}

export function addWebhooks(doc: Json): void {
  doc.components ??= {};
  doc.components.securitySchemes = {
    ...doc.components.securitySchemes,
    callbackSignature: {
      type: 'apiKey',
      in: 'header',
      name: 'X-Meterline-Signature',
      description: `Order callbacks to a billing client: ${HMAC_HOW} The secret is the one the client registered with \`PUT /v1/callbacks\`.`,
    },
    notificationSignature: {
      type: 'apiKey',
      in: 'header',
      name: 'X-Meterline-Signature',
      description: `Notifications (customer channel, field service, operator alerts): ${HMAC_HOW} The secret is the one configured for that receiver (notifications.secret, fieldService.secret, successRates.alertSecret); without one the body is sent unsigned.`,
    },
  };
  doc.webhooks = {
    ...doc.webhooks,
    orderCallback: operation(
      'orderCallback',
      "A billing client's order changed",
      "Sent to the URL a billing client registered with `PUT /v1/callbacks`, for every change to the orders it asked for (done, armed, failed, escalated, refused, cancelled, superseded, …), in order per meter (a meter's next event waits until the one before it was delivered; meters do not wait for each other). A 2xx answer marks it delivered; anything else, or no answer within `callbacks.timeoutMs` (5 s by default), is retried with backoff (from 1 s, doubling, at most `callbacks.maxRetryDelayMs`, 300 s by default, with jitter). The same events can be read with `GET /v1/changes`.",
      [signatureHeader('the one the client registered with `PUT /v1/callbacks`', false), { name: 'X-Meterline-Event-Seq', in: 'header', required: true, description: 'The event number (as `seq` in the body)', schema: { type: 'string', pattern: '^[1-9][0-9]*$' } }],
      schemaOf(OrderCallback),
      delivered,
      [{ callbackSignature: [] }],
    ),
    workOrder: operation(
      'workOrderNotification',
      'A field work order was created, revised or cancelled',
      `Sent to \`fieldService.webhookUrl\` when a work order for a crew is created (a meter the gateway could not switch remotely, credentials, a load-side voltage to check, an inspection), revised (\`work_order.updated\`: the gateway raised it again with a new reason, a higher priority or an earlier due time) or cancelled (the order behind it was settled otherwise). Assigning and completing it through the API are not sent. ${outboxDelivery('5 s')}`,
      [signatureHeader('`fieldService.secret`', true), notificationIdHeader],
      schemaOf(notification(['work_order.created', 'work_order.updated', 'work_order.cancelled'], WorkOrderPayload, 'The work order as it is now')),
      delivered,
      [{ notificationSignature: [] }, {}],
    ),
    customerNotification: operation(
      'customerNotification',
      'A message for a customer: the pre-disconnect notice, low credit, an emergency credit offer',
      `Sent to \`notifications.webhookUrl\` (the customer-channel system). \`pre_disconnect_notice\` is the second notice of DOMAIN.md rule 2: the disconnect waits until it is delivered (a 2xx here) and 30 minutes more. ${outboxDelivery('5 s')}`,
      [signatureHeader('`notifications.secret`', true), notificationIdHeader],
      schemaOf(
        notification(
          ['pre_disconnect_notice', 'customer.low_credit', 'customer.emergency_credit_offer'],
          z.record(z.string(), z.unknown()),
          'pre_disconnect_notice: {kind, notificationId, meterId, orderId, reason, notBefore, sentAt}; customer.low_credit: {meterId, thresholdPercent, balance, lastTopUp, at}; customer.emergency_credit_offer: {meterId, amount, balance, at}',
        ),
      ),
      delivered,
      [{ notificationSignature: [] }, {}],
    ),
    operatorAlert: operation(
      'operatorAlert',
      'An alert for the operators',
      `Sent to \`successRates.alertWebhookUrl\`: success rates below threshold and recovered, a circuit breaker opened, abnormal consumption, a register discontinuity, a relay-audit exception (each once per episode; the same alerts are listed by \`GET /v1/alerts\`). ${outboxDelivery('5 s')}`,
      [signatureHeader('`successRates.alertSecret`', true), notificationIdHeader],
      schemaOf(
        notification(
          ['alert.success_rate', 'alert.success_rate_recovered', 'alert.circuit_open', 'alert.abnormal_consumption', 'alert.register_discontinuity', 'alert.relay_audit'],
          z.record(z.string(), z.unknown()),
          'What the alert is about, with `at` or `openedAt` and, for most kinds, a `message` in words',
        ),
      ),
      delivered,
      [{ notificationSignature: [] }, {}],
    ),
    paymentRecheck: operation(
      'paymentRecheck',
      'Is this account still in arrears? (asked just before a disconnect for non-payment)',
      'DOMAIN.md rule 3: immediately before a disconnect for non-payment is sent, the gateway asks `policy.paymentRecheck.url`. Answer 200 with `{"inArrears": true}` to let it go ahead, or `{"inArrears": false, "detail": "…"}` to cancel it (E_PAID). Anything else (another status, a body that is not this, no answer within `policy.paymentRecheck.timeoutMs`, 3 s by default) counts as unreachable: the order is held (E_BILLING_UNREACHABLE) and asked again after `policy.paymentRecheck.retryAfterMs`; it is never assumed. The request is not signed: it carries no secret and asks a question, and the hook should be reachable only from the gateway (a private network, or a URL with a secret path).',
      [],
      schemaOf(z.object({ meterId: z.string(), orderId: z.string(), reason: z.string().describe('The disconnect reason (arrears)') })),
      {
        '200': { description: 'The account’s state', content: { 'application/json': { schema: schemaOf(z.object({ inArrears: z.boolean(), detail: z.string().max(500).optional().describe('Shown with E_PAID when the account is paid') })) } } },
        default: { description: 'Anything else: unreachable; the order is held and asked again' },
      },
      [{}],
    ),
  };
}
