import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { DISCONNECT_REASONS, isTerminal, type SwitchOrder } from '../../domain/switch-order.js';
import { MeterlineError } from '../../errors.js';
import type { MeterView as StoredMeter } from '../../store/store.js';
import { PERMISSIONS, ROLES, checksPermission, requireAnyKey, requirePermission, usableDisconnectReasons, type Permission, type Role } from '../auth.js';
import type { ApiDeps, LiveClientDropReason } from '../deps.js';
import { ErrorView } from '../schemas.js';
import { orderView } from '../views.js';

/**
 * What the console and the CLI watch live:
 * - `GET /v1/whoami`: the caller's key name, role and permissions (the console hides what the role may not do);
 * - `GET /v1/events`: server-sent events fed by `deps.events` ('order' after every change): `orders` (the latest
 *   view of every order that changed in the last 250 ms) and `stats` (queue by state and finished orders per
 *   minute, every 2 s and at once on connect). The key goes in `Authorization: Bearer` (the console and the CLI
 *   read the stream with fetch); for EventSource, which cannot send headers, `?key=` is accepted on this route only.
 *   A client that stops reading is cut off (see `Client`), so a stalled reader costs a bounded amount of memory;
 * - `GET /v1/fleet`: how many registered meters are connected, disconnected, armed or never read, and the first
 *   5,000 of them by id.
 */

const BATCH_MS = 250;
const STATS_EVERY_MS = 2_000;
const HEARTBEAT_MS = 15_000;
/** At most this many orders per `orders` event: a 10,000-order bulk goes out as several writes, not one of 7 MB. */
const ORDERS_PER_EVENT = 200;
/** A stall is judged over at least this many flushes, so one long event-loop pause (the drain not yet seen) is not one. */
const STALL_MIN_FLUSHES = 3;
/** Meters listed per fleet request; counts cover every meter. */
const FLEET_LIST_LIMIT = 5_000;

const WhoAmI = z.object({
  clientId: z.string().describe('The client this key acts as: what the gateway records as who did something (requestedBy, author, actor)'),
  name: z.string().describe('The client’s label'),
  role: z.enum(ROLES),
  permissions: z.array(z.string()),
  disconnectReasons: z.array(z.enum(DISCONNECT_REASONS)).describe('The disconnect reasons this key may use on a direct order under the current policy (README "Disconnect safety"); the console and CLI offer only these'),
});
const RELAY_BUCKETS = ['connected', 'disconnected', 'armed', 'unknown'] as const;
const FleetMeter = z.object({
  meterId: z.string(),
  region: z.string(),
  link: z.string(),
  profileId: z.string(),
  relay: z.enum(RELAY_BUCKETS),
  observedAt: z.string().nullable(),
  voltageV: z.number().nullable(),
  desiredRelay: z.enum(['connected', 'disconnected']).nullable(),
});
const FleetView = z.object({
  total: z.number().int(),
  byRelay: z.record(z.enum(RELAY_BUCKETS), z.number().int()),
  listed: z.number().int().describe(`Meters in \`meters\` (the first ${FLEET_LIST_LIMIT} by id; counts cover all)`),
  meters: z.array(FleetMeter),
});

export function permissionsOf(role: Role): Permission[] {
  return (Object.keys(PERMISSIONS) as Permission[]).filter((p) => (PERMISSIONS[p] as readonly Role[]).includes(role));
}

/** Finished orders over the last minutes, counted from the live order events since the gateway started. */
class Throughput {
  private readonly finishedAt: number[] = [];
  private readonly seen = new Set<string>();
  readonly since = Date.now();

  record(order: SwitchOrder, now: number): void {
    if (!isTerminal(order.state) || this.seen.has(order.id)) return;
    this.seen.add(order.id);
    this.finishedAt.push(now);
    this.trim(now);
  }

  counts(now: number): { last1m: number; last5m: number; last15m: number } {
    this.trim(now);
    const within = (ms: number) => this.finishedAt.filter((t) => t >= now - ms).length;
    return { last1m: within(60_000), last5m: within(300_000), last15m: this.finishedAt.length };
  }

  private trim(now: number): void {
    while (this.finishedAt.length > 0 && this.finishedAt[0]! < now - 900_000) this.finishedAt.shift();
    // Ids are only needed while an order can still be reported twice (a replayed submit); keep the set bounded.
    if (this.seen.size > 200_000) this.seen.clear();
  }
}

