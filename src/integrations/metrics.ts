import type { Logger } from 'pino';
import type { OrderAction } from '../domain/relay.js';
import { OPEN_ORDER_STATES, type OpenOrderState } from '../domain/switch-order.js';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { LinkCounters, LinkHealth } from '../../drivers/driver.js';

/**
 * Prometheus metrics for `/metrics` (DESIGN.md §4): counters and a latency histogram the control loop
 * increments as things happen, and gauges computed at scrape time from the store through `providers`, so that
 * what Prometheus sees is what the store says now, not a copy that can drift. One dedicated `Registry` (never
 * prom-client's global one): two gateways in one process (tests) do not share or clash over metrics.
 *
 * `METRICS_TABLE` lists every metric with its meaning; the README table is generated from it and a test checks
 * it against what the registry exposes.
 */

export type SuccessRateScope = 'profile' | 'link' | 'region';

/** One rolling rate over one window (SuccessRateMonitor computes several: each is its own series, label `window`). */
export interface SuccessRateSample {
  scope: SuccessRateScope;
  /** The window's length in minutes; the label is `15m`, `60m`, … */
  windowMinutes: number;
  key: string;
  action: OrderAction;
  /** `attempt`: per try on the wire; `first_attempt`: orders done at the first try; `final`: orders done remotely at all. */
  kind: 'attempt' | 'first_attempt' | 'final';
  /** 0..1 */
  rate: number;
  samples: number;
}

export interface GatewayMetricsProviders {
  /** Open switch orders by state (only the states of OPEN_ORDER_STATES: a final state is never a queue). */
  queueDepth(): Promise<Partial<Record<OpenOrderState, number>>>;
  /** Field work orders by status. */
  workOrdersByStatus(): Promise<Record<string, number>>;
  /** Seconds until the reconnect deadline of the most urgent open reconnect (negative: overdue); null: none open. */
  mostUrgentReconnectSecondsLeft(): Promise<number | null>;
  successRates(): Promise<SuccessRateSample[]>;
  openCircuitBreakers(): Promise<number>;
  /** From `TimeSeriesWriter.stats()`. */
  timeSeries(): { dropped: number; buffered: number };
  /** Whether this instance holds the singleton duty (runs the one-per-cluster jobs). */
  singletonDutyHeld(): boolean;
  /**
   * What the DLMS push listener did since start (the driver's counters, which only grow): notifications delivered,
   * frames and connections dropped by reason. Undefined (or absent) without a push listener.
   */
  dlmsPush?(): { delivered: number; dropped: Readonly<Record<string, number>> } | undefined;
  /** Every link the drivers keep, with its state and counters (the drivers' counters, which only grow). */
  links?(): LinkHealth[];
  /** Whether the gateway's MQTT client is connected to its broker; undefined (or absent): no MQTT link. */
  brokerConnected?(): boolean | undefined;
  /** Seconds since the newest audit anchor was written; null: anchoring is off (no anchor file, no anchor log). */
  auditAnchorAgeSeconds?(): number | null;
  /**
   * Threads the SQLite store started again after its thread died (`SqliteWorkerStore.threadRestarts`, which only
   * grows); undefined (or absent): the store has no thread of its own (PostgreSQL, `store.sqlite.thread: main`).
   */
  sqliteThreadRestarts?(): number | undefined;
}

export interface MetricDescription {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'default';
  labels: string[];
  meaning: string;
}

const PREFIX = 'meterline_';

/**
 * Every metric `createGatewayMetrics` exposes. A name ending in `*` stands for the family of Node.js process
 * metrics that prom-client's `collectDefaultMetrics` adds (they change with prom-client versions), under their
 * standard names (no prefix), so that the usual Node.js dashboards work.
 */
