import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { MeterlineError } from '../errors.js';
import type { GatewayStore } from '../store/store.js';

/** What a write answers. */
export interface WriteAnswer {
  status: number;
  body: unknown;
  /**
   * What a replay (the same Idempotency-Key) answers, when it must differ from the first answer: a new secret is
   * shown once and never stored (DESIGN.md §8), so a key's creation or rotation replays the key without it.
   */
  replayBody?: unknown;
}

/** How long a request waits for another request with its Idempotency-Key to finish before 409 E_IDEMPOTENCY_IN_PROGRESS. */
export const IDEMPOTENCY_WAIT_MS = 10_000;

/** The writes acting in this process, per store and (client, key): a request with the same key waits for the first. */
const acting = new WeakMap<GatewayStore, Map<string, Promise<unknown>>>();

/**
 * Every write takes an Idempotency-Key (DESIGN.md §5, §8). For writes other than switch orders and payments (whose
 * keys the store checks inside the admitting transaction), the key is reserved in the store before the write acts,
 * by one atomic insert: of all requests with the same client and key, on this instance or another, exactly one acts.
 * The others wait for its answer and get it (`idempotent-replayed: true`); one that waits longer than
 * IDEMPOTENCY_WAIT_MS gets 409 E_IDEMPOTENCY_IN_PROGRESS. A write that fails gives the key back, so a retry acts, unless
 * its outcome is unknown (it may have committed): then the key stays taken, as after a crash of the process.
 * The same key with another body is E_IDEMPOTENCY_CONFLICT. Keys are scoped to the caller's client id.
 */
export async function idempotentWrite(store: GatewayStore, request: FastifyRequest, reply: FastifyReply, now: number, write: () => Promise<WriteAnswer>): Promise<FastifyReply> {
  const key = request.headers['idempotency-key'];
  if (typeof key !== 'string' || key.length === 0 || key.length > 200) {
    throw new MeterlineError('E_IDEMPOTENCY_KEY_MISSING', 'send an Idempotency-Key header (any unique string up to 200 characters) so a retried request is not applied twice');
  }
  const principal = request.principal!.clientId;
  const hash = createHash('sha256').update(`${request.method} ${request.url}\n${JSON.stringify(request.body ?? null)}`).digest('hex');
  const answer = await answerOnce(store, principal, key, hash, now, write, (err) => request.log.error({ err }, 'could not give an Idempotency-Key back after a failed write'));
  if (answer.replayed) reply.header('idempotent-replayed', 'true');
  return reply.code(answer.status).send(answer.body);
}

async function answerOnce(
  store: GatewayStore,
  principal: string,
  key: string,
  hash: string,
  now: number,
  write: () => Promise<WriteAnswer>,
  logReleaseError: (err: unknown) => void,
): Promise<{ status: number; body: unknown; replayed: boolean }> {
  const local = acting.get(store) ?? acting.set(store, new Map()).get(store)!;
  const slot = `${principal}\u0000${key}`;
  const giveUpAt = Date.now() + IDEMPOTENCY_WAIT_MS;
  for (let round = 0; ; round++) {
    const reservation = await store.reserveIdempotentWrite(principal, key, hash, now);
    if (reservation.reserved) {
      const acted = act(store, principal, key, hash, write, logReleaseError);
      local.set(slot, acted);
      try {
        return { ...(await acted), replayed: false };
      } finally {
        if (local.get(slot) === acted) local.delete(slot);
      }
    }
    const prior = reservation.prior;
    if (prior.requestHash !== hash) throw new MeterlineError('E_IDEMPOTENCY_CONFLICT', `Idempotency-Key "${key}" was already used with a different request; use a new key for a new request`);
    if (prior.state === 'done') return { status: prior.status, body: prior.body, replayed: true };
    // Another request with this key is acting: here (wait for it) or on another instance (look again shortly).
    if (Date.now() >= giveUpAt) {
      throw new MeterlineError(
        'E_IDEMPOTENCY_IN_PROGRESS',
        `a request with Idempotency-Key "${key}" has been being applied since ${new Date(prior.since).toISOString()}; retry in a few seconds for its answer (if it stays so after a crash, check whether it took effect, then use a new key)`,
      );
    }
    const first = local.get(slot);
    if (first) await Promise.race([first.catch(() => undefined), sleep(giveUpAt - Date.now())]);
    else await sleep(Math.min(10 * 2 ** round, 250, Math.max(0, giveUpAt - Date.now())));
  }
}

/** Run the write; keep its answer (never a secret: `replayBody`), or give the key back if it failed. */
async function act(store: GatewayStore, principal: string, key: string, hash: string, write: () => Promise<WriteAnswer>, logReleaseError: (err: unknown) => void): Promise<{ status: number; body: unknown }> {
  let answer: WriteAnswer;
  try {
    answer = await write();
  } catch (error) {
    // A write whose outcome is unknown (the store's thread died before answering: it may have committed) keeps the key:
    // a retry must not apply it a second time. It then answers E_IDEMPOTENCY_IN_PROGRESS, which says what to do.
    if (!outcomeUnknown(error)) await store.releaseIdempotentWrite(principal, key, hash).catch(logReleaseError);
    throw error;
  }
  await store.saveIdempotentResponse(principal, key, hash, answer.status, 'replayBody' in answer ? answer.replayBody : answer.body);
  return { status: answer.status, body: answer.body };
}

/** E_STORE_UNAVAILABLE for a write that may or may not have committed (sqlite-worker-store.ts, a thread that died). */
function outcomeUnknown(error: unknown): boolean {
  return error instanceof MeterlineError && error.code === 'E_STORE_UNAVAILABLE' && (error.details as { committed?: unknown } | undefined)?.committed === 'unknown';
}

/** A pause that does not keep the process alive (a gateway stopping does not wait for it). */
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());