/**
 * One live-event stream. What the gateway holds for it is bounded: the socket is written only while it takes more
 * (`write()` returned true, or 'drain' came), so Node buffers at most one event beyond its high-water mark; orders that
 * change meanwhile wait in `pending`, one entry per order (the latest view), and at most the latest `stats`. A client
 * whose socket takes nothing for `liveEvents.stallMs`, or with more than `liveEvents.maxPendingOrders` orders waiting,
 * has fallen behind: its socket is destroyed (reset, so the kernel drops what was queued too, rather than `end()`,
 * which would wait for it to read) and the drop is counted (`meterline_sse_clients_dropped_total`).
 */
interface Client {
  res: ServerResponse;
  meterId: string | undefined;
  pending: Map<string, SwitchOrder>;
  stats: unknown;
  heartbeatDue: boolean;
  /** When the socket last refused more (write() returned false) without draining since; null while it keeps up. */
  blockedSince: number | null;
  /** Flushes seen while blocked. */
  blockedFlushes: number;
}

export async function liveRoutes(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const clients = new Set<Client>();
  const throughput = new Throughput();

  const { stallMs, maxPendingOrders, onClientDropped, onClientCount } = deps.liveEvents;
  /** Tells how many clients are connected now (`meterline_sse_clients`) after each change. */
  const counted = (): void => onClientCount?.(clients.size);

  const drop = (c: Client, reason: LiveClientDropReason): void => {
    if (!clients.delete(c)) return;
    counted();
    onClientDropped?.(reason);
    app.log.warn({ reason, meterId: c.meterId, pendingOrders: c.pending.size, bufferedBytes: c.res.writableLength }, 'live-event client fell behind; its connection is reset');
    c.pending.clear();
    c.stats = null;
    const socket = c.res.socket;
    if (socket) socket.resetAndDestroy();
    else c.res.destroy();
  };

  /** The next event for `c`, or null when nothing waits: stats first (small, latest only), then orders, then a heartbeat. */
  const nextChunk = (c: Client): string | null => {
    if (c.stats !== null) {
      const data = c.stats;
      c.stats = null;
      return `event: stats\ndata: ${JSON.stringify(data)}\n\n`;
    }
    if (c.pending.size > 0) {
      const batch: ReturnType<typeof orderView>[] = [];
      for (const [id, order] of c.pending) {
        c.pending.delete(id);
        batch.push(orderView(order));
        if (batch.length >= ORDERS_PER_EVENT) break;
      }
      return `event: orders\ndata: ${JSON.stringify(batch)}\n\n`;
    }
    if (c.heartbeatDue) {
      c.heartbeatDue = false;
      return ': keep-alive\n\n';
    }
    return null;
  };

  /** Write to `c` while its socket takes more; stop at the first refusal and go on at 'drain'. */
  const pump = (c: Client): void => {
    while (c.blockedSince === null && clients.has(c)) {
      const chunk = nextChunk(c);
      if (chunk === null) return;
      if (!c.res.write(chunk)) {
        c.blockedSince = Date.now();
        c.blockedFlushes = 0;
        c.res.once('drain', () => {
          c.blockedSince = null;
          pump(c);
        });
      }
    }
  };

  const onOrder = (order: SwitchOrder): void => {
    throughput.record(order, Date.now());
    for (const c of clients) if (c.meterId === undefined || c.meterId === order.meterId) c.pending.set(order.id, order);
  };
  deps.events.on('order', onOrder);

  const stats = async () => ({
    at: new Date().toISOString(),
    queue: await deps.store.countOrdersByState(),
    inFlightByLink: deps.controller.inFlightByLink(),
    finished: throughput.counts(Date.now()),
    countingSince: new Date(throughput.since).toISOString(),
  });

  const flush = setInterval(() => {
    const now = Date.now();
    for (const c of clients) {
      if (c.pending.size > maxPendingOrders) {
        drop(c, 'backlog');
      } else if (c.blockedSince !== null) {
        c.blockedFlushes += 1;
        if (now - c.blockedSince >= stallMs && c.blockedFlushes >= STALL_MIN_FLUSHES) drop(c, 'stalled');
      } else {
        pump(c);
      }
    }
  }, BATCH_MS);
  const tick = setInterval(() => {
    if (clients.size === 0) return;
    stats()
      .then((s) => {
        for (const c of clients) {
          c.stats = s;
          pump(c);
        }
      })
      .catch((err: unknown) => app.log.error({ err }, 'live stats failed'));
  }, STATS_EVERY_MS);
  const heartbeat = setInterval(() => {
    for (const c of clients) {
      c.heartbeatDue = true;
      pump(c);
    }
  }, HEARTBEAT_MS);
  flush.unref();
  tick.unref();
  heartbeat.unref();

  // Open streams would keep the server from closing: end them first (a stalled one could never finish: destroy it).
  app.addHook('preClose', async () => {
    for (const c of clients) {
      if (c.blockedSince === null) c.res.end();
      else c.res.destroy();
    }
    clients.clear();
    counted();
  });
  app.addHook('onClose', async () => {
    clearInterval(flush);
    clearInterval(tick);
    clearInterval(heartbeat);
    deps.events.off('order', onOrder);
  });

  /** `onRequest` of `/v1/events`: the header, or `?key=` for EventSource (the query is parsed, not yet validated, here). */
  const authenticateStream = checksPermission('order:read', async (req: FastifyRequest): Promise<void> => {
    const queryKey = (req.query as Record<string, unknown> | undefined)?.key;
    const header = req.headers.authorization ?? (typeof queryKey === 'string' && queryKey !== '' ? `Bearer ${queryKey}` : undefined);
    const principal = await deps.keys.authenticate(header);
    if (!(PERMISSIONS['order:read'] as readonly Role[]).includes(principal.role)) {
      throw new MeterlineError('E_FORBIDDEN', `the ${principal.role} role may not read orders`);
    }
    req.principal = principal;
  });

  r.get('/v1/whoami', {
    schema: {
      summary: 'The API key in use: its client (id and label), role and what that role may do',
      tags: ['keys'],
      response: { 200: WhoAmI, 401: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requireAnyKey(deps.keys),
    handler: async (req) => {
      const principal = req.principal!;
      return { clientId: principal.clientId, name: principal.name, role: principal.role, permissions: permissionsOf(principal.role), disconnectReasons: usableDisconnectReasons(principal.role, deps.submitContext().policy) };
    },
  });

  r.get('/v1/events', {
    schema: {
      summary: 'Live order changes and queue statistics (server-sent events)',
      description:
        'text/event-stream. `event: orders` carries a JSON array of order views (the latest state of each order that changed in the last 250 ms; at most 200 per event, more follow at once); `event: stats` carries {at, queue, inFlightByLink, finished: {last1m, last5m, last15m}, countingSince}, at once and every 2 s. Send the key as `Authorization: Bearer`; EventSource clients, which cannot send headers, may pass `?key=` instead (on this route only; prefer the header, since URLs end up in proxy logs). Events are written as fast as the client reads them; a client that stops reading (nothing taken for `api.liveEvents.stallMs`) is cut off and should reconnect.',
      tags: ['switching'],
      querystring: z.object({ meterId: z.string().max(64).optional().describe('Only this meter’s orders'), key: z.string().max(200).optional() }),
      security: [{ bearerAuth: [] }],
    },
    onRequest: authenticateStream,
    handler: async (req, reply) => {
      const initial = await stats();
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-store',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-request-id': req.id,
      });
      const client: Client = { res, meterId: req.query.meterId, pending: new Map(), stats: initial, heartbeatDue: false, blockedSince: null, blockedFlushes: 0 };
      clients.add(client);
      counted();
      res.write('retry: 2000\n\n');
      pump(client);
      const gone = () => {
        if (clients.delete(client)) counted();
      };
      res.on('close', gone);
      res.on('error', gone);
    },
  });

  r.get('/v1/fleet', {
    schema: {
      summary: 'Registered meters by relay state (the console overview)',
      tags: ['meters'],
      response: { 200: FleetView, 401: ErrorView, 403: ErrorView },
      security: [{ bearerAuth: [] }],
    },
    onRequest: requirePermission(deps.keys, 'meter:read'),
    handler: async () => {
      const byRelay: Record<(typeof RELAY_BUCKETS)[number], number> = { connected: 0, disconnected: 0, armed: 0, unknown: 0 };
      const view: z.infer<typeof FleetMeter>[] = [];
      let total = 0;
      for (let after: string | null = null; ; ) {
        const page: StoredMeter[] = await deps.store.listMeters(after, 1000);
        for (const m of page) {
          const relay = m.observed?.relay ?? 'unknown';
          byRelay[relay] += 1;
          total += 1;
          if (view.length >= FLEET_LIST_LIMIT) continue;
          view.push({
            meterId: m.meterId,
            region: m.region,
            link: m.link,
            profileId: m.profileId,
            relay,
            observedAt: m.observed ? new Date(m.observed.at).toISOString() : null,
            voltageV: m.observed?.voltageV ?? null,
            desiredRelay: m.desiredRelay,
          });
        }
        if (page.length < 1000) break;
        after = page[page.length - 1]!.meterId;
      }
      return { total, byRelay, listed: view.length, meters: view };
    },
  });
}
