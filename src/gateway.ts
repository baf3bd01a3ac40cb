import { EventEmitter } from 'node:events';
import { existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { createDlmsDriver } from '../drivers/dlms/index.js';
import { createModbusDriver } from '../drivers/modbus/index.js';
import { MqttDriver } from '../drivers/mqtt/mqtt-driver.js';
import type { MeterDriver } from '../drivers/driver.js';
import { MqttFleet } from '../simulators/mqtt-fleet.js';
import { planFleet, type PlannedMeter } from '../simulators/fleet-plan.js';
import { ApiKeyRegistry, newApiKey, sha256Hex, type Principal, type Role } from './api/auth.js';
import { configuredClientId } from './domain/client-identity.js';
import { buildApi } from './api/app.js';
import type { GatewayConfig } from './config/config-schema.js';
import { auditAnchorFile, gatewayAuditKeySource } from './config/audit-files.js';
import { AuditAnchors, readAuditAnchors } from './integrations/audit-anchors.js';
import { loadFirmwareProfiles } from './config/load-profiles.js';
import { systemClock, type Clock } from './control/clock.js';
import { SwitchController } from './control/switch-controller.js';
import { SuccessRateMonitor } from './control/success-rate-monitor.js';
import { ConsumptionWatch } from './control/consumption-watch.js';
import { ReadingScheduler } from './control/reading-scheduler.js';
import { RelayAuditRunner } from './control/relay-audit-runner.js';
import { CreditController } from './control/credit-controller.js';
import { SingletonDuty, type DutyJob } from './control/singleton-duty.js';
import { createGatewayMetrics } from './integrations/metrics.js';
import { TimeSeriesWriter } from './integrations/time-series-writer.js';
import { CallbackDispatcher } from './integrations/callback-dispatcher.js';
import { isTerminal } from './domain/switch-order.js';
import { alertMetricKind, type EpisodeKind } from './domain/alert-episodes.js';
import { HOUR_MS } from './domain/deadlines.js';
import { asMqttProfile, type FirmwareProfile, type MqttFirmwareProfile } from './domain/firmware-profile.js';
import type { SwitchOrder } from './domain/switch-order.js';
import { EmbeddedBroker } from './integrations/embedded-broker.js';
import { HttpPaymentRechecker } from './integrations/billing-recheck.js';
import { NotificationDispatcher, type NotificationRoute } from './integrations/notification-dispatcher.js';
import { SqliteStore } from './store/sqlite-store.js';
import { PostgresStore } from './store/postgres-store.js';
import type { GatewayStore, SubmitContext } from './store/store.js';

/** Random bytes for order ids, drawn from the CSPRNG a pool at a time: one small randomBytes() call per id costs more than the rest of the id. */
const idPool = { bytes: Buffer.alloc(0), at: 0 };

/** Order ids sort by creation time and are unique across instances (48 random bits after the time). */
export function newOrderId(now: number): string {
  if (idPool.at + 6 > idPool.bytes.length) {
    idPool.bytes = randomBytes(6 * 1024);
    idPool.at = 0;
  }
  const tail = idPool.bytes.toString('hex', idPool.at, idPool.at + 6);
  idPool.at += 6;
  return `ord_${now.toString(36).padStart(9, '0')}${tail}`;
}

export interface RunningGateway {
  config: GatewayConfig;
  logger: Logger;
  store: GatewayStore;
  controller: SwitchController;
  monitor: SuccessRateMonitor;
  readings: ReadingScheduler;
  relayAudit: RelayAuditRunner;
  timeSeries: TimeSeriesWriter | undefined;
  api: FastifyInstance;
  apiUrl: string;
  brokerUrl: string;
  profiles: ReadonlyMap<string, FirmwareProfile>;
  /** The in-process simulated fleet, when `simulator.inProcess` is set. */
  fleet: MqttFleet | undefined;
  /** Keys made at start-up when `auth.demoKeys` is set. */
  demoKeys: { operator: string; billing: string; supervisor: string; admin: string } | undefined;
  stop(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  clock?: Clock;
  /** Observe every order change the loop makes (tests, metrics). */
  onOrderChange?: (order: SwitchOrder) => void;
}

/** Which simulated meters start off supply: every k-th, so the demo has customers to reconnect. */
function startsDisconnected(index: number, share: number): boolean {
  if (share <= 0) return false;
  return index % Math.max(1, Math.round(1 / share)) === 0;
}

/** Assemble and start the gateway described by `config`: store, broker link, driver, control loop, API. */
export async function startGateway(config: GatewayConfig, options: StartOptions = {}): Promise<RunningGateway> {
  const logger = options.logger ?? pino({ level: config.log.level, base: { instance: config.instanceId } });
  const clock = options.clock ?? systemClock;
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) {
      try {
        await stop();
      } catch (err) {
        logger.error({ err }, 'error while stopping');
      }
    }
  };

  try {
    const profiles = loadFirmwareProfiles(resolve(config.profilesDir));
    let planned: PlannedMeter[] = [];
    if (config.fleet.seed) {
      const unknown = config.fleet.seed.profiles.filter((p) => !profiles.has(p));
      if (unknown.length > 0) throw new Error(`fleet.seed.profiles: unknown profile(s) ${unknown.join(', ')}; loaded: ${[...profiles.keys()].join(', ')}`);
      planned = planFleet(config.fleet.seed);
    }

    const pg = config.store.postgres;
    if (config.store.kind === 'postgres' && !pg) throw new Error('store.kind is postgres but store.postgres is not set (set DATABASE_URL or store.postgres.url)');
    const auditKey = gatewayAuditKeySource(config, process.env, (file, keyId) =>
      logger.warn({ file, keyId }, 'audit key made (the audit log is keyed with it from now on): keep a copy away from the database and its backups; without it the log cannot be verified'),
    );
    const store: GatewayStore =
      config.store.kind === 'postgres' && pg
        ? new PostgresStore({ connectionString: pg.url, maxConnections: pg.maxConnections, auditKey, ...(pg.schema ? { schema: pg.schema } : {}) })
        : new SqliteStore(resolve(config.store.sqlite.path), { auditKey });
    stops.push(() => store.close());
    await store.migrate();
    const anchors = await startAuditAnchors(config, store, clock, logger);
    stops.push(() => anchors.stop());
    if (planned.length > 0) await store.upsertMeters(planned, clock.now());

    let brokerUrl = config.mqtt.url;
    if (config.mqtt.mode === 'embedded') {
      const broker = await EmbeddedBroker.start(config.mqtt.embeddedPort);
      stops.push(() => broker.stop());
      brokerUrl = broker.url;
    }
    // aedes (embedded) speaks MQTT 3.1.1; real brokers get MQTT 5 (message expiry, shared subscriptions).
    const protocolVersion = config.mqtt.mode === 'embedded' ? 4 : 5;

    let fleet: MqttFleet | undefined;
    if (config.simulator.inProcess && planned.length > 0) {
      const share = config.simulator.disconnectedShare;
      const autoPress = config.simulator.autoPressMs;
      fleet = new MqttFleet({
        brokerUrl,
        protocolVersion,
        connections: protocolVersion === 5 ? 4 : 1,
        logger: logger.child({ component: 'simulator' }),
        meters: planned.map((m, i) => ({
          meterId: m.meterId,
          profile: asMqttProfile(profiles.get(m.profileId)!),
          initialRelay: startsDisconnected(i, share) ? 'disconnected' : 'connected',
          ...(autoPress !== null ? { faults: { autoPressAfterMs: autoPress } } : {}),
        })),
      });
      await fleet.start();
      stops.push(() => fleet!.stop());
    }

    const mqttProfiles = [...profiles.values()].filter((p): p is MqttFirmwareProfile => p.protocol === 'mqtt');
    const mqttDriver = new MqttDriver({
      brokerUrl,
      protocolVersion,
      instanceId: config.instanceId,
      profiles: mqttProfiles,
      maxInFlight: config.mqtt.maxInFlight,
      sharedGroup: config.mqtt.mode === 'external' ? config.mqtt.sharedGroup : null,
      keepaliveSec: config.mqtt.keepaliveSec,
      logger: logger.child({ component: 'mqtt-driver' }),
    });
    await mqttDriver.start();
    stops.push(() => mqttDriver.stop());
    const drivers = new Map<string, MeterDriver>([['mqtt', mqttDriver]]);
    // Serial and TCP protocols run only where links are configured (a DLMS profile with a password needs it then).
    if (Object.keys(config.modbus.rtu).length + Object.keys(config.modbus.tcp).length > 0) {
      const modbus = createModbusDriver({ links: config.modbus, profiles: [...profiles.values()], logger: logger.child({ component: 'modbus-driver' }) });
      await modbus.start();
      stops.push(() => modbus.stop());
      drivers.set('modbus', modbus);
    }
    if (Object.keys(config.dlms.ports).length > 0) {
      const dlms = createDlmsDriver({ links: config.dlms, profiles: profiles.values(), logger: logger.child({ component: 'dlms-driver' }) });
      await dlms.start();
      stops.push(() => dlms.stop());
      drivers.set('dlms', dlms);
    }

    const timeSeries = config.timeSeries.url
      ? new TimeSeriesWriter({ ...config.timeSeries, url: config.timeSeries.url, logger: logger.child({ component: 'time-series' }) })
      : undefined;
    if (timeSeries) stops.push(() => timeSeries.close());
    const monitor = new SuccessRateMonitor(store, clock, config.successRates, logger.child({ component: 'success-rates' }), (kind) => metrics.alerts.inc({ kind }));
    let duty: SingletonDuty | undefined;
    const metrics = createGatewayMetrics(
      {
        queueDepth: () => store.countOrdersByState() as Promise<Record<string, number>>,
        workOrdersByStatus: () => store.countWorkOrdersByStatus(),
        mostUrgentReconnectSecondsLeft: async () => {
          const d = await store.mostUrgentReconnectDeadline();
          return d === null ? null : (d - clock.now()) / 1000;
        },
        successRates: async () => {
          const shortest = Math.min(...config.successRates.windowMinutes);
          return monitor
            .latest()
            .rates.filter((r) => r.windowMinutes === shortest)
            .map((r) => ({ scope: r.scope, key: r.key, action: r.action, kind: r.kind, rate: r.rate, samples: r.total }));
        },
        openCircuitBreakers: async () => (await store.listBreakers(true)).length,
        timeSeries: () => timeSeries?.stats() ?? { dropped: 0, buffered: 0 },
        singletonDutyHeld: () => duty?.held ?? false,
      },
      { logger: logger.child({ component: 'metrics' }) },
    );
    const countAlert = (kind: EpisodeKind): void => metrics.alerts.inc({ kind: alertMetricKind(kind) });
    const consumption = new ConsumptionWatch(store, config.consumption, logger.child({ component: 'consumption' }), countAlert);
    const events = new EventEmitter();
    events.setMaxListeners(1000);
    const controller = new SwitchController({
      store,
      drivers,
      profiles,
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
        options.onOrderChange?.(order);
      },
      onTakeover: () => metrics.leaseTakeovers.inc(),
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
          void credit.onReading(r.meterId, { at: r.at, energyWh, ...(r.prepayment !== undefined ? { prepayment: r.prepayment } : {}) }).catch((err: unknown) => logger.error({ err, meterId: r.meterId }, 'credit control failed'));
        }
      },
    });

    const credit = new CreditController({
      store,
      clock,
      config: { ...config.prepayment, friendlyHours: config.policy.creditCutOff.friendlyHours },
      submit: async (requests) => {
        const outs = await store.submitOrders(requests, submitContext());
        controller.wake();
        for (const o of outs) events.emit('order', o.order);
        return outs.map((o) => o.order);
      },
      logger: logger.child({ component: 'credit-control' }),
    });
    const relayAudit = new RelayAuditRunner(store, clock, config.relayAudit, logger.child({ component: 'relay-audit' }), countAlert);
    const keys = new ApiKeyRegistry(store);
    const configured = (name: string, role: Role): Principal => ({ clientId: configuredClientId(name), name, role });
    for (const k of config.auth.keys) keys.add(k.sha256, configured(k.name, k.role));
    let demoKeys: RunningGateway['demoKeys'];
    if (config.auth.demoKeys) {
      demoKeys = { operator: newApiKey('op'), billing: newApiKey('bill'), supervisor: newApiKey('sup'), admin: newApiKey('adm') };
      keys.add(sha256Hex(demoKeys.operator), configured('demo-operator', 'operator'));
      keys.add(sha256Hex(demoKeys.billing), configured('demo-billing', 'billing'));
      keys.add(sha256Hex(demoKeys.supervisor), configured('demo-supervisor', 'supervisor'));
      keys.add(sha256Hex(demoKeys.admin), configured('demo-admin', 'admin'));
    }
    // Configured clients are in the store too, so that an administrator can issue them more keys by id.
    await store.registerClients(keys.configuredClients(), clock.now());

    const submitContext = (): SubmitContext => ({
      now: clock.now(),
      reconnectLimitHours: config.reconnect.limitHours,
      newOrderId: () => newOrderId(clock.now()),
      policy: config.policy,
    });
    const api = await buildApi(
      {
        store,
        controller,
        profiles,
        keys,
        submitContext,
        supply: config.supply,
        rateLimit: config.api.rateLimit,
        money: config.payments,
        successRates: monitor,
        successRateThresholds: { alertBelow: config.successRates.alertBelow, minSamples: config.successRates.minSamples, breakerBelow: config.successRates.breakerBelow },
        events,
        liveEvents: { ...config.api.liveEvents, onClientDropped: (reason) => metrics.sseClientsDropped.inc({ reason }) },
        metrics,
        relayAudit: () => relayAudit.run(),
        auditAnchors: () => {
          const file = auditAnchorFile(config);
          return file && existsSync(file) ? readAuditAnchors(file) : [];
        },
        credit,
        health: () => ({ store: true, broker: mqttDriver.connected }),
      },
      logger.child({ component: 'api' }),
    );
    stops.push(() => api.close());

    await controller.start();
    stops.push(() => controller.stop());
    // Work done once across all instances, by the instance holding the singleton duty.
    const singletonJobs: DutyJob[] = [{ name: 'success-rate monitor', start: () => monitor.start(), stop: () => monitor.stop() }];
    const readings = new ReadingScheduler({
      schedules: config.readings.schedules,
      concurrencyPerLink: config.readings.concurrencyPerLink,
      timezone: config.readings.timezone,
      logger: logger.child({ component: 'readings' }),
      listMeters: async (after, limit) => (await store.listMeters(after, limit)).map((m) => ({ meterId: m.meterId, link: m.link })),
      read: async (meterId) => {
        const r = await controller.readNow(meterId);
        return r.ok ? { ok: true } : { ok: false, skipped: r.detail.startsWith('an order attempt') };
      },
    });
    singletonJobs.push({ name: 'scheduled readings', start: () => readings.start(), stop: () => readings.stop() });
    singletonJobs.push({ name: 'relay audit', start: () => relayAudit.start(), stop: () => relayAudit.stop() });
    const callbacks = new CallbackDispatcher(store, clock, config.callbacks, logger.child({ component: 'callbacks' }));
    singletonJobs.push({ name: 'billing callbacks', start: () => callbacks.start(), stop: () => callbacks.stop() });
    const routes: NotificationRoute[] = [];
    if (config.notifications.webhookUrl) {
      routes.push({ kindPrefix: 'pre_disconnect_notice', url: config.notifications.webhookUrl, secret: config.notifications.secret });
      routes.push({ kindPrefix: 'customer.', url: config.notifications.webhookUrl, secret: config.notifications.secret });
    }
    if (config.fieldService.webhookUrl) routes.push({ kindPrefix: 'work_order.', url: config.fieldService.webhookUrl, secret: config.fieldService.secret });
    if (config.successRates.alertWebhookUrl) routes.push({ kindPrefix: 'alert.', url: config.successRates.alertWebhookUrl, secret: config.successRates.alertSecret });
    if (!config.notifications.webhookUrl) {
      logger.warn('no customer channel configured (notifications.webhookUrl): pre-disconnect notices cannot be delivered, so disconnects for arrears wait at E_SECOND_NOTICE_UNDELIVERED (DOMAIN.md rule 2)');
    }
    if (routes.length > 0) {
      const dispatcher = new NotificationDispatcher(store, routes, config.notifications.pollMs, clock, logger.child({ component: 'notifications' }));
      singletonJobs.push({ name: 'webhooks', start: () => dispatcher.start(), stop: () => dispatcher.stop() });
    }
    duty = new SingletonDuty({ store, clock, owner: config.instanceId, leaseMs: config.control.leaseMs, logger: logger.child({ component: 'duty' }), jobs: singletonJobs });
    await duty.start();
    stops.push(() => duty.stop());
    await api.listen({ host: config.api.host, port: config.api.port });
    const address = api.server.address();
    const port = typeof address === 'object' && address ? address.port : config.api.port;
    const apiUrl = `http://${config.api.host === '0.0.0.0' ? '127.0.0.1' : config.api.host}:${port}`;

    if (fleet && config.demo.reconnectEveryMs > 0) {
      const timer = startDemoPayments(fleet, store, controller, submitContext, config.demo.reconnectEveryMs, logger);
      stops.push(async () => clearInterval(timer));
    }

    return {
      config,
      logger,
      store,
      controller,
      monitor,
      readings,
      relayAudit,
      timeSeries,
      api,
      apiUrl,
      brokerUrl,
      profiles,
      fleet,
      demoKeys,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Anchor the audit chain outside the database now, every `audit.anchorEveryMs`, and at stop (just before the store closes). */
async function startAuditAnchors(config: GatewayConfig, store: GatewayStore, clock: Clock, logger: Logger): Promise<AuditAnchors> {
  const head = await store.auditHead();
  const file = auditAnchorFile(config);
  logger.info({ auditKeyId: head.keyId, entries: head.entries, anchorFile: file }, 'audit chain keyed; anchoring its head outside the database');
  const anchors = new AuditAnchors({
    head: () => store.auditHead(),
    file,
    logger: config.audit.anchorLog ? logger.child({ component: 'audit' }) : null,
    errors: logger.child({ component: 'audit' }),
    everyMs: config.audit.anchorEveryMs,
    instance: config.instanceId,
    clock,
  });
  await anchors.start();
  return anchors;
}

/**
 * Demo only: now and then a simulated customer "pays", and billing asks for a reconnect of a meter that the
 * simulator has off supply, so a user watching the log sees the gateway switch meters without doing anything.
 */
function startDemoPayments(
  fleet: MqttFleet,
  store: GatewayStore,
  controller: SwitchController,
  submitContext: () => SubmitContext,
  everyMs: number,
  logger: Logger,
): NodeJS.Timeout {
  const ids = [...fleet.meterIds()].reverse();
  let n = 0;
  return setInterval(() => {
    const meterId = ids.find((id) => fleet.meter(id).relay === 'disconnected');
    if (!meterId) return;
    n += 1;
    const ctx = submitContext();
    store
      .submitOrders(
        [
          {
            meterId,
            action: 'reconnect',
            reason: 'payment',
            note: `demo payment ${n}`,
            urgent: false,
            notBefore: null,
            paymentAt: ctx.now,
            requestedBy: configuredClientId('demo-billing'),
            idempotencyKey: `demo-payment-${ctx.now}-${n}`,
            requestHash: `demo-${n}`,
          },
        ],
        ctx,
      )
      .then(([o]) => {
        logger.info({ meterId, orderId: o!.order.id }, 'demo: payment received, reconnect ordered');
        controller.wake();
      })
      .catch((err: unknown) => logger.error({ err }, 'demo payment failed'));
  }, everyMs);
}

/** Write the demo keys where a shell can `source` them. */
export function writeDemoKeysFile(path: string, gateway: RunningGateway): void {
  if (!gateway.demoKeys) return;
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(
    path,
    [
      `export METERLINE_URL=${gateway.apiUrl}`,
      `export METERLINE_KEY=${gateway.demoKeys.operator}`,
      `export METERLINE_BILLING_KEY=${gateway.demoKeys.billing}`,
      `export METERLINE_SUPERVISOR_KEY=${gateway.demoKeys.supervisor}`,
      `export METERLINE_ADMIN_KEY=${gateway.demoKeys.admin}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
}
