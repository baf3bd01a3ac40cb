import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { supplyStatus, SUPPLY_WORDS } from '../../domain/supply-status.js';
import { orderStepWords } from '../../domain/switch-order.js';
import { MeterlineError } from '../../errors.js';
import type { AlertEpisode, GatewayStore } from '../../store/store.js';
import { requirePermission } from '../auth.js';
import type { ApiDeps } from '../deps.js';
import { ErrorView, MeterIdParam } from '../schemas.js';

/**
 * For the call centre and billing (DOMAIN.md rules 18, 19): a meter's timeline (orders step by step, attempts,
 * notices, notifications, readings, alerts, audit) and the one-word answer to "why is this customer off supply?".
 */
const TimelineItem = z.object({
  at: z.string(),
  kind: z.enum(['order', 'attempt', 'notice', 'notification', 'reading', 'audit', 'alert']),
  summary: z.string(),
  orderId: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
});

/** One alert episode as the call centre sees it: what, how much (Wh/h), over which period. */
const AlertView = z.object({
  kind: z.string().describe('consumption_excessive, consumption_continuous, register_discontinuity, relay_audit_<exception>'),
  whPerHour: z.number().nullable().describe('The rate behind a consumption alert (excessive: the peak; continuous: the lowest)'),
  from: z.string(),
  to: z.string(),
  alertedAt: z.string(),
  endedAt: z.string().nullable(),
  message: z.string(),
  episodeId: z.string(),
  workOrderId: z.string().nullable(),
});

const SupplyView = z.object({
  meterId: z.string(),
  status: z.enum(SUPPLY_WORDS),
  sentence: z.string(),
  orderId: z.string().nullable(),
  since: z.string().nullable(),
  observed: z.object({ relay: z.string(), at: z.string(), voltageV: z.number().nullable(), source: z.string() }).nullable(),
  liveRead: z.enum(['ok', 'failed', 'auth_failed', 'not_tried']).describe("auth_failed: the meter answered but refused the gateway's credentials (a key matter, not a dead meter)"),
  liveReadDetail: z.string().nullable(),
  consumptionAlerts: z.array(AlertView).describe('The latest abnormal-consumption alerts (rule 20), newest first'),
});

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));
/** Consumption alerts shown with the supply answer. */
const SUPPLY_CONSUMPTION_ALERTS = 5;

const alertView = (e: AlertEpisode): z.infer<typeof AlertView> => ({
  kind: e.kind,
  whPerHour: e.whPerHour,
  from: iso(e.from),
  to: iso(e.to),
  alertedAt: iso(e.openedAt),
  endedAt: isoOrNull(e.endedAt),
  message: e.message,
  episodeId: e.id,
  workOrderId: e.workOrderId,
});

/** The meter's open reconnect that went to the field because its close was refused for a live load side (rule 14). */
async function loadSideRefusal(store: GatewayStore, meterId: string): Promise<{ orderId: string; at: number; detail: string | null } | null> {
  for (const o of await store.openOrdersForMeter(meterId)) {
    if (o.action !== 'reconnect' || o.state !== 'escalated') continue;
    const last = (await store.listAttempts(o.id)).at(-1);
    if (last?.outcome === 'load_side_voltage') return { orderId: o.id, at: last.endedAt ?? last.startedAt, detail: last.detail };
  }
  return null;
}

