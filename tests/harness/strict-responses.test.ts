import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

type FetchFn = typeof globalThis.fetch;
import { checkedFetch, describeViolations, isMeterlineDocument, ServedContracts, type ResponseViolation } from './response-contract.js';

/**
 * The strict response validator itself, against a tiny server that serves a small document and then breaks it. Each
 * kind of break must be caught, and a true answer must pass and reach the caller untouched.
 */
const doc30 = {
  openapi: '3.0.3',
  info: { title: 'Tiny', version: '1' },
  components: { schemas: { Relay: { type: 'string', enum: ['connected', 'disconnected'], nullable: true } } },
  paths: {
    '/v1/meters/{meterId}': {
      get: {
        responses: {
          200: {
            description: 'a meter',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: { meterId: { type: 'string' }, relay: { $ref: '#/components/schemas/Relay' }, at: { type: 'string', format: 'date-time' } },
                  required: ['meterId', 'relay'],
                  additionalProperties: false,
                },
              },
            },
          },
          404: { description: 'none', content: { 'application/json': { schema: { type: 'object', properties: { code: { type: 'string', enum: ['E_METER_NOT_FOUND'] } }, required: ['code'] } } } },
        },
      },
    },
    '/v1/meters/export': { get: { responses: { 200: { description: 'CSV', content: { 'text/csv': { schema: { type: 'string' } } } } } } },
    '/v1/events': { get: { responses: { 200: { description: 'SSE', content: { 'text/event-stream': { schema: { type: 'string' } } } } } } },
  },
};

const doc31 = {
  ...doc30,
  openapi: '3.1.0',
  components: { schemas: { Relay: { type: ['string', 'null'], enum: ['connected', 'disconnected', null] } } },
};

/** What the tiny server answers on each path, so each test breaks one thing. */
let answers: Record<string, (res: ServerResponse) => void> = {};
let served: object = doc30;
let server: Server;
let origin: string;

