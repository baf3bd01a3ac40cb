import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { MeterlineError } from '../../errors.js';
import { requirePermission } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { ALERT_ACTS, ALERT_STATES, type AlertRecord } from '../../store/store.js';
import { idempotentWrite } from '../idempotent-write.js';
import { ErrorView, IdempotencyHeaders } from '../schemas.js';

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
const AlertView = z.object({
  id: z.string(),
  kind: z.string(),
  meterId: z.string().describe('The meter, or `-` for an alert about a population (link, profile, region: see the payload)'),
  at: z.string(),
  payload: z.unknown(),
  delivered: z.boolean(),
  state: z.enum(ALERT_STATES),
  acknowledgedAt: z.string().nullable(),
  acknowledgedBy: z.string().nullable(),
  clearedAt: z.string().nullable(),
  clearedBy: z.string().nullable(),
});
const alertView = (a: AlertRecord): z.infer<typeof AlertView> => ({
  id: a.id,
  kind: a.kind,
  meterId: a.meterId,
  at: new Date(a.createdAt).toISOString(),
  payload: a.payload,
  delivered: a.deliveredAt !== null,
  state: a.state,
  acknowledgedAt: iso(a.acknowledgedAt),
  acknowledgedBy: a.acknowledgedBy,
  clearedAt: iso(a.clearedAt),
  clearedBy: a.clearedBy,
});

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
    schema: { summary: 'Run the relay audit now', tags: ['monitoring'], headers: IdempotencyHeaders, response: { 200: Run, 401: ErrorView, 403: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'monitoring:run'),
    handler: async (req, reply) => {
      const relayAudit = deps.relayAudit;
      if (!relayAudit) throw new MeterlineError('E_NOT_FOUND', 'the relay audit is not configured');
      // Idempotent like every write: a retried request answers the run it started instead of running (and alerting) again.
      await idempotentWrite(deps.store, req, reply, deps.submitContext().now, async () => {
        const run = await relayAudit();
        return { status: 200, body: { ...run, ranAt: new Date(run.ranAt).toISOString() } };
      });
    },
  });

  r.get('/v1/alerts', {
    schema: {
      summary: 'Alerts, newest first: success rates below threshold, circuit breakers, abnormal consumption, register discontinuities, relay-audit exceptions (each once per episode)',
      description: 'Each alert is open until a person acknowledges it (seen, being handled) and then cleared (over); `state` lists only those in one state.',
      tags: ['monitoring'],
      querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100), state: z.enum(ALERT_STATES).optional() }),
      response: { 200: z.object({ items: z.array(AlertView) }), 400: ErrorView, 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'stats:read'),
    handler: async (req) => ({ items: (await deps.store.listAlerts(req.query.limit, req.query.state)).map(alertView) }),
  });

  for (const act of ALERT_ACTS) {
    r.post(`/v1/alerts/:alertId/${act}`, {
      schema: {
        summary: act === 'acknowledge' ? 'Acknowledge an alert: it is seen and being handled (again: no change)' : 'Clear an alert: it is over (an open or acknowledged alert)',
        description: 'Audited with the note. A cleared alert cannot be acted on again (E_ALERT_CLEARED).',
        tags: ['monitoring'],
        params: z.object({ alertId: z.string().min(1).max(64) }),
        headers: IdempotencyHeaders,
        body: z.object({ note: z.string().max(1000).optional() }).strict().nullish().meta({ examples: [{ note: act === 'acknowledge' ? 'looking at link L-3' : 'link L-3 back up' }] }).describe('Optional: a note for the audit log; no body at all is fine'),
        response: { 200: AlertView, 400: ErrorView, 401: ErrorView, 403: ErrorView, 404: ErrorView, 409: ErrorView },
        security: [{ bearerAuth: [] }],
      },
      onRequest: requirePermission(deps.keys, 'alert:manage'),
      handler: async (req, reply) => {
        const now = deps.submitContext().now;
        await idempotentWrite(deps.store, req, reply, now, async () => ({
          status: 200,
          body: alertView(await deps.store.actOnAlert(req.params.alertId, act, req.body?.note ?? null, req.principal!.clientId, now)),
        }));
      },
    });
  }
}