export async function meterHistoryRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get('/v1/meters/:meterId/timeline', {
    schema: {
      summary: "A meter's history in time order: orders step by step, attempts, notices, notifications, readings, alerts (kind, rate, period), audit",
      tags: ['meters'],
      params: MeterIdParam,
      querystring: z.object({ limit: z.coerce.number().int().min(1).max(5000).default(500) }),
      response: { 200: z.object({ meterId: z.string(), items: z.array(TimelineItem) }), 401: ErrorView, 404: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'meter:read'),
    handler: async (req) => {
      const { meterId } = req.params;
      const { store } = deps;
      if (!(await store.getMeter(meterId))) throw new MeterlineError('E_METER_NOT_FOUND', `meter ${meterId} is not registered`);
      const items: { at: number; kind: z.infer<typeof TimelineItem>['kind']; summary: string; orderId: string | null; details: Record<string, unknown> }[] = [];
      const orders = await store.listOrders({ meterId, limit: 200 });
      for (const o of orders) {
        for (const e of await store.listOrderEvents(o.id)) {
          items.push({ at: e.at, kind: 'order', orderId: o.id, summary: `${orderStepWords(o, e.from, e.to)}${e.reason ? `: ${e.reason}` : ''}`, details: { action: o.action, ...(o.action === 'limit' ? { limitW: o.limitW } : {}), reason: o.reason, requestedBy: o.requestedBy, from: e.from, to: e.to } });
        }
        for (const a of await store.listAttempts(o.id)) {
          items.push({
            at: a.startedAt,
            kind: 'attempt',
            orderId: o.id,
            // A close refused for a live load side says what was seen there (the voltage), not only the outcome word.
            summary: `attempt ${a.attempt} of ${o.action}: ${a.outcome ?? 'on the wire'}${a.observedRelay ? `, read back ${a.observedRelay}` : ''}${a.outcome === 'load_side_voltage' && a.detail ? ` (${a.detail})` : ''}`,
            details: { attempt: a.attempt, outcome: a.outcome, latencyMs: a.latencyMs, observedRelay: a.observedRelay, detail: a.detail },
          });
        }
      }
      for (const n of await store.listNotices(meterId)) {
        items.push({ at: n.servedAt, kind: 'notice', orderId: null, summary: `notice by ${n.channel}, ${n.delivery}`, details: { channel: n.channel, delivery: n.delivery, receiptRef: n.receiptRef, recordedBy: n.recordedBy } });
      }
      for (const n of await store.listNotifications(meterId)) {
        items.push({ at: n.createdAt, kind: 'notification', orderId: n.orderId, summary: `${n.kind.replaceAll('_', ' ')} ${n.deliveredAt ? 'delivered' : 'recorded, not yet delivered'}`, details: { kind: n.kind, deliveredAt: n.deliveredAt, attempts: n.attempts, lastError: n.lastError } });
      }
      for (const o of await store.listObservations(meterId, 200)) {
        items.push({ at: o.at, kind: 'reading', orderId: null, summary: `relay ${o.relay}${o.voltageV !== undefined ? `, ${o.voltageV} V` : ''} (${o.source})`, details: { relay: o.relay, voltageV: o.voltageV ?? null, energyWh: o.energyWh ?? null, source: o.source } });
      }
      for (const e of await store.listEpisodes({ meterId, limit: 200 })) {
        const rate = e.whPerHour === null ? '' : `, ${Math.round(e.whPerHour * 10) / 10} Wh/h`;
        items.push({
          at: e.openedAt,
          kind: 'alert',
          orderId: null,
          summary: `${e.kind.replaceAll('_', ' ')}${rate}, ${iso(e.from)} to ${iso(e.to)}${e.endedAt !== null ? ` (over by ${iso(e.endedAt)})` : ''}: ${e.message}`,
          details: alertView(e),
        });
      }
      for (const a of await store.listAudit({ target: meterId, limit: 500 })) {
        items.push({ at: a.at, kind: 'audit', orderId: null, summary: `${a.actor}: ${a.action}`, details: { actor: a.actor, action: a.action, details: a.details } });
      }
      items.sort((x, y) => x.at - y.at);
      return { meterId, items: items.slice(-req.query.limit).map((i) => ({ ...i, at: iso(i.at) })) };
    },
  });

  r.get('/v1/meters/:meterId/supply', {
    schema: {
      summary: 'Why is this customer off supply? One word and a sentence',
      description:
        'disconnected_by_order (which order, when, why, who), reconnect_refused_load_side (our reconnect was refused for voltage on the load side: a bypass, a backfeed or tampering; not closed, crew sent), armed_waiting_for_customer (armed by our reconnect), supply_fault (relay closed, no voltage), on_supply, unknown (not answering since …, or answering but refusing the gateway’s credentials: liveRead auth_failed); and three a person should look at, the same the daily relay audit raises: disconnected_without_order (relay open, or armed, with no order of ours), on_supply_against_order (relay closed while our disconnect says it should be open: a bypass), armed_against_order (armed while our disconnect says it should be open). With the latest abnormal-consumption alerts (kind, rate, period). With refresh=true (the default) the meter is read live first, unless an order attempt is on the wire to it.',
      tags: ['meters'],
      params: MeterIdParam,
      querystring: z.object({ refresh: z.enum(['true', 'false']).default('true') }),
      response: { 200: SupplyView, 401: ErrorView, 404: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'meter:read'),
    handler: async (req) => {
      const { meterId } = req.params;
      if (!(await deps.store.getMeter(meterId))) throw new MeterlineError('E_METER_NOT_FOUND', `meter ${meterId} is not registered`);
      let liveRead: 'ok' | 'failed' | 'auth_failed' | 'not_tried' = 'not_tried';
      let liveReadDetail: string | null = null;
      if (req.query.refresh === 'true') {
        const read = await deps.controller.readNow(meterId);
        liveRead = read.ok ? 'ok' : read.cause === 'busy' ? 'not_tried' : read.cause === 'auth_failed' ? 'auth_failed' : 'failed';
        liveReadDetail = read.ok ? null : read.detail;
      }
      const meter = (await deps.store.getMeter(meterId))!;
      // The same facts the relay audit judges, so the answer and the audit agree.
      const facts = (await deps.store.relayAuditFacts([meterId])).get(meterId)!;
      const answer = supplyStatus({
        now: deps.submitContext().now,
        observed: meter.observed ? { relay: meter.observed.relay, at: meter.observed.at, voltageV: meter.observed.voltageV } : null,
        liveRead,
        orders: { desiredRelay: meter.desiredRelay, hasOpenOrder: facts.hasOpenOrder, lastDisconnectDone: facts.lastDisconnectDone, armedSince: facts.armedSince },
        lastDisconnect: await deps.store.lastCompletedOrder(meterId, 'disconnect'),
        lastReconnect: await deps.store.lastCompletedOrder(meterId, 'reconnect'),
        loadSideRefusal: await loadSideRefusal(deps.store, meterId),
        ...deps.supply,
      });
      return {
        meterId,
        ...answer,
        since: answer.since === null ? null : iso(answer.since),
        observed: meter.observed ? { relay: meter.observed.relay, at: iso(meter.observed.at), voltageV: meter.observed.voltageV, source: meter.observed.source } : null,
        liveRead,
        liveReadDetail,
        consumptionAlerts: (await deps.store.listEpisodes({ meterId, kindPrefix: 'consumption_', limit: SUPPLY_CONSUMPTION_ALERTS })).map(alertView),
      };
    },
  });
}
