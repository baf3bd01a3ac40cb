import { ERRORS, type ErrorCode } from '../errors.js';
import { PERMISSIONS, type Permission } from './auth.js';
import { addWebhooks } from './openapi-webhooks.js';
import { OPERATION_ERRORS } from './operation-errors.js';
import { OPERATION_IDS } from './operation-ids.js';

/**
 * The OpenAPI document as served (/openapi.json): what @fastify/swagger and the zod provider build from the route
 * schemas, finished here with what the routes do not say themselves. Every operation gets its stable operationId
 * (operation-ids.ts), `security: []` when it is open, the Idempotency-Key required on every write, every error it
 * can answer with (its status, and the codes under it: the ones every operation of its kind can give, and the ones
 * in operation-errors.ts), and every content type it sends. The outbound calls to billing and field systems are
 * described as 3.1 `webhooks` (openapi-webhooks.ts).
 */

// The document is plain JSON built by @fastify/swagger; its nodes are walked and edited as such.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

/** What the document builder learns from the routes as they are registered. */
export interface RouteFacts {
  /** `"<METHOD> <path>"` → the permission the route's key check asks for (its 403 and roles). */
  permissions: ReadonlyMap<string, Permission>;
  /** The tables to apply; OPERATION_IDS and OPERATION_ERRORS unless a test gives its own. */
  operationIds?: Readonly<Record<string, string>>;
  operationErrors?: Readonly<Record<string, readonly ErrorCode[]>>;
}

export const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;

/** The key of an operation in OPERATION_IDS and OPERATION_ERRORS: `"POST /v1/meters/{meterId}/reconnect"`. */
export const operationKey = (method: string, path: string): string => `${method.toUpperCase()} ${path}`;

/** A fastify route URL as the document writes it: `/v1/meters/:meterId` → `/v1/meters/{meterId}`. */
export const documentPath = (url: string): string => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

/** What every response body is when the request failed. */
const ERROR_SCHEMA = {
  type: 'object',
  description: 'Every error: a stable code from the catalogue, a message that says what happened and what to do, and the request id the gateway logged it under.',
  required: ['code', 'message', 'requestId'],
  properties: {
    code: { type: 'string', description: 'A stable code (E_…); each response lists the codes it can carry' },
    message: { type: 'string', description: 'What happened and what to do, for a person' },
    details: { description: 'More about the error when there is more (E_VALIDATION: `issues`, each with `where` and `problem`)' },
    requestId: { type: 'string', description: 'The request id (also the `x-request-id` response header); quote it when asking about a failure' },
  },
};

const RETRY_AFTER = { description: 'Seconds to wait before retrying', schema: { type: 'integer', minimum: 0 } };

/**
 * Bodies the route schemas do not declare, by operation: what the route sends with `reply.type(...)` (or writes
 * itself, the event stream), and JSON a route sends without a response schema.
 */
const OTHER_CONTENT: Readonly<Record<string, Record<string, Json>>> = {
  'GET /v1/orders/export': {
    'text/csv': { schema: { type: 'string', description: 'A header row, then one row per order the filters match; streamed (RFC 4180 quoting)' } },
  },
  'GET /v1/audit/export': {
    'application/x-ndjson': { schema: { type: 'string', description: 'format=ndjson (the default): one audit entry per line, as JSON, with its chain hash' } },
    'text/csv': { schema: { type: 'string', description: 'format=csv: the header row `seq,at,actor,action,target,details,hash`, then one row per entry' } },
  },
  'GET /v1/reconciliation': {
    'text/csv': { schema: { type: 'string', description: 'format=csv: the same report as rows' } },
  },
  'GET /v1/events': {
    'text/event-stream': {
      schema: {
        type: 'string',
        description: 'Server-sent events: `event: orders` with a JSON array of order views, `event: stats` with queue statistics every 2 s, and comment lines as heartbeats',
      },
    },
  },
  'GET /metrics': {
    'text/plain; version=0.0.4': { schema: { type: 'string', description: 'The Prometheus text exposition format, version 0.0.4' } },
  },
};

