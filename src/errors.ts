/**
 * The catalogue of errors a user can see. Every code is stable; the message says what happened and what to do.
 * HTTP routes, the CLI and the start-up checks all raise these, never ad-hoc strings.
 */
export const ERRORS = {
  E_VALIDATION: { status: 400, title: 'the request is not valid' },
  E_IDEMPOTENCY_KEY_MISSING: { status: 400, title: 'an Idempotency-Key header is required on this write' },
  E_BULK_TOO_LARGE: { status: 413, title: 'too many orders in one bulk request' },
  E_UNAUTHORIZED: { status: 401, title: 'missing or unknown API key' },
  E_FORBIDDEN: { status: 403, title: 'this API key’s role may not do this' },
  E_NOT_FOUND: { status: 404, title: 'no such route' },
  E_METER_NOT_FOUND: { status: 404, title: 'no such meter' },
  E_ORDER_NOT_FOUND: { status: 404, title: 'no such order' },
  E_PROFILE_UNKNOWN: { status: 422, title: 'no such firmware profile' },
  E_IDEMPOTENCY_CONFLICT: { status: 409, title: 'this Idempotency-Key was already used with a different request' },
  E_RECONNECT_PENDING: { status: 409, title: 'a reconnect is pending for this meter; reconnects always win (DOMAIN.md rule 12)' },
  E_INTERNAL: { status: 500, title: 'internal error' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

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
