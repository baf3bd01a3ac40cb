/**
 * The catalogue of errors a user can see. Every code is stable; the message says what happened and what to do.
 * HTTP routes, the CLI and the start-up checks all raise these, never ad-hoc strings.
 */
export const ERRORS = {
  E_VALIDATION: { status: 400, title: 'the request is not valid' },
  E_IDEMPOTENCY_KEY_MISSING: { status: 400, title: 'an Idempotency-Key header is required on this write' },
  E_AMOUNT_INVALID: { status: 400, title: 'the amount is not a positive amount in whole minor units (or a decimal with at most two places)' },
  E_AMOUNT_OVER_LIMIT: { status: 400, title: 'the amount is over the maximum for one payment (payments.maxAmountMinor)' },
  E_CREDIT_BALANCE_LIMIT: { status: 400, title: 'the top-up would take the prepayment balance over its maximum (payments.maxCreditBalanceMinor)' },
  E_BULK_TOO_LARGE: { status: 413, title: 'too many orders in one bulk request' },
  E_BODY_TOO_LARGE: { status: 413, title: 'the request body is larger than this route accepts' },
  E_BODY_TOO_DEEP: { status: 400, title: 'the JSON body nests deeper than any request of this API needs' },
  E_UNAUTHORIZED: { status: 401, title: 'missing or unknown API key' },
  E_FORBIDDEN: { status: 403, title: 'this API key’s role may not do this' },
  E_NOT_FOUND: { status: 404, title: 'no such route' },
  E_METER_NOT_FOUND: { status: 404, title: 'no such meter' },
  E_ORDER_NOT_FOUND: { status: 404, title: 'no such order' },
  E_PROFILE_UNKNOWN: { status: 422, title: 'no such firmware profile' },
  E_IDEMPOTENCY_CONFLICT: { status: 409, title: 'this Idempotency-Key was already used with a different request' },
  E_IDEMPOTENCY_IN_PROGRESS: { status: 409, title: 'a request with this Idempotency-Key is still being applied' },
  E_RECONNECT_PENDING: { status: 409, title: 'a reconnect is pending for this meter; reconnects always win (DOMAIN.md rule 12)' },
  E_NOTICE_MISSING: { status: 409, title: 'no delivered notice (DOMAIN.md rule 1)' },
  E_NOTICE_STALE: { status: 409, title: 'the notice is too old (rule 1)' },
  E_NOTICE_TOO_RECENT: { status: 409, title: 'the notice is too recent; held (rule 1)' },
  E_SECOND_NOTICE_PENDING: { status: 409, title: 'waiting 30 minutes after the pre-disconnect notification was delivered (rule 2)' },
  E_SECOND_NOTICE_UNDELIVERED: { status: 409, title: 'the pre-disconnect notification has not been delivered to the customer; held (rule 2)' },
  E_NOTICE_NO_EVIDENCE: { status: 400, title: 'a notice recorded as delivered needs its reference, or it is not evidence (rule 1)' },
  E_NO_BILLING_HOOK: { status: 409, title: 'no billing re-check hook is configured (rule 3)' },
  E_BILLING_UNREACHABLE: { status: 409, title: 'the billing re-check hook did not answer; held (rule 3)' },
  E_PAID: { status: 409, title: 'the account is paid; the disconnect is cancelled (rule 3)' },
  E_DAILY_CAP: { status: 409, title: 'the daily disconnect cap is used; held (rule 4)' },
  E_OUTSIDE_WINDOW: { status: 409, title: 'outside the permitted disconnect windows; held (rule 5)' },
  E_PROTECTED_CUSTOMER: { status: 409, title: 'protected customer (rule 6)' },
  E_PLAN_REQUIRED: { status: 409, title: 'disconnects for non-payment need an approved plan (rule 7)' },
  E_PLAN_NOT_APPROVED: { status: 409, title: 'the plan is not approved (rule 7)' },
  E_PLAN_WINDOW_CLOSED: { status: 409, title: 'the plan window has closed (rule 7)' },
  E_PLAN_WINDOW_NOT_OPEN: { status: 409, title: 'the plan window is not open yet; held (rule 7)' },
  E_NO_PREPAYMENT_AGREEMENT: { status: 409, title: 'no prepayment agreement on record (rule 8)' },
  E_PROTECTED_MODE: { status: 409, title: 'the meter is in protected mode (rule 9)' },
  E_LIMIT_FIRST: { status: 409, title: 'limit the load before cutting (rule 10)' },
  E_NO_LOAD_LIMITER: { status: 409, title: 'the meter’s firmware profile has no load limiter, so a limit could never be verified' },
  E_SELF_APPROVAL: { status: 403, title: 'a plan or a disconnect cannot be approved by the one who asked for it (rule 7)' },
  E_REASON_NOT_ALLOWED: { status: 403, title: 'this key’s role may not disconnect for this reason (rule 7)' },
  E_REFERENCE_REQUIRED: { status: 400, title: 'this disconnect reason needs a reference to its evidence (rule 7)' },
  E_APPROVAL_REQUIRED: { status: 409, title: 'held until a supervisor approves this disconnect (rule 7)' },
  E_NOT_AWAITING_APPROVAL: { status: 409, title: 'this order is not a disconnect waiting for approval' },
  E_CREDIT_CUTOFF_RESERVED: { status: 403, title: 'a credit cut-off comes only from the gateway’s own credit control (rule 8)' },
  E_CREDIT_AVAILABLE: { status: 409, title: 'the meter’s ledger shows credit; the credit cut-off is cancelled (rule 8)' },
  E_PLAN_NOT_FOUND: { status: 404, title: 'no such plan' },
  E_PLAN_STATE: { status: 409, title: 'the plan is not in a state that allows this' },
  E_KEY_NOT_FOUND: { status: 404, title: 'no such API key' },
  E_CLIENT_NOT_FOUND: { status: 404, title: 'no such client (the billing system or person API keys belong to)' },
  E_IMPORT_INVALID: { status: 422, title: 'the import has invalid rows; nothing was imported' },
  E_AUDIT_TAMPERED: { status: 500, title: 'the audit chain does not verify' },
  E_AUDIT_KEY_MISSING: { status: 500, title: 'no audit key: the audit chain is keyed with a key kept outside the database (METERLINE_AUDIT_KEY or audit.keyFile)' },
  E_AUDIT_KEY_INVALID: { status: 500, title: 'the audit key given is not a key (64 to 128 hex digits)' },
  E_AUDIT_KEY_MISMATCH: { status: 500, title: 'the audit key given is not the key the audit log was written with' },
  E_AUDIT_ANCHORS_INVALID: { status: 500, title: 'the audit anchor file cannot be read or has a line that is not an anchor' },
  E_NO_MASTER_KEY: { status: 409, title: 'no key master is configured (METERLINE_KEY_MASTER or METERLINE_KEY_MASTER_FILE): meter keys cannot be imported or used' },
  E_KEY_MASTER_INVALID: { status: 500, title: 'the key master given is not a 16- or 32-byte key in hex or base64, or its file is readable by others' },
  E_KEY_MASTER_MISMATCH: { status: 500, title: 'a meter key set was sealed under another key master than the one configured' },
  E_KEY_ENVELOPE_INVALID: { status: 500, title: 'a meter key set in the store does not open under the key master: the row was altered or moved' },
  E_KEY_FILE_INVALID: { status: 400, title: 'the key file has an invalid row or field; nothing was imported' },
  E_TRANSPORT_KEY_MISSING: { status: 400, title: 'the transport key named for unwrapping the key file is not configured on the gateway' },
  E_KEY_SET_CONFLICT: { status: 409, title: 'the meter already has other keys; nothing was imported' },
  E_KEY_SET_NOT_FOUND: { status: 404, title: 'no such key set for this meter' },
  E_INVOCATION_COUNTER_EXHAUSTED: { status: 409, title: 'the invocation counters of this key set are used up (2^32): renew the meter’s keys' },
  E_KEY_RENEWAL_UNSUPPORTED: { status: 409, title: 'this meter’s keys cannot be renewed by the gateway (not an HLS-GMAC DLMS meter, no DLMS link, or its key set has no master key)' },
  E_KEY_RENEWAL_UNSETTLED: { status: 409, title: 'the meter’s last key renewal is not settled yet (neither its current nor its pending keys associate); nothing was changed' },
  E_KEY_RENEWAL_IN_PROGRESS: { status: 409, title: 'a renewal of this meter’s keys is already running on this gateway; try again when it has answered' },
  E_KEY_RENEWAL_FAILED: { status: 502, title: 'the meter did not take the new keys; it keeps its current keys' },
  E_CIRCUIT_OPEN: { status: 409, title: 'disconnect success collapsed for this population; held until an operator resets the breaker (rule 16)' },
  E_WORK_ORDER_NOT_FOUND: { status: 404, title: 'no such work order' },
  E_WORK_ORDER_STATE: { status: 409, title: 'the work order is not in a state that allows this' },
  E_ORDER_ON_WIRE: { status: 409, title: 'an attempt for this order is on the wire; try again in a few seconds' },
  E_LEASE_LOST: { status: 409, title: "another instance took the order over after this one's lease ran out" },
  E_ORDER_FINISHED: { status: 409, title: 'the order has already finished' },
  E_BREAKER_NOT_FOUND: { status: 404, title: 'no such circuit breaker' },
  E_ALERT_NOT_FOUND: { status: 404, title: 'no such alert' },
  E_ALERT_CLEARED: { status: 409, title: 'the alert was cleared: it is over and cannot be acknowledged or cleared again' },
  E_FRIENDLY_HOURS: { status: 409, title: 'a credit cut-off waits for friendly-credit hours to end' },
  E_RATE_LIMITED: { status: 429, title: 'too many requests for this API key; slow down and retry after the time given' },
  E_STORE_UNAVAILABLE: { status: 503, title: 'the store cannot take writes right now (disk full, read-only, unreachable or its thread restarting): retry after the time given; the write changed nothing unless details.committed is unknown (its thread ended before answering), in which case check its effect first', retryAfterSec: 5 },
  E_SHUTTING_DOWN: { status: 503, title: 'this gateway is stopping and admits no new work; send the request to another instance or retry once it is back', retryAfterSec: 10 },
  E_STORE_OPEN: { status: 503, title: 'the store could not be opened' },
  E_STORE_IN_USE: { status: 503, title: 'another gateway owns this SQLite file; one SQLite file serves one gateway (several instances need PostgreSQL)' },
  E_PORT_IN_USE: { status: 503, title: 'the API port could not be bound' },
  E_INTERNAL: { status: 500, title: 'internal error' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

/** Seconds a client should wait before retrying an error that passes (the API sends them as `Retry-After`). */
export function retryAfterSec(code: ErrorCode): number | undefined {
  const entry = ERRORS[code];
  return 'retryAfterSec' in entry ? entry.retryAfterSec : undefined;
}

export class MeterlineError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: unknown;
  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'MeterlineError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = details;
  }
}