export const METRICS_TABLE: readonly MetricDescription[] = [
  { name: 'meterline_switch_attempts_total', type: 'counter', labels: ['protocol', 'action', 'outcome'], meaning: 'Tries on the wire, by protocol, action (disconnect, reconnect, limit) and outcome (ok, timeout, nack, garbled, verify_mismatch, link_error, auth_failed, load_side_voltage, interrupted).' },
  { name: 'meterline_switch_attempt_duration_seconds', type: 'histogram', labels: ['protocol', 'action'], meaning: 'Time of one attempt from command sent to read-back judged.' },
  { name: 'meterline_orders_finished_total', type: 'counter', labels: ['action', 'state'], meaning: 'Switch orders that reached a final state (done, armed, failed, superseded, cancelled, refused, done_by_field…).' },
  { name: 'meterline_alerts_total', type: 'counter', labels: ['kind'], meaning: 'Alerts raised, each once (low success rate, circuit breaker opened, abnormal_consumption, register_discontinuity, relay_audit_* such as relay_audit_open_without_order…).' },
  { name: 'meterline_queue_depth', type: 'gauge', labels: ['state'], meaning: 'Open switch orders by state (accepted, held, queued, in_flight, escalated; 0 when none), as the store holds them at scrape time. Finished orders are in meterline_orders_finished_total.' },
  { name: 'meterline_work_orders', type: 'gauge', labels: ['status'], meaning: 'Field work orders by status (open, assigned, done, cancelled).' },
  { name: 'meterline_most_urgent_reconnect_remaining_seconds', type: 'gauge', labels: [], meaning: 'Seconds until the deadline of the most urgent open reconnect; negative when overdue, +Inf when none is open.' },
  { name: 'meterline_success_ratio', type: 'gauge', labels: ['scope', 'key', 'action', 'kind', 'window'], meaning: 'Rolling success ratio (0..1) of remote switching per firmware profile, link or region; kind attempt, first_attempt or final; one series per window the gateway computes (`successRates.windowMinutes`: window 15m and 60m by default).' },
  { name: 'meterline_success_samples', type: 'gauge', labels: ['scope', 'key', 'action', 'kind', 'window'], meaning: 'Tries or orders behind the matching meterline_success_ratio (a ratio over few samples is weak evidence).' },
  { name: 'meterline_circuit_breakers_open', type: 'gauge', labels: [], meaning: 'Populations whose new disconnects are stopped because their disconnect success collapsed.' },
  { name: 'meterline_timeseries_dropped_points_total', type: 'counter', labels: [], meaning: 'Points the time-series writer lost since start (database down or slow with a full buffer, refused batches).' },
  { name: 'meterline_timeseries_buffered_points', type: 'gauge', labels: [], meaning: 'Points waiting for the time-series database.' },
  { name: 'meterline_lease_takeovers_total', type: 'counter', labels: [], meaning: 'In-flight orders this instance took over (and verified by a read) after the lease of the instance that sent them ran out.' },
  { name: 'meterline_auth_failures_total', type: 'counter', labels: ['protocol', 'link'], meaning: "Requests a meter refused because of the gateway's credentials (a wrong password, key or authentication tag), on commands, read-backs and reads, per link: check the key file or renew the meters' keys; never retried blindly." },
  { name: 'meterline_profile_mismatches_total', type: 'counter', labels: ['profile', 'field'], meaning: 'Meters that reported something their firmware profile contradicts (field remote_reconnect: a DLMS control mode that arms under a profile that closes, or the other way); the meter decides, a person corrects the registration.' },
  { name: 'meterline_singleton_duty_held', type: 'gauge', labels: [], meaning: '1 on the one instance that runs the one-per-cluster jobs (success rates, readings, relay audit, callbacks, webhooks), 0 on the others.' },
  { name: 'meterline_sse_clients', type: 'gauge', labels: [], meaning: 'Live-event (`GET /v1/events`) clients connected now (the console\'s pages, anything else following the orders).' },
  { name: 'meterline_sse_clients_dropped_total', type: 'counter', labels: ['reason'], meaning: 'Live-event (`GET /v1/events`) clients cut off for falling behind: `stalled` (their socket took nothing for `api.liveEvents.stallMs`) or `backlog` (more than `api.liveEvents.maxPendingOrders` orders waiting for them).' },
  { name: 'meterline_dlms_push_total', type: 'counter', labels: ['outcome'], meaning: 'What DLMS meters pushed to the `dlms.push` listener: `delivered` (recorded as observed state with source push), or dropped by reason: `unknown_system_title` (no key set names it), `bad_tag` (the authentication tag does not verify), `replayed` (the invocation counter did not grow), `unknown_meter`, `not_a_notification`, `no_relay_state`, `ciphered_without_decipher`, `connection_limit`, `bad_version`, `oversize`.' },
  { name: 'meterline_broker_connected', type: 'gauge', labels: [], meaning: "1 while the gateway's MQTT client is connected to its broker, 0 while it is not (orders to MQTT meters wait); absent when the gateway has no MQTT link." },
  { name: 'meterline_http_request_duration_seconds', type: 'histogram', labels: ['method', 'route', 'status'], meaning: 'API requests by method, route template (`/v1/meters/:meterId/reconnect`; `unmatched` for a 404 on no route) and status code, from the request arriving to the answer sent.' },
  { name: 'meterline_audit_anchor_age_seconds', type: 'gauge', labels: [], meaning: 'Seconds since this instance wrote its newest audit anchor (`audit.anchorEveryMs`); NaN when anchoring is off (no anchor file and no anchor log).' },
  { name: 'meterline_link_up', type: 'gauge', labels: ['link', 'kind'], meaning: '1 while the link is up (broker connected, serial port open, TCP connection made), 0 while it is down and its orders wait; kind mqtt, modbus-rtu, modbus-tcp, dlms-hdlc or dlms-tcp (`GET /v1/links` says since when and the last error).' },
  { name: 'meterline_link_crc_errors_total', type: 'counter', labels: ['link', 'kind'], meaning: 'Frames whose CRC (Modbus RTU) or HCS/FCS (DLMS HDLC) did not check: noise on the line, or a baud rate or parity that does not match the devices.' },
  { name: 'meterline_link_garbled_total', type: 'counter', labels: ['link', 'kind'], meaning: 'Answers that arrived but did not decode: a wrong unit id or function code in the reply, a bad length, a broken TCP stream, an unreadable MQTT reply or DLMS APDU.' },
  { name: 'meterline_link_frame_retries_total', type: 'counter', labels: ['link', 'kind'], meaning: 'Frames sent again on the same request after a corrupted or lost answer (Modbus frame retries, DLMS HDLC repeats and RR polls).' },
  { name: 'meterline_link_timeouts_total', type: 'counter', labels: ['link', 'kind'], meaning: 'Requests that got no answer in time: a meter that is off, a wrong unit id or address, a link that stalls.' },
  { name: 'meterline_link_exceptions_total', type: 'counter', labels: ['link', 'kind', 'code'], meaning: 'Refusals the devices answered, by code: the Modbus exception code (`0x02` illegal data address: the profile does not fit the device) or the DLMS result name (`temporary-failure`, `object-undefined`, `exception-…`).' },
  { name: 'meterline_link_unknown_correlation_ids_total', type: 'counter', labels: ['link', 'kind'], meaning: 'Answers for no request waiting: MQTT replies whose cid matches no request in flight, Modbus TCP transaction ids, DLMS wrapper frames; late answers to requests given up on (or another instance’s).' },
  { name: 'meterline_link_reopens_total', type: 'counter', labels: ['link', 'kind'], meaning: 'Times a serial port (Modbus RTU bus, DLMS port) was opened again after it was lost or could not be opened.' },
  { name: 'meterline_link_reconnects_total', type: 'counter', labels: ['link', 'kind'], meaning: 'Times a connection (the MQTT broker, a Modbus TCP gateway, a DLMS TCP link) was made again after it dropped.' },
  { name: 'meterline_sqlite_thread_restarts_total', type: 'counter', labels: [], meaning: "Times the SQLite store's thread (`store.sqlite.thread: worker`, the default) was started again on the file after it died (a crash in native code, out of memory): the calls it had not answered failed with E_STORE_UNAVAILABLE and were retried, with their idempotency keys; the log says why it died. Absent when the store has no thread of its own (PostgreSQL, `store.sqlite.thread: main`)." },
  { name: 'meterline_metrics_provider_errors_total', type: 'counter', labels: ['provider'], meaning: 'Scrapes in which a provider failed, so a gauge could not be computed (labelled: absent; single value: NaN).' },
  { name: 'process_*', type: 'default', labels: [], meaning: 'Process CPU (`process_cpu_seconds_total`), memory (`process_resident_memory_bytes`), file descriptors and start time: the standard names (prom-client default metrics, no prefix).' },
  { name: 'nodejs_*', type: 'default', labels: [], meaning: 'Node.js event-loop lag (`nodejs_eventloop_lag_seconds`), heap (`nodejs_heap_size_used_bytes`), GC, handles and version: the standard names. The three `nodejs_active_*_total` gauges are left out (promtool refuses a gauge named `_total`): sum `nodejs_active_handles`, `nodejs_active_requests` and `nodejs_active_resources` over `type` instead.' },
];

