import { describe, expect, it } from 'vitest';
import { finishDocument } from '../../src/api/openapi-document.js';

/**
 * The document post-processor on a small built document: what it adds to an operation by its kind, how it merges
 * the codes of OPERATION_ERRORS with what a route declares itself, and that it never drops a route's own schema.
 */
const errorView = { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } }, required: ['code', 'message'] };
const json = (schema: unknown) => ({ content: { 'application/json': { schema } } });
const built = () => ({
  openapi: '3.1.0',
  info: { title: 't', version: '1' },
  paths: {
    '/healthz': { get: { responses: { '200': { description: 'Default Response', ...json({ type: 'object' }) }, '503': { description: 'Default Response', ...json({ type: 'object', properties: { status: { type: 'string' } } }) } } } },
    '/v1/things/{thingId}': {
      get: { security: [{ bearerAuth: [] }], parameters: [{ name: 'thingId', in: 'path', required: true, schema: { type: 'string' } }], responses: { '200': { description: 'Default Response' }, '404': { description: 'Default Response', ...json(errorView) } } },
      post: {
        security: [{ bearerAuth: [] }],
        parameters: [{ name: 'thingId', in: 'path', required: true, schema: { type: 'string' } }, { name: 'idempotency-key', in: 'header', required: false, schema: { type: 'string' } }],
        requestBody: { content: { 'application/json': { schema: { type: 'object' } } } },
        responses: { '200': { description: 'Default Response' }, '409': { description: 'Default Response', ...json(errorView) } },
      },
    },
  },
});
const codes = (op: any, status: number): string[] | undefined => op.responses[String(status)]?.content['application/json'].schema.allOf?.[1].properties.code.enum;

describe('finishDocument', () => {
  const doc = finishDocument(built(), {
    permissions: new Map([['POST /v1/things/{thingId}', 'meter:write']]),
    operationIds: { 'GET /healthz': 'getHealth', 'GET /v1/things/{thingId}': 'getThing', 'POST /v1/things/{thingId}': 'changeThing' },
    operationErrors: { 'POST /v1/things/{thingId}': ['E_METER_NOT_FOUND', 'E_RECONNECT_PENDING', 'E_PROFILE_UNKNOWN'] },
  });
  const get = doc.paths['/v1/things/{thingId}'].get;
  const post = doc.paths['/v1/things/{thingId}'].post;

  it('names each operation, marks the open one `security: []`, and requires the Idempotency-Key on the write', () => {
    expect([doc.paths['/healthz'].get.operationId, get.operationId, post.operationId]).toEqual(['getHealth', 'getThing', 'changeThing']);
    expect(doc.paths['/healthz'].get.security).toEqual([]);
    expect(post.security).toEqual([{ bearerAuth: [] }]);
    expect(post.parameters.filter((p: any) => p.in === 'header')).toEqual([expect.objectContaining({ name: 'idempotency-key', required: true })]);
    expect(get.parameters.some((p: any) => p.in === 'header')).toBe(false);
    expect(post.description).toContain('Roles: operator, admin');
  });

  it("merges the operation's own codes with the standard ones under each code's status, and keeps a route's own 503 body", () => {
    expect(codes(post, 409)).toEqual(['E_IDEMPOTENCY_CONFLICT', 'E_IDEMPOTENCY_IN_PROGRESS', 'E_RECONNECT_PENDING']);
    expect(codes(post, 404)).toEqual(['E_METER_NOT_FOUND']);
    expect(codes(post, 422)).toEqual(['E_PROFILE_UNKNOWN']);
    expect(codes(post, 403)).toEqual(['E_FORBIDDEN']);
    expect(post.responses['409'].description).toContain('E_RECONNECT_PENDING: a reconnect is pending');
    // A read with no permission check has no 403 and no write errors; its declared 404 stays, codes not yet listed.
    expect(get.responses['403']).toBeUndefined();
    expect(get.responses['503']).toBeUndefined();
    expect(get.responses['404'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Error' });
    // /healthz answers its own report with 503; it is kept, and gets no error codes it cannot send.
    expect(doc.paths['/healthz'].get.responses['503'].content['application/json'].schema).toEqual({ type: 'object', properties: { status: { type: 'string' } } });
    expect(doc.paths['/healthz'].get.responses['429']).toBeUndefined();
  });

  it('leaves the document it was given as it was', () => {
    const input = built();
    finishDocument(input, { permissions: new Map() });
    expect(input).toEqual(built());
  });
});
