import type { ErrorCode } from '../errors.js';

/**
 * The errors each operation can answer with, beyond the ones every operation of its kind can give (those the
 * document builder adds by itself: 400 E_VALIDATION where there are parameters or a body, 401/403 where a key is
 * needed, 409/400 for the Idempotency-Key of a write, 413 for a body, 429, 500, 503 E_SHUTTING_DOWN on a write).
 * Keyed `"<METHOD> <path>"` as in `OPERATION_IDS`. The document lists each code under its status (from the
 * catalogue in src/errors.ts), and the strict response validation in the tests fails on any code not listed.
 *
 * Read from the route and the store and domain code it calls (`new MeterlineError('E_…')`); a disconnect or limit
 * that a rule refuses at admission answers with that rule's code (switch-orders.ts `replyWith`, disconnect-gate.ts).
 */

/** A disconnect refused at admission: the latest-intent rule (admission.ts) and the disconnect gate's refusals. */
const DISCONNECT_REFUSALS: readonly ErrorCode[] = [
  'E_RECONNECT_PENDING',
  'E_REASON_NOT_ALLOWED',
  'E_REFERENCE_REQUIRED',
  'E_CREDIT_CUTOFF_RESERVED',
  'E_NOTICE_MISSING',
  'E_NOTICE_STALE',
  'E_PROTECTED_MODE',
  'E_PROTECTED_CUSTOMER',
  'E_OUTSIDE_WINDOW',
  'E_LIMIT_FIRST',
  'E_PLAN_REQUIRED',
  'E_PLAN_NOT_APPROVED',
  'E_PLAN_WINDOW_CLOSED',
  'E_NO_BILLING_HOOK',
  'E_NO_PREPAYMENT_AGREEMENT',
  'E_CREDIT_AVAILABLE',
];

/** A limit refused at admission (disconnect-gate.ts, the limit's rules) or before it (limit-admission.ts). */
const LIMIT_REFUSALS: readonly ErrorCode[] = ['E_RECONNECT_PENDING', 'E_REASON_NOT_ALLOWED', 'E_REFERENCE_REQUIRED', 'E_PROTECTED_MODE', 'E_PROTECTED_CUSTOMER', 'E_NO_LOAD_LIMITER'];

/**
 * Reading or changing a meter's sealed DLMS keys (src/keys/): no key master configured, or a sealed set that does not
 * open (sealed under another master, or its row altered): status 500 with its own code, so an operator can tell a
 * wrong key master from a bug.
 */
const KEY_MATERIAL: readonly ErrorCode[] = ['E_NO_MASTER_KEY', 'E_KEY_MASTER_MISMATCH', 'E_KEY_ENVELOPE_INVALID'];

