import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ERRORS, MeterlineError, retryAfterSec } from '../errors.js';
import type { ApiDeps } from './deps.js';
import { permissionOfGuard, sha256Hex, type Permission } from './auth.js';
import { registerHttpMetrics } from './http-metrics.js';
import { documentPath, finishDocument, operationKey } from './openapi-document.js';
import { closeAfterAnswer } from './lingering-close.js';
import { bodyTooLarge, DEFAULT_BODY_LIMIT, registerJsonBodyParser } from './request-body.js';
import { adminRoutes } from './routes/admin.js';
import { asyncApiRoutes } from './routes/asyncapi.js';
import { consoleRoutes } from './routes/console.js';
import { linkRoutes } from './routes/links.js';
import { liveRoutes } from './routes/live.js';
import { meterKeyRoutes } from './routes/meter-keys.js';
import { meterFactsRoutes } from './routes/meter-facts.js';
import { meterHistoryRoutes } from './routes/meter-history.js';
import { meterRoutes } from './routes/meters.js';
import { meterSwapRoutes } from './routes/meter-swaps.js';
import { planRoutes } from './routes/plans.js';
import { workOrderRoutes } from './routes/work-orders.js';
import { monitoringRoutes } from './routes/monitoring.js';
import { billingRoutes } from './routes/billing.js';
import { switchOrderRoutes } from './routes/switch-orders.js';
import { statsSeriesRoutes } from './routes/stats-series.js';