export interface GatewayMetrics {
  registry: Registry;
  /** The exposition text for `GET /metrics`. */
  render(): Promise<string>;
  /** The Content-Type header to send with `render()`. */
  contentType: string;
  attempts: Counter<'protocol' | 'action' | 'outcome'>;
  /** Seconds. */
  attemptLatency: Histogram<'protocol' | 'action'>;
  ordersFinished: Counter<'action' | 'state'>;
  alerts: Counter<'kind'>;
  leaseTakeovers: Counter;
  authFailures: Counter<'protocol' | 'link'>;
  profileMismatches: Counter<'profile' | 'field'>;
  sseClientsDropped: Counter<'reason'>;
  /** Live-event clients connected now: set by the live-event route as clients come and go. */
  sseClients: Gauge;
  /** Seconds; route is the route template, never the raw URL (src/api/http-metrics.ts). */
  httpRequestDuration: Histogram<'method' | 'route' | 'status'>;
}

/**
 * Builds the registry. Gauges call their provider on every scrape; a provider that fails does not fail the whole
 * page: its labelled gauge is empty and a single-value gauge is NaN for that scrape, and
 * `meterline_metrics_provider_errors_total{provider}` counts it.
 */
export function createGatewayMetrics(providers: GatewayMetricsProviders, options: { logger?: Logger } = {}): GatewayMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Gauges named `_total`, which promtool refuses; each is the sum over `type` of its labelled sibling.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
  }
  const registers = [registry];

  // Registered last (below) and waiting for the provider calls of the same scrape, so that a failure shows in
  // the scrape it happened in.
  const pending = new Set<Promise<unknown>>();
  const providerErrors = new Counter({
    name: `${PREFIX}metrics_provider_errors_total`,
    help: describe('meterline_metrics_provider_errors_total'),
    labelNames: ['provider'] as const,
    registers: [],
    async collect() {
      await Promise.allSettled([...pending]);
    },
  });

  /** Runs one provider; on failure logs, counts and returns undefined. */
  function ask<T>(provider: string, call: () => Promise<T> | T): Promise<T | undefined> {
    const p = (async () => {
      try {
        return await call();
      } catch (err) {
        providerErrors.inc({ provider });
        options.logger?.warn({ provider, err: (err as Error).message }, 'metrics provider failed; gauge left empty for this scrape');
        return undefined;
      }
    })();
    pending.add(p);
    void p.finally(() => pending.delete(p));
    return p;
  }

  const attempts = new Counter({ name: `${PREFIX}switch_attempts_total`, help: describe('meterline_switch_attempts_total'), labelNames: ['protocol', 'action', 'outcome'] as const, registers });
  const attemptLatency = new Histogram({
    name: `${PREFIX}switch_attempt_duration_seconds`,
    help: describe('meterline_switch_attempt_duration_seconds'),
    labelNames: ['protocol', 'action'] as const,
    // From a fast MQTT round trip (50 ms) to a DLMS meter with a slow relay on a busy serial bus (60 s).
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60],
    registers,
  });
  const ordersFinished = new Counter({ name: `${PREFIX}orders_finished_total`, help: describe('meterline_orders_finished_total'), labelNames: ['action', 'state'] as const, registers });
  const alerts = new Counter({ name: `${PREFIX}alerts_total`, help: describe('meterline_alerts_total'), labelNames: ['kind'] as const, registers });

  new Gauge({
    name: `${PREFIX}queue_depth`,
    help: describe('meterline_queue_depth'),
    labelNames: ['state'] as const,
    registers,
    async collect() {
      this.reset();
      const byState = await ask('queueDepth', () => providers.queueDepth());
      // Every open state, 0 when empty: an empty queue is a value, not a missing series.
      if (byState) for (const state of OPEN_ORDER_STATES) this.set({ state }, byState[state] ?? 0);
    },
  });
  new Gauge({
    name: `${PREFIX}work_orders`,
    help: describe('meterline_work_orders'),
    labelNames: ['status'] as const,
    registers,
    async collect() {
      this.reset();
      const byStatus = await ask('workOrdersByStatus', () => providers.workOrdersByStatus());
      for (const [status, n] of Object.entries(byStatus ?? {})) this.set({ status }, n);
    },
  });
  new Gauge({
    name: `${PREFIX}most_urgent_reconnect_remaining_seconds`,
    help: describe('meterline_most_urgent_reconnect_remaining_seconds'),
    registers,
    async collect() {
      const left = await ask('mostUrgentReconnectSecondsLeft', () => providers.mostUrgentReconnectSecondsLeft());
      // +Inf, not 0, when nothing is open: 0 would read as "due now" to an alert rule such as `< 3600`.
      this.set(left === undefined ? Number.NaN : left === null ? Number.POSITIVE_INFINITY : left);
    },
  });

  // Both success gauges come from one provider call per scrape: `registry.metrics()` starts every collect in
  // registration order (then awaits them together), so the ratio gauge has started the call by the time the
  // samples gauge (registered right after it) asks, and the samples gauge reuses that answer.
  let lastRates: Promise<SuccessRateSample[] | undefined> | undefined;
  const successRateLabels = ['scope', 'key', 'action', 'kind', 'window'] as const;
  const successLabels = (r: SuccessRateSample) => ({ scope: r.scope, key: r.key, action: r.action, kind: r.kind, window: `${r.windowMinutes}m` });
  new Gauge({
    name: `${PREFIX}success_ratio`,
    help: describe('meterline_success_ratio'),
    labelNames: successRateLabels,
    registers,
    async collect() {
      this.reset();
      lastRates = ask('successRates', () => providers.successRates());
      for (const r of (await lastRates) ?? []) this.set(successLabels(r), r.rate);
    },
  });
  new Gauge({
    name: `${PREFIX}success_samples`,
    help: describe('meterline_success_samples'),
    labelNames: successRateLabels,
    registers,
    async collect() {
      this.reset();
      const rates = lastRates ?? ask('successRates', () => providers.successRates());
      lastRates = undefined;
      for (const r of (await rates) ?? []) this.set(successLabels(r), r.samples);
    },
  });
  new Gauge({
    name: `${PREFIX}circuit_breakers_open`,
    help: describe('meterline_circuit_breakers_open'),
    registers,
    async collect() {
      const n = await ask('openCircuitBreakers', () => providers.openCircuitBreakers());
      this.set(n ?? Number.NaN);
    },
  });
  // The writer's count is the source of truth (it only grows): each scrape shows it as it is.
  new Counter({
    name: `${PREFIX}timeseries_dropped_points_total`,
    help: describe('meterline_timeseries_dropped_points_total'),
    registers,
    async collect() {
      const s = await ask('timeSeries', () => providers.timeSeries());
      this.reset();
      if (s) this.inc(s.dropped);
    },
  });
  new Gauge({
    name: `${PREFIX}timeseries_buffered_points`,
    help: describe('meterline_timeseries_buffered_points'),
    registers,
    async collect() {
      const s = await ask('timeSeries', () => providers.timeSeries());
      this.set(s?.buffered ?? Number.NaN);
    },
  });

  const leaseTakeovers = new Counter({ name: `${PREFIX}lease_takeovers_total`, help: describe('meterline_lease_takeovers_total'), registers });
  const authFailures = new Counter({ name: `${PREFIX}auth_failures_total`, help: describe('meterline_auth_failures_total'), labelNames: ['protocol', 'link'] as const, registers });
  const profileMismatches = new Counter({ name: `${PREFIX}profile_mismatches_total`, help: describe('meterline_profile_mismatches_total'), labelNames: ['profile', 'field'] as const, registers });
  const sseClients = new Gauge({ name: `${PREFIX}sse_clients`, help: describe('meterline_sse_clients'), registers });
  const sseClientsDropped = new Counter({ name: `${PREFIX}sse_clients_dropped_total`, help: describe('meterline_sse_clients_dropped_total'), labelNames: ['reason'] as const, registers });
  const httpRequestDuration = new Histogram({
    name: `${PREFIX}http_request_duration_seconds`,
    help: describe('meterline_http_request_duration_seconds'),
    labelNames: ['method', 'route', 'status'] as const,
    // From a cached read (1 ms) to a bulk submit or an export (10 s).
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  new Gauge({
    name: `${PREFIX}audit_anchor_age_seconds`,
    help: describe('meterline_audit_anchor_age_seconds'),
    registers,
    async collect() {
      const age = providers.auditAnchorAgeSeconds ? await ask('auditAnchorAgeSeconds', () => providers.auditAnchorAgeSeconds!()) : null;
      this.set(age ?? Number.NaN);
    },
  });
  new Gauge({
    name: `${PREFIX}singleton_duty_held`,
    help: describe('meterline_singleton_duty_held'),
    registers,
    async collect() {
      const held = await ask('singletonDutyHeld', () => providers.singletonDutyHeld());
      this.set(held === undefined ? Number.NaN : held ? 1 : 0);
    },
  });

  // The listener's counters are the source of truth (they only grow): each scrape shows them as they are.
  new Counter({
    name: `${PREFIX}dlms_push_total`,
    help: describe('meterline_dlms_push_total'),
    labelNames: ['outcome'] as const,
    registers,
    async collect() {
      this.reset();
      const push = providers.dlmsPush ? await ask('dlmsPush', () => providers.dlmsPush!()) : undefined;
      if (!push) return;
      this.inc({ outcome: 'delivered' }, push.delivered);
      for (const [reason, n] of Object.entries(push.dropped)) this.inc({ outcome: reason.replace(/-/g, '_') }, n);
    },
  });

  new Gauge({
    name: `${PREFIX}broker_connected`,
    help: describe('meterline_broker_connected'),
    registers,
    async collect() {
      this.reset();
      const connected = providers.brokerConnected ? await ask('brokerConnected', () => providers.brokerConnected!()) : undefined;
      // Absent (no sample) without an MQTT link: reset() alone would leave a gauge without labels at 0.
      if (connected === undefined) this.remove({});
      else this.set(connected ? 1 : 0);
    },
  });

  // Each link's counters as they are (the drivers' counters only grow), one family per counter, and its state.
  new Gauge({
    name: `${PREFIX}link_up`,
    help: describe('meterline_link_up'),
    labelNames: ['link', 'kind'] as const,
    registers,
    async collect() {
      this.reset();
      for (const l of (await ask('links', () => providers.links?.() ?? [])) ?? []) this.set({ link: l.link, kind: l.kind }, l.state === 'up' ? 1 : 0);
    },
  });
  for (const [field, name] of LINK_COUNTER_METRICS) {
    new Counter({
      name: `${PREFIX}${name}`,
      help: describe(`meterline_${name}`),
      labelNames: ['link', 'kind'] as const,
      registers,
      async collect() {
        this.reset();
        for (const l of (await ask('links', () => providers.links?.() ?? [])) ?? []) this.inc({ link: l.link, kind: l.kind }, l.counters[field]);
      },
    });
  }
  new Counter({
    name: `${PREFIX}link_exceptions_total`,
    help: describe('meterline_link_exceptions_total'),
    labelNames: ['link', 'kind', 'code'] as const,
    registers,
    async collect() {
      this.reset();
      for (const l of (await ask('links', () => providers.links?.() ?? [])) ?? []) {
        for (const [code, n] of Object.entries(l.counters.exceptions)) this.inc({ link: l.link, kind: l.kind, code }, n);
      }
    },
  });

  // The store's count is the source of truth (it only grows): each scrape shows it as it is.
  new Counter({
    name: `${PREFIX}sqlite_thread_restarts_total`,
    help: describe('meterline_sqlite_thread_restarts_total'),
    registers,
    async collect() {
      this.reset();
      const restarts = providers.sqliteThreadRestarts ? await ask('sqliteThreadRestarts', () => providers.sqliteThreadRestarts!()) : undefined;
      // Absent (no sample) without a store thread: reset() alone would leave a counter without labels at 0.
      if (restarts === undefined) this.remove({});
      else this.inc(restarts);
    },
  });

  registry.registerMetric(providerErrors);

  return {
    registry,
    render: () => registry.metrics(),
    contentType: registry.contentType,
    attempts,
    attemptLatency,
    ordersFinished,
    alerts,
    leaseTakeovers,
    authFailures,
    profileMismatches,
    sseClientsDropped,
    sseClients,
    httpRequestDuration,
  };
}

/** The link counters shown as one counter family each, by field, with the family's name after the prefix. */
const LINK_COUNTER_METRICS: ReadonlyArray<[Exclude<keyof LinkCounters, 'exceptions'>, string]> = [
  ['crcErrors', 'link_crc_errors_total'],
  ['garbled', 'link_garbled_total'],
  ['frameRetries', 'link_frame_retries_total'],
  ['timeouts', 'link_timeouts_total'],
  ['unknownCorrelationIds', 'link_unknown_correlation_ids_total'],
  ['reopens', 'link_reopens_total'],
  ['reconnects', 'link_reconnects_total'],
];

function describe(name: string): string {
  const row = METRICS_TABLE.find((m) => m.name === name);
  if (!row) throw new Error(`metric ${name} is missing from METRICS_TABLE`);
  return row.meaning;
}