export const OPERATION_ERRORS: Readonly<Record<string, readonly ErrorCode[]>> = {
  'POST /v1/meters/{meterId}/reconnect': ['E_METER_NOT_FOUND'],
  'POST /v1/meters/{meterId}/disconnect': ['E_METER_NOT_FOUND', ...DISCONNECT_REFUSALS],
  'POST /v1/meters/{meterId}/limit': ['E_METER_NOT_FOUND', ...LIMIT_REFUSALS],
  'POST /v1/orders/bulk': ['E_METER_NOT_FOUND', 'E_BULK_TOO_LARGE', ...new Set([...DISCONNECT_REFUSALS, ...LIMIT_REFUSALS])],
  'POST /v1/orders/{orderId}/cancel': ['E_ORDER_NOT_FOUND', 'E_ORDER_FINISHED', 'E_ORDER_ON_WIRE'],
  'POST /v1/orders/{orderId}/approve': ['E_ORDER_NOT_FOUND', 'E_NOT_AWAITING_APPROVAL', 'E_SELF_APPROVAL'],
  'GET /v1/orders/{orderId}': ['E_ORDER_NOT_FOUND'],
  'GET /v1/meters/{meterId}': ['E_METER_NOT_FOUND'],
  'PUT /v1/meters/{meterId}': ['E_PROFILE_UNKNOWN'],
  'PUT /v1/meters/{meterId}/flags': ['E_METER_NOT_FOUND', 'E_NO_PREPAYMENT_AGREEMENT'],
  'POST /v1/meters/{meterId}/notices': ['E_METER_NOT_FOUND', 'E_NOTICE_NO_EVIDENCE'],
  'POST /v1/meters/facts/import': ['E_IMPORT_INVALID'],
  'POST /v1/meter-keys/import': ['E_KEY_FILE_INVALID', 'E_TRANSPORT_KEY_MISSING', 'E_KEY_SET_CONFLICT', 'E_METER_NOT_FOUND', ...KEY_MATERIAL],
  'POST /v1/meters/{meterId}/keys/renew': [
    'E_METER_NOT_FOUND',
    'E_KEY_RENEWAL_UNSUPPORTED',
    'E_KEY_RENEWAL_UNSETTLED',
    'E_KEY_RENEWAL_IN_PROGRESS',
    'E_KEY_RENEWAL_FAILED',
    'E_INVOCATION_COUNTER_EXHAUSTED',
    'E_KEY_SET_CONFLICT',
    ...KEY_MATERIAL,
  ],
  'GET /v1/meters/{meterId}/timeline': ['E_METER_NOT_FOUND'],
  'GET /v1/meters/{meterId}/supply': ['E_METER_NOT_FOUND'],
  'POST /v1/meters/{meterId}/swaps': ['E_METER_NOT_FOUND'],
  'GET /v1/meters/{meterId}/swaps': ['E_METER_NOT_FOUND'],
  'POST /v1/plans': ['E_METER_NOT_FOUND', 'E_CREDIT_CUTOFF_RESERVED', 'E_NO_LOAD_LIMITER'],
  'GET /v1/plans/{planId}': ['E_PLAN_NOT_FOUND'],
  'POST /v1/plans/{planId}/approve': ['E_PLAN_NOT_FOUND', 'E_PLAN_STATE', 'E_SELF_APPROVAL'],
  'POST /v1/plans/{planId}/reject': ['E_PLAN_NOT_FOUND', 'E_PLAN_STATE'],
  'POST /v1/plans/{planId}/cancel': ['E_PLAN_NOT_FOUND', 'E_PLAN_STATE'],
  'POST /v1/keys': ['E_CLIENT_NOT_FOUND'],
  'POST /v1/keys/{keyId}/rotate': ['E_KEY_NOT_FOUND'],
  'DELETE /v1/keys/{keyId}': ['E_KEY_NOT_FOUND'],
  'DELETE /v1/policy/weather/{periodId}': ['E_NOT_FOUND'],
  'GET /v1/work-orders/{workOrderId}': ['E_WORK_ORDER_NOT_FOUND'],
  'POST /v1/work-orders/{workOrderId}/assign': ['E_WORK_ORDER_NOT_FOUND', 'E_WORK_ORDER_STATE'],
  'POST /v1/work-orders/{workOrderId}/complete': ['E_WORK_ORDER_NOT_FOUND', 'E_WORK_ORDER_STATE', 'E_ORDER_ON_WIRE'],
  'POST /v1/stats/breakers/{breakerId}/reset': ['E_BREAKER_NOT_FOUND'],
  'GET /metrics': ['E_NOT_FOUND'],
  'GET /v1/relay-audit': ['E_NOT_FOUND'],
  'POST /v1/relay-audit/run': ['E_NOT_FOUND'],
  'POST /v1/alerts/{alertId}/acknowledge': ['E_ALERT_NOT_FOUND', 'E_ALERT_CLEARED'],
  'POST /v1/alerts/{alertId}/clear': ['E_ALERT_NOT_FOUND', 'E_ALERT_CLEARED'],
  'GET /v1/meters/{meterId}/credit': ['E_NOT_FOUND', 'E_METER_NOT_FOUND'],
  'POST /v1/meters/{meterId}/emergency-credit': ['E_METER_NOT_FOUND', 'E_NO_PREPAYMENT_AGREEMENT'],
  'POST /v1/payments': ['E_AMOUNT_INVALID', 'E_AMOUNT_OVER_LIMIT', 'E_CREDIT_BALANCE_LIMIT', 'E_METER_NOT_FOUND'],
  'POST /v1/payments/bulk': ['E_AMOUNT_INVALID', 'E_AMOUNT_OVER_LIMIT', 'E_CREDIT_BALANCE_LIMIT', 'E_METER_NOT_FOUND', 'E_BULK_TOO_LARGE'],
};
