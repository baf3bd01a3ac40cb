import { num, type Row } from './store-rows.js';
import { sql, type Script } from './store-scripts.js';
import type { IdempotentAnswer } from './store.js';

/**
 * Idempotency-Keys of writes other than switch orders and payments (api/idempotent-write.ts), written once for both
 * stores. The key is reserved by an insert before the write acts: of all requests carrying it, exactly one insert
 * succeeds, whatever runs at the same time on this instance or another; the row then holds the answer to replay.
 */

const answerFromRow = (r: Row): IdempotentAnswer =>
  r.state === 'pending'
    ? { state: 'pending', requestHash: r.request_hash as string, since: num(r.created_at) }
    : { state: 'done', requestHash: r.request_hash as string, status: num(r.status), body: JSON.parse(r.body as string) as unknown };

/** GatewayStore.getIdempotentResponse. */
export function* getIdempotentAnswer(principal: string, key: string): Script<IdempotentAnswer | undefined> {
  const [row] = yield sql('SELECT * FROM idempotent_responses WHERE principal = ? AND key = ?', principal, key);
  return row ? answerFromRow(row) : undefined;
}

/** GatewayStore.reserveIdempotentWrite. */
export function* reserveIdempotentWrite(principal: string, key: string, requestHash: string, now: number): Script<{ reserved: true } | { reserved: false; prior: IdempotentAnswer }> {
  for (;;) {
    const inserted = yield sql(
      `INSERT INTO idempotent_responses (principal, key, request_hash, status, body, created_at, state) VALUES (?, ?, ?, 0, 'null', ?, 'pending')
       ON CONFLICT (principal, key) DO NOTHING RETURNING state`,
      principal,
      key,
      requestHash,
      now,
    );
    if (inserted.length === 1) return { reserved: true };
    const prior = yield* getIdempotentAnswer(principal, key);
    // Gone between the two statements (its write failed and gave it back; PostgreSQL only): try again.
    if (prior) return { reserved: false, prior };
  }
}

/** GatewayStore.saveIdempotentResponse: the reservation becomes the answer. */
export function* saveIdempotentAnswer(principal: string, key: string, requestHash: string, status: number, body: unknown): Script<void> {
  yield sql(
    `UPDATE idempotent_responses SET status = ?, body = ?, state = 'done' WHERE principal = ? AND key = ? AND request_hash = ? AND state = 'pending'`,
    status,
    JSON.stringify(body),
    principal,
    key,
    requestHash,
  );
}

/** GatewayStore.releaseIdempotentWrite. */
export function* releaseIdempotentWrite(principal: string, key: string, requestHash: string): Script<void> {
  yield sql(`DELETE FROM idempotent_responses WHERE principal = ? AND key = ? AND request_hash = ? AND state = 'pending'`, principal, key, requestHash);
}