const json = (status: number, body: unknown, type = 'application/json; charset=utf-8') => (res: ServerResponse) => {
  res.writeHead(status, { 'content-type': type, 'x-request-id': 'r-1' });
  res.end(JSON.stringify(body));
};

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path === '/openapi.json') return json(200, served)(res);
    const answer = answers[path];
    if (answer) return answer(res);
    json(404, { code: 'E_NOT_FOUND' })(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

/** A checked fetch of its own (fresh document cache, its own violation list), as the setup file builds one. */
function checker() {
  const violations: ResponseViolation[] = [];
  const fetch = checkedFetch(globalThis.fetch, new ServedContracts(globalThis.fetch, () => true), (v) => violations.push(v));
  return { fetch, violations };
}

describe('strict response validation', () => {
  it('lets a documented answer through, untouched for the caller', async () => {
    answers = { '/v1/meters/M-1': json(200, { meterId: 'M-1', relay: 'connected', at: '2026-11-28T07:00:00Z' }) };
    const { fetch, violations } = checker();
    const res = await fetch(`${origin}/v1/meters/M-1`);
    expect(await res.json()).toEqual({ meterId: 'M-1', relay: 'connected', at: '2026-11-28T07:00:00Z' });
    expect(violations).toEqual([]);
  });

  it('catches a status the operation does not list, with the body in the message', async () => {
    answers = { '/v1/meters/M-1': json(401, { code: 'E_UNAUTHORIZED', message: 'missing or unknown API key' }) };
    const { fetch, violations } = checker();
    expect((await fetch(`${origin}/v1/meters/M-1`)).status).toBe(401);
    expect(violations).toHaveLength(1);
    const text = describeViolations(violations);
    expect(text).toContain('GET /v1/meters/M-1 → 401');
    expect(text).toContain('status 401 is not documented for GET /v1/meters/{meterId} (documented: 200, 404)');
    expect(text).toContain('E_UNAUTHORIZED');
  });

  it('catches a body of the wrong shape: a missing field, an extra field, a wrong type, a bad format', async () => {
    answers = { '/v1/meters/M-1': json(200, { meterId: 7, at: 'yesterday', colour: 'red' }) };
    const { fetch, violations } = checker();
    await fetch(`${origin}/v1/meters/M-1`);
    expect(violations).toHaveLength(1);
    const problems = violations[0]!.problems.join('\n');
    expect(problems).toContain("must have required property 'relay'");
    expect(problems).toContain('must NOT have additional properties (colour)');
    expect(problems).toContain('body.meterId must be string');
    expect(problems).toContain('body.at must match format "date-time"');
  });

  it('catches an error code the status does not list', async () => {
    answers = { '/v1/meters/M-1': json(404, { code: 'E_ORDER_NOT_FOUND' }) };
    const { fetch, violations } = checker();
    await fetch(`${origin}/v1/meters/M-1`);
    expect(violations[0]?.problems.join('\n')).toContain('body.code must be equal to one of the allowed values (["E_METER_NOT_FOUND"]; got "E_ORDER_NOT_FOUND")');
  });

  it('catches a content type the status does not list', async () => {
    answers = { '/v1/meters/M-1': json(200, { meterId: 'M-1', relay: 'connected' }, 'text/plain') };
    const { fetch, violations } = checker();
    await fetch(`${origin}/v1/meters/M-1`);
    expect(violations[0]?.problems).toEqual(['content type text/plain is not documented for status 200 (documented: application/json)']);
  });

  it('reads a 3.0 nullable enum strictly: null must be among its values', async () => {
    answers = { '/v1/meters/M-1': json(200, { meterId: 'M-1', relay: null }) };
    served = doc30;
    const strict = checker();
    await strict.fetch(`${origin}/v1/meters/M-1`);
    expect(strict.violations[0]?.problems.join('\n')).toContain('body.relay must be equal to one of the allowed values');
    served = doc31; // the same answer against a 3.1 document that lists null: valid
    const fixed = checker();
    await fixed.fetch(`${origin}/v1/meters/M-1`);
    expect(fixed.violations).toEqual([]);
    served = doc30;
  });

  it('checks only the content type of CSV, and does not read an event stream that never ends', async () => {
    answers = {
      '/v1/meters/export': (res) => {
        res.writeHead(200, { 'content-type': 'text/csv', 'x-request-id': 'r-2' });
        res.end('not,really\n"csv');
      },
      '/v1/events': (res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': 'r-3' });
        res.write('data: {"kind":"hello"}\n\n'); // and never ends
      },
    };
    const { fetch, violations } = checker();
    expect((await fetch(`${origin}/v1/meters/export`)).status).toBe(200);
    const controller = new AbortController();
    const events = await fetch(`${origin}/v1/events`, { signal: controller.signal });
    const first = await events.body!.getReader().read();
    expect(new TextDecoder().decode(first.value)).toContain('hello');
    controller.abort();
    expect(violations).toEqual([]);
  });

  it('skips paths the document does not have (console files, /docs)', async () => {
    answers = { '/console/app.js': (res) => res.writeHead(200, { 'x-request-id': 'r-4' }).end('console.log(1)') };
    const { fetch, violations } = checker();
    expect((await fetch(`${origin}/console/app.js`)).status).toBe(200);
    expect((await fetch(`${origin}/docs`)).status).toBe(404);
    expect(violations).toEqual([]);
  });

  it('never checks, nor asks for a document, a local server that is not a gateway (no x-request-id: a webhook receiver)', async () => {
    answers = { '/v1/meters/M-1': (res) => res.writeHead(500).end('receiver down') };
    let asked = 0;
    const counting: FetchFn = async (input, init) => {
      if (String(input).endsWith('/openapi.json')) asked++;
      return globalThis.fetch(input, init);
    };
    const violations: ResponseViolation[] = [];
    const fetch = checkedFetch(globalThis.fetch, new ServedContracts(counting, () => true), (v) => violations.push(v));
    expect((await fetch(`${origin}/v1/meters/M-1`)).status).toBe(500);
    expect(violations).toEqual([]);
    expect(asked).toBe(0);
  });

  it('prefers a literal path segment over a parameter, as the router does', async () => {
    answers = { '/v1/meters/export': json(200, { meterId: 'export', relay: 'connected' }) };
    const { fetch, violations } = checker();
    await fetch(`${origin}/v1/meters/export`);
    expect(violations[0]?.problems[0]).toContain('content type application/json is not documented for status 200 (documented: text/csv)');
  });

  it('knows a Meterline document from another local server’s', () => {
    expect(isMeterlineDocument({ openapi: '3.1.0', info: { title: 'Meterline gateway API' } })).toBe(true);
    expect(isMeterlineDocument(doc30)).toBe(false);
    expect(isMeterlineDocument({ status: 'ok' })).toBe(false);
  });

  it('uses the last document fetched when a gateway refuses its own (rate limited, stopping), and none for another server', async () => {
    const documents: FetchFn = async (url) => {
      const u = String(url);
      if (u.startsWith('http://first')) return new Response(JSON.stringify(doc30), { status: 200 });
      if (u.startsWith('http://limited')) return new Response('{}', { status: 429 });
      return new Response('not found', { status: 404 });
    };
    const contracts = new ServedContracts(documents, () => true);
    const first = await contracts.for('http://first');
    expect(first).not.toBeNull();
    expect(await contracts.for('http://limited')).toBe(first);
    expect(await contracts.for('http://victoria-metrics')).toBeNull();
  });
});
