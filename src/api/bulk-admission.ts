import type { FastifyRouteSchemaDef, FastifyValidationResult } from 'fastify/types/schema.js';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { z } from 'zod';
import { DISCONNECT_REASONS, LIMIT_W_MAX, RECONNECT_REASONS } from '../domain/switch-order.js';
import { BulkBody, DisconnectBody, LIMIT_ANY_REASON, LimitBody, METER_ID_PATTERN, ReconnectBody } from './schemas.js';

/**
 * Bulk admission's validation and answer without zod's per-item cost (issue 19): zod parsed each of a request's
 * 10,000 lines into a new object (~5 KB of allocations per line) and parsed the 202 answer's 10,000 order views once
 * more before JSON.stringify. Here a hand-written check takes the common case, a body zod accepts, and builds exactly
 * the object zod would (the same keys in the same order, defaults filled in); anything it does not take for sure (an
 * unknown key, a value out of range, a wrong type) goes to zod as before, so every refusal is zod's own, byte for
 * byte. The check only ever says "zod accepts this and gives that" or "ask zod"; tests/api/bulk-admission.test.ts
 * holds it to zod on valid and broken lines alike.
 */

type BulkBodyOut = z.output<typeof BulkBody>;
type BulkItemOut = BulkBodyOut['orders'][number];

/** The pattern of a string format, as zod checks it (isoTime is `z.iso.datetime({ offset: true })`). */
function formatPattern(schema: z.ZodType): RegExp | undefined {
  const pattern = (schema as unknown as { _zod: { def: { pattern?: unknown } } })._zod.def.pattern;
  return pattern instanceof RegExp ? pattern : undefined;
}
/** notBefore and paymentReceivedAt are the same isoTime in all three bodies; without its pattern every body goes to zod. */
const ISO_TIME = formatPattern(ReconnectBody.shape.notBefore.unwrap());
const FAST = ISO_TIME !== undefined && formatPattern(DisconnectBody.shape.notBefore.unwrap()) === ISO_TIME && formatPattern(LimitBody.shape.notBefore.unwrap()) === ISO_TIME;

const RECONNECT_REASON = new Set<unknown>(RECONNECT_REASONS);
const DISCONNECT_REASON = new Set<unknown>(DISCONNECT_REASONS);
const LIMIT_REASON = new Set<unknown>(LIMIT_ANY_REASON);

const NOTE_MAX = 500;
const REFERENCE_MAX = 200;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
// zod measures a string's length in code points; one within its maximum in UTF-16 units is within it in code points
// too, and a longer one (emoji, say) is left to zod.
const isIsoTime = (v: unknown): boolean => typeof v === 'string' && ISO_TIME!.test(v);
const optionalIso = (v: unknown): boolean => v === undefined || isIsoTime(v);
const optionalNote = (v: unknown): boolean => v === undefined || (typeof v === 'string' && v.length <= NOTE_MAX);
const optionalReference = (v: unknown): boolean => v === undefined || (typeof v === 'string' && v.length >= 1 && v.length <= REFERENCE_MAX);

/** Only the keys of the line's own body (with action and meterId), as `.strict()` demands. */
function onlyKeys(o: Record<string, unknown>, allowed: (key: string) => boolean): boolean {
  for (const key in o) if (!allowed(key)) return false;
  return true;
}
const reconnectKey = (k: string): boolean =>
  k === 'action' || k === 'meterId' || k === 'reason' || k === 'paymentReceivedAt' || k === 'urgent' || k === 'notBefore' || k === 'note';
const disconnectKey = (k: string): boolean => k === 'action' || k === 'meterId' || k === 'reason' || k === 'reference' || k === 'notBefore' || k === 'note';
const limitKey = (k: string): boolean => k === 'action' || k === 'meterId' || k === 'limitW' || k === 'reason' || k === 'reference' || k === 'notBefore' || k === 'note';

/** The keys every action's line ends with, in the schema's order: notBefore and note when given, then action, meterId. */
function withCommonTail(out: Record<string, unknown>, notBefore: unknown, note: unknown, action: BulkItemOut['action'], meterId: string): BulkItemOut {
  if (notBefore !== undefined) out.notBefore = notBefore;
  if (note !== undefined) out.note = note;
  out.action = action;
  out.meterId = meterId;
  return out as BulkItemOut;
}

