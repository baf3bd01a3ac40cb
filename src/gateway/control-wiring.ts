import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { MqttDriver } from '../../drivers/mqtt/mqtt-driver.js';
import type { MeterDriver } from '../../drivers/driver.js';
import type { GatewayConfig } from '../config/config-schema.js';
import type { Clock } from '../control/clock.js';
import { ConsumptionWatch } from '../control/consumption-watch.js';
import { CreditController } from '../control/credit-controller.js';
import { RelayAuditRunner } from '../control/relay-audit-runner.js';
import { SuccessRateMonitor } from '../control/success-rate-monitor.js';
import { SwitchController } from '../control/switch-controller.js';
import { alertMetricKind, type EpisodeKind } from '../domain/alert-episodes.js';
import { HOUR_MS } from '../domain/deadlines.js';
import type { FirmwareProfile } from '../domain/firmware-profile.js';
import { isTerminal, type SwitchOrder } from '../domain/switch-order.js';
import { HttpPaymentRechecker } from '../integrations/billing-recheck.js';
import { createGatewayMetrics, type GatewayMetrics } from '../integrations/metrics.js';
import type { TimeSeriesWriter } from '../integrations/time-series-writer.js';
import { SqliteWorkerStore } from '../store/sqlite-worker-store.js';
import type { GatewayStore, SubmitContext } from '../store/store.js';
import { createdOrders } from '../control/due-buffer.js';
import { allLinkHealth, loadedDlmsDriver } from './meter-links.js';
import type { StopList } from './stop-list.js';

/** The control loop and what watches it, built and not started (nothing goes on the wire until `controller.start()`). */
export interface ControlParts {
  controller: SwitchController;
  monitor: SuccessRateMonitor;
  credit: CreditController;
  relayAudit: RelayAuditRunner;
  timeSeries: TimeSeriesWriter | undefined;
  metrics: GatewayMetrics;
  /** Live events for the console: 'order' after every change. */
  events: EventEmitter;
}

export interface ControlWiring {
  /** The time-series writer when `timeSeries.url` is set (newTimeSeriesWriter); stopped with the rest. */
  timeSeries?: TimeSeriesWriter;
  config: GatewayConfig;
  store: GatewayStore;
  drivers: ReadonlyMap<string, MeterDriver>;
  profiles: ReadonlyMap<string, FirmwareProfile>;
  clock: Clock;
  logger: Logger;
  submitContext: () => SubmitContext;
  onOrderChange?: (order: SwitchOrder) => void;
  /** Whether this instance runs the singleton jobs (a metric). */
  singletonDutyHeld: () => boolean;
  /** Seconds since this instance wrote its newest audit anchor; null: anchoring is off (a metric). */
  auditAnchorAgeSeconds?: () => number | null;
}

/**
 * The time-series writer `config.timeSeries` asks for, or undefined: the InfluxDB client (~1 MiB of the main thread's
 * heap, issue 19) is loaded only when a URL is set.
 */
export async function newTimeSeriesWriter(config: GatewayConfig, logger: Logger): Promise<TimeSeriesWriter | undefined> {
  if (!config.timeSeries.url) return undefined;
  const { TimeSeriesWriter } = await import('../integrations/time-series-writer.js');
  return new TimeSeriesWriter({ ...config.timeSeries, url: config.timeSeries.url, logger: logger.child({ component: 'time-series' }) });
}

