import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { LIMIT_W_MAX, ORDER_STATES } from '../../domain/switch-order.js';
import { MeterlineError } from '../../errors.js';
import type { PlanView as StoredPlan } from '../../store/store.js';
import { requirePermission } from '../auth.js';
import { bulkBodyLimit } from '../request-body.js';
import type { ApiDeps } from '../deps.js';
import { idempotentWrite } from '../idempotent-write.js';
import { requireLoadLimiters } from '../limit-admission.js';
import { ErrorView, IdempotencyHeaders } from '../schemas.js';

/**
 * Disconnect plans, maker–checker (DOMAIN.md rule 7; seed 004 §2.2: every disconnect for arrears is reported in a
 * plan and run centrally). Drafted by an operator or the billing system, approved by a supervisor who is not the
 * author; the gateway then runs each disconnect inside the window, caps and rules and reports per meter.
 */
const iso = z.iso.datetime({ offset: true });
export const PLAN_LIMIT = 10_000;
/** One meter id in a plan's list: at most 64 characters, its quotes, a comma and some indentation. */
export const PLAN_METER_BYTES = 80;

const PlanBody = z
  .object({
    reason: z.enum(['arrears', 'credit_exhausted']).describe('arrears; credit_exhausted is refused (403 E_CREDIT_CUTOFF_RESERVED): credit cut-offs come only from the gateway’s own credit control'),
    limitW: z
      .number()
      .int()
      .min(1)
      .max(LIMIT_W_MAX)
      .optional()
      .describe('A limiting plan (DOMAIN.md rule 10): once approved, each meter gets a limit order of this many watts for arrears instead of a disconnect. Every meter’s profile must have a load limiter (409 E_NO_LOAD_LIMITER otherwise)'),
    windowFrom: iso,
    windowTo: iso,
    meters: z.array(z.string().min(1).max(64)).min(1).max(PLAN_LIMIT),
    note: z.string().max(500).optional(),
  })
  .strict()
  .meta({ examples: [{ reason: 'arrears', windowFrom: '2026-11-24T08:00:00Z', windowTo: '2026-11-27T16:00:00Z', meters: ['SIM-000002', 'SIM-000003'], note: 'November arrears run' }] });

const PlanView = z.object({
  id: z.string(),
  status: z.enum(['draft', 'approved', 'rejected', 'cancelled']),
  reason: z.enum(['arrears', 'credit_exhausted']),
  action: z.enum(['disconnect', 'limit']).describe('What the plan orders for each meter: a disconnect, or (limitW) a demand limit'),
  limitW: z.number().int().nullable(),
  note: z.string().nullable(),
  author: z.string(),
  createdAt: z.string(),
  windowFrom: z.string(),
  windowTo: z.string(),
  decidedBy: z.string().nullable(),
  decidedAt: z.string().nullable(),
  summary: z.record(z.string(), z.number()).describe('Meters per order state'),
  items: z.array(z.object({ meterId: z.string(), orderId: z.string().nullable(), state: z.enum(ORDER_STATES).nullable(), why: z.string().nullable() })),
});

const PlanIdParam = z.object({ planId: z.string().min(1).max(64) });
const iso0 = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

function view(p: StoredPlan): z.infer<typeof PlanView> {
  const summary: Record<string, number> = {};
  for (const i of p.items) summary[i.state ?? 'not_created'] = (summary[i.state ?? 'not_created'] ?? 0) + 1;
  return {
    id: p.id,
    status: p.status,
    reason: p.reason,
    action: p.limitW === null ? 'disconnect' : 'limit',
    limitW: p.limitW,
    note: p.note,
    author: p.author,
    createdAt: new Date(p.createdAt).toISOString(),
    windowFrom: new Date(p.windowFrom).toISOString(),
    windowTo: new Date(p.windowTo).toISOString(),
    decidedBy: p.decidedBy,
    decidedAt: iso0(p.decidedAt),
    summary,
    items: p.items.map((i) => ({ meterId: i.meterId, orderId: i.orderId, state: i.state, why: i.stateReason })),
  };
}

export async function planRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const ctx = () => deps.submitContext();

  r.post('/v1/plans', {
    bodyLimit: bulkBodyLimit(PLAN_LIMIT, PLAN_METER_BYTES),
    schema: {
      summary: 'Draft a disconnect plan (a list of meters and a window)',
      tags: ['plans'],
      headers: IdempotencyHeaders,
      body: PlanBody,
      response: { 201: PlanView, 400: ErrorView, 401: ErrorView, 403: ErrorView, 404: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'plan:draft'),
    handler: async (req, reply) => {
      if (req.body.reason === 'credit_exhausted') {
        throw new MeterlineError('E_CREDIT_CUTOFF_RESERVED', 'a plan cannot cut customers off for credit: credit cut-offs come only from the gateway’s own credit control, while the meter’s ledger shows no credit (DOMAIN.md rule 8)');
      }
      if (req.body.limitW !== undefined) await requireLoadLimiters(deps, req.body.meters);
      await idempotentWrite(deps.store, req, reply, ctx().now, async () => {
        const plan = await deps.store.createPlan(
          { reason: req.body.reason, limitW: req.body.limitW ?? null, note: req.body.note ?? null, windowFrom: Date.parse(req.body.windowFrom), windowTo: Date.parse(req.body.windowTo), meterIds: req.body.meters },
          req.principal!.clientId,
          ctx().now,
        );
        return { status: 201, body: view(plan) };
      });
    },
  });

  r.get('/v1/plans', {
    schema: {
      summary: 'Plans, newest first',
      tags: ['plans'],
      querystring: z.object({ status: z.enum(['draft', 'approved', 'rejected', 'cancelled']).optional() }),
      response: { 200: z.object({ items: z.array(PlanView) }), 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'plan:read'),
    handler: async (req) => ({ items: (await deps.store.listPlans(req.query.status)).map(view) }),
  });

  r.get('/v1/plans/:planId', {
    schema: { summary: 'A plan and, per meter, what happened and why', tags: ['plans'], params: PlanIdParam, response: { 200: PlanView, 401: ErrorView, 404: ErrorView }, security: [{ bearerAuth: [] }] },
    onRequest: requirePermission(deps.keys, 'plan:read'),
    handler: async (req) => {
      const plan = await deps.store.getPlan(req.params.planId);
      if (!plan) throw new MeterlineError('E_PLAN_NOT_FOUND', `plan ${req.params.planId} does not exist`);
      return view(plan);
    },
  });

  const decision = (verb: 'approve' | 'reject' | 'cancel', permission: 'plan:approve' | 'plan:cancel', summary: string) =>
    r.post(`/v1/plans/:planId/${verb}`, {
      schema: { summary, tags: ['plans'], params: PlanIdParam, headers: IdempotencyHeaders, response: { 200: PlanView, 401: ErrorView, 403: ErrorView, 404: ErrorView, 409: ErrorView }, security: [{ bearerAuth: [] }] },
      onRequest: requirePermission(deps.keys, permission),
      handler: async (req, reply) => {
        await idempotentWrite(deps.store, req, reply, ctx().now, async () => {
          const plan = await deps.store.decidePlan(req.params.planId, verb, req.principal!.clientId, ctx());
          deps.controller.wake();
          return { status: 200, body: view(plan) };
        });
      },
    });
  decision('approve', 'plan:approve', 'Approve a draft plan (a supervisor who is not its author); its disconnect orders are created');
  decision('reject', 'plan:approve', 'Reject a draft plan (a supervisor who is not its author)');
  decision('cancel', 'plan:cancel', 'Cancel a plan: its orders not yet on the wire are cancelled');
}
