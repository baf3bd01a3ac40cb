import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { MeterlineError } from '../../errors.js';
import { bucketCount, MAX_SERIES_BUCKETS } from '../../store/order-series.js';
import { requirePermission } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { ErrorView } from '../schemas.js';

const isoTime = z.iso.datetime({ offset: true }).describe('ISO 8601 time with its zone, e.g. 2026-11-28T09:00:00Z');

const Bucket = z.object({
  at: z.string().describe('The bucket’s start; it runs for stepSeconds'),
  finished: z.number().int().describe('Orders that finished in it: done, armed, failed, done by the field, or escalated to the field'),
  done: z.number().int().describe('Of those, the ones done remotely (done or armed, never escalated)'),
  failedOrEscalated: z.number().int(),
  successRate: z.number().nullable().describe('done / finished; null when nothing finished'),
  queueDepth: z.number().int().describe('Orders open (accepted, held, queued, in flight, escalated) at the bucket’s end'),
});

/** Orders over time for the overview's charts (issue 17): finished per bucket, success rate and queue depth. */
export async function statsSeriesRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const now = () => deps.submitContext().now;

  r.get('/v1/stats/series', {
    schema: {
      summary: `Orders over time in buckets: finished, done remotely, success rate, and queue depth at each bucket's end (at most ${MAX_SERIES_BUCKETS} buckets)`,
      tags: ['stats'],
      querystring: z.object({
        from: isoTime.optional().describe('Start of the range; default one hour before `to`'),
        to: isoTime.optional().describe('End of the range; default now'),
        stepSeconds: z.coerce.number().int().min(1).max(7 * 24 * 3600).optional().describe('Bucket width; default one minute, or the range / 120 rounded up to a minute for ranges longer than two hours'),
      }),
      response: {
        200: z.object({ from: z.string(), to: z.string(), stepSeconds: z.number().int(), buckets: z.array(Bucket) }),
        400: ErrorView.describe('E_VALIDATION: `to` before `from`, or more buckets than allowed'),
        401: ErrorView,
      },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'stats:read'),
    handler: async (req) => {
      const to = req.query.to === undefined ? now() : Date.parse(req.query.to);
      const from = req.query.from === undefined ? to - 3_600_000 : Date.parse(req.query.from);
      if (to <= from) throw new MeterlineError('E_VALIDATION', `to (${new Date(to).toISOString()}) must be after from (${new Date(from).toISOString()})`);
      const stepSeconds = req.query.stepSeconds ?? Math.max(60, Math.ceil((to - from) / 120 / 60_000) * 60);
      const buckets = bucketCount(from, to, stepSeconds * 1000);
      if (buckets > MAX_SERIES_BUCKETS) {
        throw new MeterlineError('E_VALIDATION', `${buckets} buckets asked for (${stepSeconds} s steps from ${new Date(from).toISOString()} to ${new Date(to).toISOString()}); at most ${MAX_SERIES_BUCKETS}: give a larger stepSeconds or a shorter range`);
      }
      const series = await deps.store.orderSeries(from, to, stepSeconds * 1000);
      return { from: new Date(from).toISOString(), to: new Date(to).toISOString(), stepSeconds, buckets: series.map((b) => ({ ...b, at: new Date(b.at).toISOString() })) };
    },
  });
}
