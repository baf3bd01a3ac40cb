import type { ErrorCode } from '../errors.js';

/**
 * The errors each operation can answer with, beyond the ones every operation of its kind can give (those the
 * document builder adds by itself: 400 E_VALIDATION where there are parameters or a body, 401/403 where a key is
 * needed, 409/400 for the Idempotency-Key of a write, 413 for a body, 429, 500, 503 E_SHUTTING_DOWN on a write).
 * Keyed `"<METHOD> <path>"` as in `OPERATION_IDS`. The document lists each code under its status (from the
 * catalogue in src/errors.ts), and the strict response validation in the tests fails on any code not listed.
 */
export const OPERATION_ERRORS: Readonly<Record<string, readonly ErrorCode[]>> = {};
