import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { MeterlineError } from '../../errors.js';
import { requirePermission } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { ErrorView } from '../schemas.js';

/** Prometheus metrics, the daily relay audit (DOMAIN.md rule 17) and the alert log (rules 16, 20). */
export async function monitoringRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get('/metrics', {
    schema: { summary: 'Prometheus metrics (see the README for every metric); scrape with a bearer key', tags: ['monitoring'], security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'stats:read'),
    handler: async (_req, reply) => {
      if (!deps.metrics) throw new MeterlineError('E_NOT_FOUND', 'metrics are not enabled');
      return reply.type(deps.metrics.contentType).send(await deps.metrics.render());
    },
  });

  const Run = z.object({ id: z.string(), ranAt: z.string(), meters: z.number(), exceptions: z.array(z.unknown()) });
  r.get('/v1/relay-audit', {
    schema: {
      summary: 'The latest daily relay audit: meters whose relay disagrees with their orders, for a person to look at (each with its episode, whether this run alerted, its inspection work order)',
      tags: ['monitoring'],
      response: { 200: Run, 401: ErrorView, 404: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'stats:read'),
    handler: async () => {
      const run = await deps.store.latestRelayAudit();
      if (!run) throw new MeterlineError('E_NOT_FOUND', 'no relay audit has run yet; it runs daily (relayAudit.cron) or on POST /v1/relay-audit/run');
      return { ...run, ranAt: new Date(run.ranAt).toISOString() };
    },
  });
  r.post('/v1/relay-audit/run', {
    schema: { summary: 'Run the relay audit now', tags: ['monitoring'], response: { 200: Run, 401: ErrorView, 403: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'monitoring:run'),
    handler: async () => {
      if (!deps.relayAudit) throw new MeterlineError('E_NOT_FOUND', 'the relay audit is not configured');
      const run = await deps.relayAudit();
      return { ...run, ranAt: new Date(run.ranAt).toISOString() };
    },
  });

  r.get('/v1/alerts', {
    schema: {
      summary: 'Alerts, newest first: success rates below threshold, circuit breakers, abnormal consumption, register discontinuities, relay-audit exceptions (each once per episode)',
      tags: ['monitoring'],
      querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }),
      response: { 200: z.object({ items: z.array(z.object({ id: z.string(), kind: z.string(), meterId: z.string(), at: z.string(), payload: z.unknown(), delivered: z.boolean() })) }), 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'stats:read'),
    handler: async (req) => ({
      items: (await deps.store.listAlerts(req.query.limit)).map((a) => ({ id: a.id, kind: a.kind, meterId: a.meterId, at: new Date(a.createdAt).toISOString(), payload: a.payload, delivered: a.deliveredAt !== null })),
    }),
  });
}