/** Finish the document @fastify/swagger built (a copy is returned; the input is left as it is). */
export function finishDocument(built: Json, facts: RouteFacts): Json {
  const doc: Json = structuredClone(built);
  doc.openapi = '3.1.0';
  // package.json: UNLICENSED. A name is all OpenAPI asks; there is no SPDX identifier for "no licence granted".
  doc.info = { ...doc.info, license: { name: 'UNLICENSED: proprietary, no licence is granted' } };
  doc.servers = [{ url: '/', description: 'The gateway serving this document (paths are relative to its address, e.g. https://meterline.example.net/)' }];
  doc.components ??= {};
  doc.components.schemas = { ...doc.components.schemas, Error: ERROR_SCHEMA };
  for (const [path, item] of Object.entries<Json>(doc.paths ?? {})) {
    for (const method of HTTP_METHODS) {
      const op = item[method];
      if (op) finishOperation(method, path, op, facts);
    }
  }
  addWebhooks(doc);
  completeRecords(doc);
  return doc;
}

/**
 * A zod record keyed by an enum (`z.record(z.enum([...]), v)`) has every key, and its JSON Schema says so with
 * `required` and `propertyNames` but no `properties`: name each key as a property, so the required keys are defined.
 */
function completeRecords(node: unknown): void {
  if (Array.isArray(node)) return node.forEach(completeRecords);
  if (node === null || typeof node !== 'object') return;
  const schema = node as Json;
  if (Array.isArray(schema.required) && Array.isArray(schema.propertyNames?.enum) && schema.properties === undefined && typeof schema.additionalProperties === 'object') {
    schema.properties = Object.fromEntries(schema.required.map((key: string) => [key, schema.additionalProperties]));
  }
  Object.values(schema).forEach(completeRecords);
}

function finishOperation(method: (typeof HTTP_METHODS)[number], path: string, op: Json, facts: RouteFacts): void {
  const key = operationKey(method, path);
  const id = (facts.operationIds ?? OPERATION_IDS)[key];
  if (id !== undefined) op.operationId = id;
  const open = !Array.isArray(op.security) || op.security.length === 0;
  if (open) op.security = [];
  const permission = facts.permissions.get(key);
  if (permission) op.description = [op.description, `Roles: ${PERMISSIONS[permission].join(', ')} (permission \`${permission}\`).`].filter(Boolean).join('\n\n');
  const write = method !== 'get';
  const idempotent = write && path.startsWith('/v1/');
  if (idempotent) requireIdempotencyKey(op);
  addContent(key, op);
  nameSuccesses(op);
  setErrors(op, errorsOf({ method, path, op, open, permission, write, idempotent, key }, facts.operationErrors ?? OPERATION_ERRORS));
}

/** The Idempotency-Key header, required: the server answers 400 E_IDEMPOTENCY_KEY_MISSING without it. */
function requireIdempotencyKey(op: Json): void {
  op.parameters ??= [];
  const declared = op.parameters.find((p: Json) => p.in === 'header' && String(p.name).toLowerCase() === 'idempotency-key');
  const description =
    'A key unique to this request (a UUID, your payment reference), up to 200 characters, scoped to your client. Retrying with the same key and body returns the first answer (`idempotent-replayed: true`) and changes nothing; requests with one key at the same time: one acts, the others get its answer (409 E_IDEMPOTENCY_IN_PROGRESS after 10 s); the same key with another body: 409 E_IDEMPOTENCY_CONFLICT. Without it: 400 E_IDEMPOTENCY_KEY_MISSING.';
  // Named in lower case as the route schemas (and so the clients generated before this) name it; HTTP does not mind.
  const param = { name: 'idempotency-key', in: 'header', required: true, description, schema: { type: 'string', minLength: 1, maxLength: 200 } };
  if (declared) Object.assign(declared, param);
  else op.parameters.push(param);
}

function addContent(key: string, op: Json): void {
  const other = OTHER_CONTENT[key];
  if (!other) return;
  op.responses ??= {};
  const ok = (op.responses['200'] ??= { description: 'OK' });
  if (ok.description === 'Default Response') ok.description = 'OK';
  // A JSON schema the route declares itself wins over the generic one here.
  ok.content = { ...other, ...ok.content };
}

/** Only GET /healthz answers a 503 of its own (its report while the gateway stops); every other 503 is an error. */
const RESPONSE_NAMES: Readonly<Record<string, string>> = { '200': 'OK', '201': 'Created', '202': 'Accepted', '503': 'Stopping: the gateway drains and admits no new work' };

/** fastify-swagger calls every response "Default Response"; a generated client shows these names instead. */
function nameSuccesses(op: Json): void {
  for (const [status, response] of Object.entries<Json>(op.responses ?? {})) {
    if (response.description === 'Default Response' && RESPONSE_NAMES[status]) response.description = RESPONSE_NAMES[status];
  }
}