export function wireControl(w: ControlWiring, stops: StopList): ControlParts {
  const { config, store, clock, logger } = w;
  const timeSeries = w.timeSeries;
  if (timeSeries) stops.add(() => timeSeries.close());
  const monitor = new SuccessRateMonitor(store, clock, config.successRates, logger.child({ component: 'success-rates' }), (kind) => metrics.alerts.inc({ kind }));
  const metrics = createGatewayMetrics(
    {
      queueDepth: () => store.countOpenOrdersByState(),
      workOrdersByStatus: () => store.countWorkOrdersByStatus(),
      mostUrgentReconnectSecondsLeft: async () => {
        const d = await store.mostUrgentReconnectDeadline();
        return d === null ? null : (d - clock.now()) / 1000;
      },
      successRates: async () =>
        monitor.latest().rates.map((r) => ({ scope: r.scope, key: r.key, action: r.action, kind: r.kind, windowMinutes: r.windowMinutes, rate: r.rate, samples: r.total })),
      openCircuitBreakers: async () => (await store.listBreakers(true)).length,
      timeSeries: () => timeSeries?.stats() ?? { dropped: 0, buffered: 0 },
      singletonDutyHeld: w.singletonDutyHeld,
      dlmsPush: () => {
        const dlms = w.drivers.get('dlms');
        return loadedDlmsDriver === undefined || !(dlms instanceof loadedDlmsDriver) || dlms.pushPort === undefined ? undefined : { delivered: dlms.counters.pushDelivered, dropped: dlms.counters.pushDropped };
      },
      links: () => allLinkHealth(w.drivers),
      brokerConnected: () => {
        const mqtt = w.drivers.get('mqtt');
        return mqtt instanceof MqttDriver ? mqtt.brokerState().connected : undefined;
      },
      ...(w.auditAnchorAgeSeconds ? { auditAnchorAgeSeconds: w.auditAnchorAgeSeconds } : {}),
      sqliteThreadRestarts: () => (store instanceof SqliteWorkerStore ? store.threadRestarts : undefined),
    },
    { logger: logger.child({ component: 'metrics' }) },
  );
  const countAlert = (kind: EpisodeKind): void => metrics.alerts.inc({ kind: alertMetricKind(kind) });
  const consumption = new ConsumptionWatch(store, config.consumption, logger.child({ component: 'consumption' }), countAlert);
  const events = new EventEmitter();
  events.setMaxListeners(1000);
  const controller = new SwitchController({
    store,
    drivers: w.drivers,
    profiles: w.profiles,
    clock,
    logger: logger.child({ component: 'control' }),
    options: config.control,
    instanceId: config.instanceId,
    policy: config.policy,
    payments: new HttpPaymentRechecker(config.policy.paymentRecheck),
    escalation: {
      fieldLeadMs: (region) => (config.escalation.regionLeadHours[region] ?? config.escalation.fieldLeadHours) * HOUR_MS,
      maxFieldLeadMs: Math.max(config.escalation.fieldLeadHours, ...Object.values(config.escalation.regionLeadHours)) * HOUR_MS,
      dueMarginMs: config.escalation.dueMarginMinutes * 60_000,
      slowRetryMs: config.escalation.slowRetryMs,
      escalateDisconnects: config.escalation.disconnectFailures,
      scanEveryMs: config.escalation.scanEveryMs,
    },
    onOrderChange: (order) => {
      events.emit('order', order);
      if (isTerminal(order.state)) metrics.ordersFinished.inc({ action: order.action, state: order.state });
      w.onOrderChange?.(order);
    },
    onTakeover: () => metrics.leaseTakeovers.inc(),
    onAuthFailure: (r) => metrics.authFailures.inc({ protocol: r.protocol, link: r.link }),
    onProfileMismatch: (m) => metrics.profileMismatches.inc({ profile: m.profileId, field: m.field }),
    onAttempt: (a) => {
      metrics.attempts.inc({ protocol: a.protocol, action: a.action, outcome: a.outcome });
      metrics.attemptLatency.observe({ protocol: a.protocol, action: a.action }, a.latencyMs / 1000);
      timeSeries?.writeAttempt(a);
    },
    // Read, read back or pushed by the meter (status reports): every reading is judged the same way.
    onReading: (r) => {
      timeSeries?.writeReading(r);
      if (r.energyWh !== null) {
        const energyWh = r.energyWh;
        void consumption.check(r.meterId, clock.now()).catch((err: unknown) => logger.error({ err, meterId: r.meterId }, 'consumption check failed'));
        // A meter known not to be in prepayment (read-backs say so) costs credit control nothing: it is not asked, as
        // onReading would answer at once (issue 19: a record, a promise and a handler per order, for nothing).
        if (r.prepayment !== false) {
          const reading: { at: number; energyWh: number; prepayment?: boolean } = { at: r.at, energyWh };
          if (r.prepayment !== undefined) reading.prepayment = r.prepayment;
          void credit.onReading(r.meterId, reading).catch((err: unknown) => logger.error({ err, meterId: r.meterId }, 'credit control failed'));
        }
      }
    },
  });

  const credit = new CreditController({
    store,
    clock,
    config: { ...config.prepayment, friendlyHours: config.policy.creditCutOff.friendlyHours },
    submit: async (requests) => {
      const outs = await store.submitOrders(requests, w.submitContext());
      controller.wake(createdOrders(outs));
      for (const o of outs) events.emit('order', o.order);
      return outs.map((o) => o.order);
    },
    logger: logger.child({ component: 'credit-control' }),
  });
  const relayAudit = new RelayAuditRunner(store, clock, config.relayAudit, logger.child({ component: 'relay-audit' }), countAlert);
  return { controller, monitor, credit, relayAudit, timeSeries, metrics, events };
}
