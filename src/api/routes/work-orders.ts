import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ORDER_ACTIONS } from '../../domain/relay.js';
import { MeterlineError } from '../../errors.js';
import { FIELD_OUTCOMES, WORK_ORDER_ACTIONS, WORK_ORDER_KINDS, WORK_ORDER_STATUSES, type WorkOrder } from '../../store/store.js';
import { requirePermission } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { idempotentWrite } from '../idempotent-write.js';
import { ErrorView, IdempotencyHeaders } from '../schemas.js';
import { orderView } from '../views.js';

/**
 * The field side (DOMAIN.md rule 11): work orders raised from failed or late remote actions, and inspections the
 * relay audit raised (rule 17: a relay open with no order, or closed while it should be open), most urgent first,
 * assigned to a crew, completed with what the crew found on site.
 */
const WorkOrderView = z.object({
  id: z.string(),
  kind: z.enum(WORK_ORDER_KINDS).describe('switch_order: settles its switch order; credentials: the meter refuses the gateway\'s keys; load_side_voltage: a close refused for voltage on the load side (bypass, backfeed, tampering), make it safe first; inspection: raised by the relay audit, no switch order behind it'),
  orderId: z.string().nullable().describe('The switch order; null for an inspection'),
  meterId: z.string(),
  region: z.string(),
  action: z.enum(WORK_ORDER_ACTIONS).describe('The switch order’s action; inspect for an inspection'),
  reason: z.string().describe('Why it was raised'),
  raisedAt: z.string(),
  dueAt: z.string(),
  deadline: z.string().nullable(),
  timeLeftMinutes: z.number().nullable().describe('Until the customer deadline'),
  priority: z.number().int().describe('1 (most urgent) to 4'),
  status: z.enum(WORK_ORDER_STATUSES),
  assignedTo: z.string().nullable(),
  assignedAt: z.string().nullable(),
  completedAt: z.string().nullable(),
  outcome: z.enum(FIELD_OUTCOMES).nullable(),
  note: z.string().nullable(),
});
const Param = z.object({ workOrderId: z.string().min(1).max(64) });
const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export function workOrderView(w: WorkOrder, now: number): z.infer<typeof WorkOrderView> {
  return {
    ...w,
    raisedAt: iso(w.raisedAt)!,
    dueAt: iso(w.dueAt)!,
    deadline: iso(w.deadline),
    timeLeftMinutes: w.deadline === null ? null : Math.round((w.deadline - now) / 60_000),
    assignedAt: iso(w.assignedAt),
    completedAt: iso(w.completedAt),
  };
}