interface OperationKind {
  method: string;
  path: string;
  key: string;
  op: Json;
  open: boolean;
  permission: Permission | undefined;
  write: boolean;
  idempotent: boolean;
}

/** Every error code the operation can answer with, by HTTP status. */
export function errorsOf(kind: OperationKind, operationErrors: Readonly<Record<string, readonly ErrorCode[]>>): Map<number, Set<ErrorCode>> {
  const codes: ErrorCode[] = ['E_INTERNAL'];
  const hasInput = (kind.op.parameters ?? []).some((p: Json) => p.in === 'path' || p.in === 'query') || kind.op.requestBody !== undefined;
  if (hasInput) codes.push('E_VALIDATION');
  if (!kind.open) codes.push('E_UNAUTHORIZED');
  if (kind.permission) codes.push('E_FORBIDDEN');
  // /healthz is not rate limited (app.ts: allowList), so a load balancer's probe is never refused.
  if (kind.path !== '/healthz') codes.push('E_RATE_LIMITED');
  if (kind.write) {
    // A write's body is read and parsed whatever the route (fastify parses any body sent with a write).
    codes.push('E_VALIDATION', 'E_BODY_TOO_DEEP', 'E_BODY_TOO_LARGE', 'E_SHUTTING_DOWN', 'E_STORE_UNAVAILABLE');
  }
  if (kind.idempotent) codes.push('E_IDEMPOTENCY_KEY_MISSING', 'E_IDEMPOTENCY_CONFLICT', 'E_IDEMPOTENCY_IN_PROGRESS');
  codes.push(...(operationErrors[kind.key] ?? []));
  const byStatus = new Map<number, Set<ErrorCode>>();
  for (const code of codes) {
    const status = ERRORS[code].status;
    (byStatus.get(status) ?? byStatus.set(status, new Set()).get(status)!).add(code);
  }
  // A body in a type the route does not parse: fastify's 415, sent as E_VALIDATION (app.ts, the error handler).
  if (kind.write) (byStatus.get(415) ?? byStatus.set(415, new Set()).get(415)!).add('E_VALIDATION');
  return byStatus;
}

const errorRef = { $ref: '#/components/schemas/Error' };

/** The error response of one status: the shared Error schema with `code` limited to the codes listed. */
function errorResponse(status: number, codes: readonly ErrorCode[]): Json {
  const schema = codes.length === 0 ? errorRef : { allOf: [errorRef, { type: 'object', properties: { code: { enum: codes } } }] };
  const description = codes.length === 0 ? 'An error (see its code)' : codes.map((c) => `${c}: ${ERRORS[c].title}`).join('; ');
  const response: Json = { description, content: { 'application/json': { schema } } };
  if (status === 429 || codes.some((c) => 'retryAfterSec' in ERRORS[c])) response.headers = { 'Retry-After': RETRY_AFTER };
  return response;
}

/** Whether a route's own response schema for a status is the error shape (schemas.ts ErrorView). */
function isErrorShaped(response: Json | undefined): boolean {
  const schema = response?.content?.['application/json']?.schema;
  return schema?.type === 'object' && schema.properties?.code !== undefined && schema.properties?.message !== undefined;
}

function setErrors(op: Json, errors: Map<number, Set<ErrorCode>>): void {
  op.responses ??= {};
  const declared = Object.keys(op.responses).filter((s) => Number(s) >= 400 && isErrorShaped(op.responses[s]));
  const statuses = new Set([...errors.keys(), ...declared.map(Number)]);
  for (const status of [...statuses].sort((a, b) => a - b)) {
    const codes = [...(errors.get(status) ?? [])].sort();
    const own = op.responses[String(status)];
    const error = errorResponse(status, codes);
    if (own === undefined || isErrorShaped(own)) {
      op.responses[String(status)] = error;
    } else {
      // The route answers this status with its own body (GET /healthz's 503 is the health report): either.
      const ownSchema = own.content?.['application/json']?.schema ?? {};
      op.responses[String(status)] = {
        ...own,
        description: `${own.description === 'Default Response' ? 'The route’s answer' : own.description}; or an error: ${error.description}`,
        content: { ...own.content, 'application/json': { schema: { anyOf: [ownSchema, error.content['application/json'].schema] } } },
      };
    }
  }
}
