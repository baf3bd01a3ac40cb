import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATION_IDS } from '../../src/api/operation-ids.js';
import { startGatewayFixture, type GatewayFixture } from '../harness/gateway-fixture.js';

/** The served OpenAPI document is the API's documentation: every route with a body shows an example of it. */
let f: GatewayFixture;
beforeAll(async () => {
  f = await startGatewayFixture([{ meterId: 'OA-1', profileId: 'acme-em340-fw2.4', initialRelay: 'connected' }]);
}, 60_000);
afterAll(async () => {
  await f?.stop();
});

describe('OpenAPI document', () => {
  it('documents every /v1 route, and every request body carries an example', async () => {
    const spec = (await f.http('GET', '/openapi.json', { key: null })).body;
    const ops: [string, string, any][] = [];
    for (const [path, item] of Object.entries<any>(spec.paths)) for (const [method, op] of Object.entries<any>(item)) ops.push([method, path, op]);
    expect(ops.filter(([, p]) => p.startsWith('/v1/')).length).toBeGreaterThan(40);
    const missing = ops
      .filter(([, , op]) => op.requestBody)
      .filter(([, , op]) => {
        const media = op.requestBody.content?.['application/json'];
        return !(media?.example || (media?.examples && Object.keys(media.examples).length) || media?.schema?.examples?.length || media?.schema?.example);
      })
      .map(([m, p]) => `${m.toUpperCase()} ${p}`);
    expect(missing).toEqual([]);
    for (const [, , op] of ops) expect(op.summary ?? op.description, JSON.stringify(op).slice(0, 80)).toBeTruthy();
  });

  it('says what a billing receiver may rely on in `seq`: per client, from 1, no gaps (a gap means loss), at-least-once callbacks', async () => {
    const spec = (await f.http('GET', '/openapi.json', { key: null })).body;
    for (const path of ['/v1/changes', '/v1/callbacks/deliveries']) {
      const seq = spec.paths[path].get.responses['200'].content['application/json'].schema.properties.items.items.properties.seq;
      expect(seq).toMatchObject({ type: 'integer', minimum: 1 });
      for (const promise of ["this billing client's own feed", '1 for its first event', 'exactly one more', 'never skipped', 'a gap there means loss', 'at least once', 'drops a seq it already has']) {
        expect(seq.description, path).toContain(promise);
      }
    }
  });

  it('is OpenAPI 3.1 with servers, and every operation has its stable operationId from OPERATION_IDS (unique, none left over)', async () => {
    const spec = await served();
    expect(spec.openapi).toMatch(/^3\.1\./);
    expect(spec.servers?.length).toBeGreaterThan(0);
    const ops = operations(spec);
    const ids = ops.map(({ op }) => op.operationId);
    expect(ops.filter(({ op }) => typeof op.operationId !== 'string').map(({ key }) => key)).toEqual([]);
    expect(new Set(ids).size).toBe(ids.length);
    expect(Object.fromEntries(ops.map(({ key, op }) => [key, op.operationId]))).toEqual(OPERATION_IDS);
    expect(ids).toEqual(expect.arrayContaining(['reconnectMeter', 'listOrders', 'getOrder', 'getHealth']));
  });

  it('open routes say `security: []`; every other operation needs the bearer key and documents 401 E_UNAUTHORIZED', async () => {
    const spec = await served();
    for (const { key, op } of operations(spec)) {
      if (key === 'GET /healthz') {
        expect(op.security, key).toEqual([]);
        continue;
      }
      expect(op.security, key).toEqual([{ bearerAuth: [] }]);
      expect(codes(op, 401), key).toEqual(['E_UNAUTHORIZED']);
    }
    // Every guarded route lists 403 and the roles that may call it; GET /v1/whoami takes any key.
    expect(codes(spec.paths['/v1/orders/bulk'].post, 403)).toContain('E_FORBIDDEN');
    expect(spec.paths['/v1/orders/bulk'].post.description).toContain('Roles: operator');
    expect(spec.paths['/v1/whoami'].get.responses['403']).toBeUndefined();
  });

  it('lists the errors each operation can answer, by status, each code under its own status, on the shared Error schema', async () => {
    const spec = await served();
    expect(spec.components.schemas.Error.required).toEqual(['code', 'message', 'requestId']);
    const reconnect = spec.paths['/v1/meters/{meterId}/reconnect'].post;
    expect(codes(reconnect, 400)).toEqual(expect.arrayContaining(['E_VALIDATION', 'E_IDEMPOTENCY_KEY_MISSING', 'E_BODY_TOO_DEEP']));
    expect(codes(reconnect, 409)).toEqual(expect.arrayContaining(['E_IDEMPOTENCY_CONFLICT', 'E_IDEMPOTENCY_IN_PROGRESS']));
    expect(codes(reconnect, 413)).toEqual(['E_BODY_TOO_LARGE']);
    expect(codes(reconnect, 503)).toEqual(['E_SHUTTING_DOWN', 'E_STORE_UNAVAILABLE']);
    expect(reconnect.responses['503'].headers['Retry-After']).toBeDefined();
    for (const path of ['/v1/orders', '/v1/meters/{meterId}/timeline', '/v1/changes', '/v1/work-orders']) expect(codes(spec.paths[path].get, 400), path).toContain('E_VALIDATION');
    for (const { key, op } of operations(spec)) {
      // 500 is E_INTERNAL, and for the routes that open sealed DLMS keys also the codes that name a wrong key master.
      expect(codes(op, 500).filter((c: string) => c !== 'E_KEY_MASTER_MISMATCH' && c !== 'E_KEY_ENVELOPE_INVALID'), key).toEqual(['E_INTERNAL']);
      if (key !== 'GET /healthz') expect(codes(op, 429), key).toEqual(['E_RATE_LIMITED']);
      for (const [status, response] of Object.entries<any>(op.responses)) {
        if (Number(status) < 400 || !response.content['application/json'].schema.allOf) continue;
        const listed = codes(op, Number(status));
        expect(response.description, `${key} ${status}`).toContain(listed[0]);
      }
    }
    // A GET that reads only (no key in the URL) gets no write errors.
    expect(spec.paths['/v1/queue'].get.responses['503']).toBeUndefined();
  });

  it('documents every content type a route sends: CSV, NDJSON, server-sent events, the Prometheus text format', async () => {
    const spec = await served();
    const types = (path: string) => Object.keys(spec.paths[path].get.responses['200'].content);
    expect(types('/v1/orders/export')).toContain('text/csv');
    expect(types('/v1/audit/export')).toEqual(expect.arrayContaining(['application/x-ndjson', 'text/csv']));
    expect(types('/v1/reconciliation')).toEqual(expect.arrayContaining(['application/json', 'text/csv']));
    expect(types('/v1/events')).toContain('text/event-stream');
    expect(types('/metrics')).toContain('text/plain; version=0.0.4');
  });

  it('nullable enums admit null (desiredRelay, result.relay, attempts[].observedRelay and outcome, events[].from, plan item state)', async () => {
    const spec = await served();
    const ajv = new Ajv2020({ strict: false });
    const json = (path: string) => spec.paths[path].get.responses['200'].content['application/json'].schema;
    const order = json('/v1/orders/{orderId}').properties;
    const places: [string, any][] = [
      ['desiredRelay', json('/v1/meters/{meterId}').properties.desiredRelay],
      ['result.relay', order.result.properties.relay],
      ['attempts[].observedRelay', order.attempts.items.properties.observedRelay],
      ['attempts[].outcome', order.attempts.items.properties.outcome],
      ['events[].from', order.events.items.properties.from],
      ['plan items[].state', json('/v1/plans/{planId}').properties.items.items.properties.state],
    ];
    for (const [name, schema] of places) {
      expect(ajv.validate(schema, null), name).toBe(true);
      expect(ajv.validate(schema, 'no-such-value'), name).toBe(false);
    }
  });

  it('requires the Idempotency-Key header on every write, and the server refuses each write without one (400 E_IDEMPOTENCY_KEY_MISSING)', async () => {
    const spec = await served();
    const writes = operations(spec).filter(({ method }) => method !== 'get');
    expect(writes.length).toBeGreaterThan(25);
    const keys = [f.operatorKey, f.billingKey, f.supervisorKey, f.adminKey, f.fieldKey];
    const answers: Record<string, string> = {};
    for (const { key, method, path, op } of writes) {
      const header = (op.parameters ?? []).find((p: any) => p.in === 'header' && p.name.toLowerCase() === 'idempotency-key');
      expect(header?.required, key).toBe(true);
      const media = op.requestBody?.content?.['application/json'];
      const body = media ? (media.schema?.examples?.[0] ?? media.example ?? (Object.values<any>(media.examples ?? {})[0]?.value as unknown) ?? {}) : undefined;
      const url = path.replace(/\{[^}]+\}/g, 'OA-1');
      // Some role may make the call; the first key not refused for its role shows what the server asks for.
      let answer = { status: 403, body: {} as any };
      for (const k of keys) {
        answer = await f.http(method.toUpperCase(), url, { key: k, body, idempotencyKey: null });
        if (answer.status !== 403) break;
      }
      answers[key] = `${answer.status} ${answer.body.code}`;
    }
    expect(Object.entries(answers).filter(([, a]) => a !== '400 E_IDEMPOTENCY_KEY_MISSING')).toEqual([]);
  });

  it('describes the outbound calls as webhooks, with their signature headers and scheme', async () => {
    const spec = await served();
    expect(Object.keys(spec.webhooks)).toEqual(expect.arrayContaining(['orderCallback', 'workOrder', 'customerNotification', 'operatorAlert', 'paymentRecheck']));
    const callback = spec.webhooks.orderCallback.post;
    const headers = Object.fromEntries(callback.parameters.map((p: any) => [p.name, p]));
    expect(headers['X-Meterline-Signature']).toMatchObject({ in: 'header', required: true, schema: { pattern: '^sha256=[0-9a-f]{64}$' } });
    expect(headers['X-Meterline-Event-Seq']).toMatchObject({ in: 'header', required: true });
    expect(callback.security).toEqual([{ callbackSignature: [] }]);
    expect(callback.requestBody.content['application/json'].schema.required).toEqual(expect.arrayContaining(['seq', 'kind', 'meterId', 'orderId', 'at', 'payload']));
    const scheme = spec.components.securitySchemes.callbackSignature;
    for (const fact of ['HMAC-SHA256', 'raw request body', 'no timestamp', 'constant time']) expect(scheme.description).toContain(fact);
    const workOrder = spec.webhooks.workOrder.post;
    expect(workOrder.parameters.map((p: any) => p.name)).toEqual(expect.arrayContaining(['X-Meterline-Signature', 'X-Meterline-Notification-Id']));
    expect(workOrder.requestBody.content['application/json'].schema.properties.kind.enum).toEqual(expect.arrayContaining(['work_order.created', 'work_order.cancelled']));
  });
});

const served = async () => (await f.http('GET', '/openapi.json', { key: null })).body;

/** Every operation of the document, with its OPERATION_IDS key. */
function operations(spec: any): { key: string; method: string; path: string; op: any }[] {
  const out = [];
  for (const [path, item] of Object.entries<any>(spec.paths)) {
    for (const [method, op] of Object.entries<any>(item)) if (['get', 'put', 'post', 'delete', 'patch'].includes(method)) out.push({ key: `${method.toUpperCase()} ${path}`, method, path, op });
  }
  return out;
}

/** The error codes an operation lists under a status (the `code` enum of its Error schema). */
function codes(op: any, status: number): string[] {
  const schema = op.responses[String(status)]?.content?.['application/json']?.schema;
  return schema?.allOf?.find((s: any) => s.properties?.code)?.properties.code.enum ?? [];
}
