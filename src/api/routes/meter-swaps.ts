import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { MeterlineError } from '../../errors.js';
import type { MeterSwap } from '../../store/store.js';
import { requirePermission } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { idempotentWrite } from '../idempotent-write.js';
import { ErrorView, IdempotencyHeaders, MeterIdParam } from '../schemas.js';

/**
 * Meter swaps as facts (DOMAIN.md rule 20): a replaced meter (or register) restarts its energy count, so readings
 * before the swap are never compared with readings after it, neither by the abnormal-consumption check nor by
 * prepayment credit control. A register that goes down with no swap recorded is a register discontinuity.
 */
const SwapBody = z
  .object({
    at: z.iso.datetime({ offset: true }).optional().describe('When the meter was swapped (default: now)'),
    oldRegisterFinalWh: z.number().min(0).max(1e12).describe("The old register's final reading (Wh)"),
    newRegisterFirstWh: z.number().min(0).max(1e12).describe("The new register's first reading (Wh)"),
    newSerial: z.string().min(1).max(64).optional().describe("The new meter's serial number, if the meter itself was replaced"),
    reference: z.string().min(1).max(200).optional().describe('The field job or work order behind the swap'),
  })
  .strict()
  .meta({ examples: [{ at: '2026-11-25T10:30:00Z', oldRegisterFinalWh: 18_402_310, newRegisterFirstWh: 12, newSerial: 'EM340-2291745', reference: 'job 2026-7781' }] });

const SwapView = z.object({
  id: z.string(),
  meterId: z.string(),
  at: z.string(),
  oldRegisterFinalWh: z.number(),
  newRegisterFirstWh: z.number(),
  newSerial: z.string().nullable(),
  reference: z.string().nullable(),
  recordedBy: z.string(),
  recordedAt: z.string(),
});

const iso = (ms: number): string => new Date(ms).toISOString();
const swapView = (s: MeterSwap): z.infer<typeof SwapView> => ({
  id: s.id,
  meterId: s.meterId,
  at: iso(s.at),
  oldRegisterFinalWh: s.oldFinalWh,
  newRegisterFirstWh: s.newFirstWh,
  newSerial: s.newSerial,
  reference: s.reference,
  recordedBy: s.recordedBy,
  recordedAt: iso(s.recordedAt),
});

export async function meterSwapRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const now = () => deps.submitContext().now;

  r.post('/v1/meters/:meterId/swaps', {
    schema: {
      summary: 'Record a meter swap: the consumption baseline restarts from the new register (audited)',
      tags: ['meters'],
      params: MeterIdParam,
      headers: IdempotencyHeaders,
      body: SwapBody,
      response: { 201: SwapView, 400: ErrorView, 401: ErrorView, 403: ErrorView, 404: ErrorView, 409: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'meter:write'),
    handler: async (req, reply) => {
      await idempotentWrite(deps.store, req, reply, now(), async () => {
        const at = req.body.at === undefined ? now() : Date.parse(req.body.at);
        if (at > now()) throw new MeterlineError('E_VALIDATION', `the swap time ${req.body.at} is in the future; record a swap once it has happened`);
        const swap = await deps.store.recordMeterSwap(
          {
            meterId: req.params.meterId,
            at,
            oldFinalWh: req.body.oldRegisterFinalWh,
            newFirstWh: req.body.newRegisterFirstWh,
            newSerial: req.body.newSerial ?? null,
            reference: req.body.reference ?? null,
            recordedBy: req.principal!.clientId,
          },
          now(),
        );
        await deps.credit?.onMeterSwap(swap.meterId, swap);
        return { status: 201, body: swapView(swap) };
      });
    },
  });

  r.get('/v1/meters/:meterId/swaps', {
    schema: {
      summary: "A meter's recorded swaps, oldest first",
      tags: ['meters'],
      params: MeterIdParam,
      response: { 200: z.object({ meterId: z.string(), items: z.array(SwapView) }), 401: ErrorView, 404: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'meter:read'),
    handler: async (req) => {
      const { meterId } = req.params;
      if (!(await deps.store.getMeter(meterId))) throw new MeterlineError('E_METER_NOT_FOUND', `meter ${meterId} is not registered`);
      return { meterId, items: (await deps.store.listMeterSwaps(meterId, 100)).map(swapView) };
    },
  });
}