/** One line as zod would give it back (keys in the schema's order: the body's own, then action, meterId), or undefined: ask zod. */
function fastItem(o: unknown): BulkItemOut | undefined {
  if (!isRecord(o)) return undefined;
  const { meterId, notBefore, note } = o;
  if (typeof meterId !== 'string' || !METER_ID_PATTERN.test(meterId) || !optionalIso(notBefore) || !optionalNote(note)) return undefined;
  switch (o.action) {
    case 'reconnect': {
      const { reason, paymentReceivedAt, urgent } = o;
      if (!onlyKeys(o, reconnectKey) || (reason !== undefined && !RECONNECT_REASON.has(reason)) || !optionalIso(paymentReceivedAt)) return undefined;
      if (urgent !== undefined && typeof urgent !== 'boolean') return undefined;
      const out: Record<string, unknown> = { reason: reason ?? 'payment' };
      if (paymentReceivedAt !== undefined) out.paymentReceivedAt = paymentReceivedAt;
      out.urgent = urgent ?? false;
      return withCommonTail(out, notBefore, note, 'reconnect', meterId);
    }
    case 'disconnect': {
      const { reason, reference } = o;
      if (!onlyKeys(o, disconnectKey) || !DISCONNECT_REASON.has(reason) || !optionalReference(reference)) return undefined;
      const out: Record<string, unknown> = { reason };
      if (reference !== undefined) out.reference = reference;
      return withCommonTail(out, notBefore, note, 'disconnect', meterId);
    }
    case 'limit': {
      const { limitW, reason, reference } = o;
      if (!onlyKeys(o, limitKey) || !LIMIT_REASON.has(reason) || !optionalReference(reference)) return undefined;
      if (limitW !== null && !(typeof limitW === 'number' && Number.isSafeInteger(limitW) && limitW >= 1 && limitW <= LIMIT_W_MAX)) return undefined;
      const out: Record<string, unknown> = { limitW, reason };
      if (reference !== undefined) out.reference = reference;
      return withCommonTail(out, notBefore, note, 'limit', meterId);
    }
    default:
      return undefined;
  }
}

/** The bulk body as zod would give it back, or undefined when only zod can tell (then zod's answer, or its refusal, stands). */
export function fastBulkBody(body: unknown): BulkBodyOut | undefined {
  if (!FAST || !isRecord(body)) return undefined;
  for (const key in body) if (key !== 'orders') return undefined;
  const lines = body.orders;
  if (!Array.isArray(lines) || lines.length === 0) return undefined;
  const orders = new Array<BulkItemOut>(lines.length);
  for (let i = 0; i < lines.length; i++) {
    const item = fastItem(lines[i]);
    if (item === undefined) return undefined;
    orders[i] = item;
  }
  return { orders };
}

/** The bulk route's validator: the fast check for its body, zod (the app's validator) for anything else and for every refusal. */
export const bulkValidatorCompiler = <S>(route: FastifyRouteSchemaDef<S>): FastifyValidationResult => {
  const byZod = validatorCompiler(route as unknown as FastifyRouteSchemaDef<z.ZodType>);
  if (route.httpPart !== 'body') return byZod;
  return (data: unknown) => {
    const value = fastBulkBody(data);
    return value === undefined ? byZod(data) : { value };
  };
};

/**
 * The bulk route's serializer: its 202 answer is built by the route itself from order views (src/api/views.ts), in the
 * schema's shape and key order, so it goes straight to JSON.stringify; zod's serializer parsed its 10,000 order views
 * into copies first. Every other status keeps zod's. tests/api/bulk-admission.test.ts holds the 202 answer to zod's.
 */
export const bulkSerializerCompiler = <S>(route: FastifyRouteSchemaDef<S>): ((data: unknown) => string) => {
  if (String(route.httpStatus) === '202') return (data: unknown) => JSON.stringify(data);
  return serializerCompiler(route as unknown as FastifyRouteSchemaDef<z.ZodType>);
};
