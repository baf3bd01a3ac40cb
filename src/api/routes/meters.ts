import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { MeterlineError } from '../../errors.js';
import { requirePermission } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { idempotentWrite } from '../idempotent-write.js';
import { ErrorView, IdempotencyHeaders, MeterBody, MeterIdParam, MeterView } from '../schemas.js';
import { meterView } from '../views.js';

export async function meterRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();

  const view = async (meterId: string) => {
    const meter = await deps.store.getMeter(meterId);
    if (!meter) throw new MeterlineError('E_METER_NOT_FOUND', `meter ${meterId} is not registered; register it with PUT /v1/meters/${meterId}`);
    const [open, lastLimit] = await Promise.all([deps.store.openOrdersForMeter(meterId), deps.store.lastCompletedOrder(meterId, 'limit')]);
    return meterView(meter, deps.profiles.get(meter.profileId), open, lastLimit);
  };

  r.get('/v1/meters/:meterId', {
    schema: {
      summary: "A meter: its firmware profile, the relay state last observed (when, from what), the desired state and open orders",
      tags: ['meters'],
      params: MeterIdParam,
      response: { 200: MeterView, 401: ErrorView, 404: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'meter:read'),
    handler: async (req) => view(req.params.meterId),
  });

  r.put('/v1/meters/:meterId', {
    schema: {
      summary: 'Register a meter or change its profile, link or region',
      tags: ['meters'],
      params: MeterIdParam,
      headers: IdempotencyHeaders,
      body: MeterBody,
      response: { 200: MeterView, 400: ErrorView, 401: ErrorView, 403: ErrorView, 422: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'meter:write'),
    handler: async (req, reply) => {
      const now = deps.submitContext().now;
      // Idempotent like every write: a retried registration answers what the first one did and audits nothing twice.
      await idempotentWrite(deps.store, req, reply, now, async () => {
        if (!deps.profiles.has(req.body.profileId)) {
          throw new MeterlineError('E_PROFILE_UNKNOWN', `firmware profile "${req.body.profileId}" is not loaded; known profiles: ${[...deps.profiles.keys()].join(', ')}`);
        }
        await deps.store.upsertMeters([{ meterId: req.params.meterId, ...req.body }], now);
        await deps.store.appendAudit({ at: now, actor: req.principal!.clientId, action: 'meter.register', target: req.params.meterId, details: req.body });
        return { status: 200, body: await view(req.params.meterId) };
      });
    },
  });
}