/** Build the HTTP API (not yet listening). The OpenAPI document is served at /openapi.json and browsable at /docs. */
export async function buildApi(deps: ApiDeps, logger: Logger): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Per-request lines are off: every order change is logged by the control loop with meter and order ids.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    genReqId: (req) => (typeof req.headers['x-request-id'] === 'string' && req.headers['x-request-id'].length <= 100 ? req.headers['x-request-id'] : randomUUID()),
    // Every route reads at most this unless it sets its own limit (bulk routes: items × bytes per item).
    bodyLimit: DEFAULT_BODY_LIMIT,
  });
  registerJsonBodyParser(app);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  registerHttpMetrics(app, deps.metrics?.httpRequestDuration);

  app.setErrorHandler((err: Error, req, reply) => {
    // Refused before its body arrived (unknown key, too large, rate limited): close the connection rather than read
    // an unknown number of bytes to keep it alive, and close it so that the client still gets this answer.
    if (!req.raw.complete) {
      // Stop reading the body now, not only once the answer is written: fastify's body reader drops its listener at
      // the limit but leaves the stream flowing, so a loaded machine read megabytes more before the answer went out.
      req.raw.pause();
      reply.header('connection', 'close');
      closeAfterAnswer(req.raw.socket);
    }
    const send = (status: number, code: string, message: string, details?: unknown) =>
      reply.code(status).send({ code, message, ...(details === undefined ? {} : { details }), requestId: req.id });
    if (hasZodFastifySchemaValidationErrors(err)) {
      const issues = err.validation.map((v) => ({ where: `${err.validationContext ?? 'request'}${v.instancePath.replaceAll('/', '.')}`, problem: v.message }));
      return send(400, 'E_VALIDATION', `the request is not valid: ${issues.map((i) => `${i.where}: ${i.problem}`).slice(0, 5).join('; ')}`, { issues });
    }
    if (err instanceof MeterlineError) {
      // Errors that pass (the store cannot take writes, the gateway is stopping) tell the client when to try again.
      const after = retryAfterSec(err.code);
      if (after !== undefined) reply.header('retry-after', String(after));
      return send(err.status, err.code, err.message, err.details);
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (status === 413) {
      const tooLarge = bodyTooLarge(req);
      return send(tooLarge.status, tooLarge.code, tooLarge.message, tooLarge.details);
    }
    if (status === 429) return send(429, 'E_RATE_LIMITED', err.message);
    if (status !== undefined && status >= 400 && status < 500) return send(status, 'E_VALIDATION', `the request is not valid: ${err.message}`);
    req.log.error({ err }, 'unhandled error');
    return send(500, 'E_INTERNAL', `${ERRORS.E_INTERNAL.title}; the gateway logged it with request id ${req.id}`);
  });
  // A stopping gateway admits no new work (it drains: the attempts on the wire finish, then it exits). Refused before
  // anything else is done for the request; reads go on, so clients can follow their orders to the end.
  app.addHook('onRequest', async (req) => {
    if (deps.stopping() && req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS') {
      throw new MeterlineError('E_SHUTTING_DOWN', `this gateway is stopping and admits no new work; send ${req.method} ${req.url.split('?')[0]} to another instance, or retry once it is back`);
    }
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ code: 'E_NOT_FOUND', message: `no route ${req.method} ${req.url}; see /docs for the API`, requestId: req.id });
  });

  // Per-key rate limit (a key is identified by its hash; requests without one by address).
  await app.register(rateLimit, {
    max: deps.rateLimit.max,
    timeWindow: deps.rateLimit.timeWindowMs,
    keyGenerator: (req) => (typeof req.headers.authorization === 'string' ? `key:${sha256Hex(req.headers.authorization)}` : `ip:${req.ip}`),
    allowList: (req) => req.url === '/healthz',
    errorResponseBuilder: (_req, ctx) => ({
      statusCode: 429,
      message: `rate limit of ${ctx.max} requests per ${Math.round(Number(ctx.after.replace(/\D/g, '')) || 1)} s for this key reached; retry after ${ctx.after}`,
    }),
  });
  // What the document builder needs from each route beyond its schema: the permission its key check asks for.
  const permissions = new Map<string, Permission>();
  app.addHook('onRoute', (route) => {
    const permission = permissionOfGuard(route.onRequest);
    if (!permission) return;
    for (const method of [route.method].flat()) permissions.set(operationKey(method, documentPath(route.url)), permission);
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Meterline gateway API',
        version: '1',
        description:
          'Remote disconnect and reconnect of smart meters, verified by reading the relay back. Every write takes an Idempotency-Key header. Errors are JSON `{code, message}` with a stable code.',
      },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key' } } },
    },
    // The provider drops a body schema's own `.meta({ examples })`; carry them over so every body shows one.
    transform: (args) => {
      const out = jsonSchemaTransform(args);
      const body = args.schema?.body;
      const examples = body instanceof z.ZodType ? (z.globalRegistry.get(body)?.examples as unknown[] | undefined) : undefined;
      if (examples && out.schema && typeof out.schema.body === 'object' && out.schema.body !== null) {
        out.schema = { ...out.schema, body: { ...(out.schema.body as Record<string, unknown>), examples } };
      }
      return out;
    },
    transformObject: (documentObject) => finishDocument((documentObject as { openapiObject: Record<string, unknown> }).openapiObject, { permissions }),
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  const Health = z.object({
    status: z.enum(['ok', 'degraded', 'stopping']),
    checks: z.record(z.string(), z.boolean()),
    problems: z.array(z.object({ check: z.string(), detail: z.string() })),
  });
  r.get('/healthz', {
    schema: {
      summary: 'Liveness and readiness',
      description:
        '`ok`: the store takes writes, the broker is connected, every Modbus and DLMS link is up, the control loop runs. `degraded` (still 200): some check fails; `problems` names what (the broker, the store file and the cause, each link that is down with since when and its last error). `stopping` (503): the gateway drains after SIGTERM and admits no new work.',
      tags: ['health'],
      response: { 200: Health, 503: Health },
    },
    handler: async (_req, reply) => {
      const results = deps.health();
      const checks = Object.fromEntries(Object.entries(results).map(([name, c]) => [name, c.ok]));
      const problems = Object.entries(results)
        .filter(([, c]) => !c.ok)
        .map(([check, c]) => ({ check, detail: c.detail ?? `${check} check failed` }));
      if (deps.stopping()) {
        reply.code(503);
        return { status: 'stopping' as const, checks, problems: [{ check: 'admission', detail: 'the gateway is stopping: no new work is admitted, the attempts on the wire are finishing' }, ...problems] };
      }
      return { status: problems.length === 0 ? ('ok' as const) : ('degraded' as const), checks, problems };
    },
  });
  await app.register(async (scope) => switchOrderRoutes(scope, deps));
  await app.register(async (scope) => meterRoutes(scope, deps));
  await app.register(async (scope) => meterFactsRoutes(scope, deps));
  await app.register(async (scope) => meterKeyRoutes(scope, deps));
  await app.register(async (scope) => meterHistoryRoutes(scope, deps));
  await app.register(async (scope) => meterSwapRoutes(scope, deps));
  await app.register(async (scope) => planRoutes(scope, deps));
  await app.register(async (scope) => adminRoutes(scope, deps));
  await app.register(async (scope) => workOrderRoutes(scope, deps));
  await app.register(async (scope) => statsSeriesRoutes(scope, deps));
  await app.register(async (scope) => liveRoutes(scope, deps));
  await app.register(async (scope) => consoleRoutes(scope, deps));
  await app.register(async (scope) => monitoringRoutes(scope, deps));
  await app.register(async (scope) => linkRoutes(scope, deps));
  await app.register(async (scope) => billingRoutes(scope, deps));
  await app.register(async (scope) => asyncApiRoutes(scope, deps));
  return app;
}