export async function workOrderRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const now = () => deps.submitContext().now;

  r.get('/v1/work-orders', {
    schema: {
      summary: 'Work orders, most urgent first (priority, then due time)',
      tags: ['work orders'],
      querystring: z.object({ status: z.enum(WORK_ORDER_STATUSES).optional(), region: z.string().optional(), orderId: z.string().min(1).max(200).optional().describe('Only the work orders raised for this switch order'), limit: z.coerce.number().int().min(1).max(1000).default(100) }),
      response: { 200: z.object({ items: z.array(WorkOrderView) }), 401: ErrorView, 403: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'workorder:read'),
    handler: async (req) => {
      const q = { limit: req.query.limit, ...(req.query.status ? { status: req.query.status } : {}), ...(req.query.region ? { region: req.query.region } : {}), ...(req.query.orderId ? { orderId: req.query.orderId } : {}) };
      return { items: (await deps.store.listWorkOrders(q)).map((w) => workOrderView(w, now())) };
    },
  });

  r.get('/v1/work-orders/:workOrderId', {
    schema: { summary: 'A work order', tags: ['work orders'], params: Param, response: { 200: WorkOrderView, 401: ErrorView, 404: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'workorder:read'),
    handler: async (req) => {
      const w = await deps.store.getWorkOrder(req.params.workOrderId);
      if (!w) throw new MeterlineError('E_WORK_ORDER_NOT_FOUND', `work order ${req.params.workOrderId} does not exist`);
      return workOrderView(w, now());
    },
  });

  r.post('/v1/work-orders/:workOrderId/assign', {
    schema: {
      summary: 'Assign a work order to a crew',
      tags: ['work orders'],
      params: Param,
      headers: IdempotencyHeaders,
      body: z.object({ assignee: z.string().min(1).max(100) }).strict().meta({ examples: [{ assignee: 'crew-east-2' }] }),
      response: { 200: WorkOrderView, 401: ErrorView, 403: ErrorView, 404: ErrorView, 409: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'workorder:update'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => ({
        status: 200,
        body: workOrderView(await deps.store.assignWorkOrder(req.params.workOrderId, req.body.assignee, req.principal!.clientId, now()), now()),
      }));
    },
  });

  r.post('/v1/work-orders/:workOrderId/complete', {
    schema: {
      summary: 'Report what the crew found on site; this closes the work order and settles the switch order',
      description:
        'reconnected (or disconnected) marks the switch order done_by_field and the meter connected (or disconnected); meter_faulty, no_access and customer_refused end it failed with the crew’s note. An inspection has no switch order (order is null): reconnected or disconnected record the relay the crew left.',
      tags: ['work orders'],
      params: Param,
      headers: IdempotencyHeaders,
      body: z.object({ outcome: z.enum(FIELD_OUTCOMES), note: z.string().max(1000).optional() }).strict().meta({ examples: [{ outcome: 'reconnected', note: 'relay closed by hand, supply checked' }] }),
      response: { 200: z.object({ workOrder: WorkOrderView, order: z.unknown().describe('The settled switch order; null for an inspection') }), 401: ErrorView, 403: ErrorView, 404: ErrorView, 409: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'workorder:update'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const done = await deps.store.completeWorkOrder(req.params.workOrderId, req.body.outcome, req.body.note ?? null, req.principal!.clientId, now());
        return { status: 200, body: { workOrder: workOrderView(done.workOrder, now()), order: done.order ? orderView(done.order) : null } };
      });
    },
  });

  // ---- success rates and breakers (rule 16) ----
  const Rate = z.object({ windowMinutes: z.number(), scope: z.enum(['profile', 'link', 'region']), key: z.string(), action: z.enum(ORDER_ACTIONS), kind: z.enum(['attempt', 'first_attempt', 'final']), ok: z.number(), total: z.number(), rate: z.number(), failingMeters: z.number().int().describe('Distinct meters whose attempts or orders failed in the window') });
  r.get('/v1/stats/success-rates', {
    schema: {
      summary: 'Rolling success rates of remote disconnect and reconnect per profile, link and region (per attempt, first attempt, final)',
      tags: ['stats'],
      querystring: z.object({ fresh: z.enum(['true', 'false']).default('false').describe('Evaluate now instead of returning the last evaluation') }),
      response: { 200: z.object({ at: z.string(), alertBelow: z.number(), minSamples: z.number(), breakerBelow: z.number(), rates: z.array(Rate), alerting: z.array(Rate) }), 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'stats:read'),
    handler: async (req) => {
      const report = req.query.fresh === 'true' || deps.successRates.latest().at === 0 ? await deps.successRates.evaluate() : deps.successRates.latest();
      return { ...report, ...deps.successRateThresholds, at: new Date(report.at).toISOString() };
    },
  });

  const Breaker = z.object({ id: z.string(), scope: z.string(), key: z.string(), action: z.string(), openedAt: z.string(), reason: z.string(), resetAt: z.string().nullable(), resetBy: z.string().nullable() });
  const breakerView = (b: { id: string; scope: string; key: string; action: string; openedAt: number; reason: string; resetAt: number | null; resetBy: string | null }) => ({ ...b, openedAt: iso(b.openedAt)!, resetAt: iso(b.resetAt) });
  r.get('/v1/stats/breakers', {
    schema: {
      summary: 'Disconnect circuit breakers (open ones stop new disconnects for their population)',
      tags: ['stats'],
      querystring: z.object({ open: z.enum(['true', 'false']).default('true') }),
      response: { 200: z.object({ items: z.array(Breaker) }), 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'stats:read'),
    handler: async (req) => ({ items: (await deps.store.listBreakers(req.query.open === 'true')).map(breakerView) }),
  });
  r.post('/v1/stats/breakers/:breakerId/reset', {
    schema: {
      summary: 'Reset a breaker once the cause is fixed; held disconnects resume by themselves',
      tags: ['stats'],
      params: z.object({ breakerId: z.string() }),
      headers: IdempotencyHeaders,
      response: { 200: Breaker, 401: ErrorView, 403: ErrorView, 404: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'breaker:reset'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const b = await deps.store.resetBreaker(req.params.breakerId, req.principal!.clientId, now());
        if (!b) throw new MeterlineError('E_BREAKER_NOT_FOUND', `breaker ${req.params.breakerId} does not exist`);
        deps.controller.wake();
        return { status: 200, body: breakerView(b) };
      });
    },
  });
}
