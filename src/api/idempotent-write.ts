import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { MeterlineError } from '../errors.js';
import type { GatewayStore } from '../store/store.js';

/**
 * Every write takes an Idempotency-Key (DESIGN.md §5). For writes other than switch orders (whose keys the store
 * checks inside the admitting transaction), the first answer is kept and replayed for the same key and body; the
 * same key with another body is E_IDEMPOTENCY_CONFLICT.
 */
export async function idempotentWrite(
  store: GatewayStore,
  request: FastifyRequest,
  reply: FastifyReply,
  now: number,
  write: () => Promise<{ status: number; body: unknown }>,
): Promise<FastifyReply> {
  const key = request.headers['idempotency-key'];
  if (typeof key !== 'string' || key.length === 0 || key.length > 200) {
    throw new MeterlineError('E_IDEMPOTENCY_KEY_MISSING', 'send an Idempotency-Key header (any unique string up to 200 characters) so a retried request is not applied twice');
  }
  const principal = request.principal!.name;
  const hash = createHash('sha256').update(`${request.method} ${request.url}\n${JSON.stringify(request.body ?? null)}`).digest('hex');
  const prior = await store.getIdempotentResponse(principal, key);
  if (prior) {
    if (prior.requestHash !== hash) throw new MeterlineError('E_IDEMPOTENCY_CONFLICT', `Idempotency-Key "${key}" was already used with a different request; use a new key for a new request`);
    reply.header('idempotent-replayed', 'true');
    return reply.code(prior.status).send(prior.body);
  }
  const result = await write();
  await store.saveIdempotentResponse(principal, key, hash, result.status, result.body, now);
  return reply.code(result.status).send(result.body);
}
