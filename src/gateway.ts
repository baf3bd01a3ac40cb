import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { MqttFleet } from '../simulators/mqtt-fleet.js';
import { planFleet, type PlannedMeter } from '../simulators/fleet-plan.js';
import { ApiKeyRegistry, sha256Hex, type Principal, type Role } from './api/auth.js';
import { configuredClientId } from './domain/client-identity.js';
import { auditAnchorFile } from './config/audit-files.js';
import { readAuditAnchors } from './integrations/audit-anchors.js';
import { buildApi } from './api/app.js';
import { masterKeyFromEnv } from './keys/key-envelope.js';
import { StoreKeyring } from './keys/store-keyring.js';
import { renewMeterKeys } from './keys/key-renewal.js';
import type { GatewayConfig } from './config/config-schema.js';
import { loadFirmwareProfiles } from './config/load-profiles.js';
import { systemClock, type Clock } from './control/clock.js';
import type { SwitchController } from './control/switch-controller.js';
import type { SuccessRateMonitor } from './control/success-rate-monitor.js';
import type { ReadingScheduler } from './control/reading-scheduler.js';
import type { RelayAuditRunner } from './control/relay-audit-runner.js';
import type { SingletonDuty } from './control/singleton-duty.js';
import type { TimeSeriesWriter } from './integrations/time-series-writer.js';
import type { FirmwareProfile } from './domain/firmware-profile.js';
import type { SwitchOrder } from './domain/switch-order.js';
import type { GatewayStore, SubmitContext } from './store/store.js';
import { releaseMemoryWhenQuiet } from './runtime/quiet-memory.js';
import type { StatementCounter } from './store/statement-counter.js';
import { bindError } from './gateway/bind-error.js';
import { newTimeSeriesWriter, wireControl } from './gateway/control-wiring.js';
import { gatewayHealth } from './gateway/health.js';
import { MeterLinks } from './gateway/meter-links.js';
import { ownStore, type EarlyJournal } from './gateway/own-store.js';
import { wireSingletonJobs } from './gateway/singleton-jobs.js';
import { StopList } from './gateway/stop-list.js';
import { gatewayLogger } from './log/gateway-logger.js';
import { DEMO_ROLES, newDemoKeys, type DemoKeys } from './gateway/demo-keys.js';
import { startDemoBilling, type DemoBilling } from './gateway/demo-billing.js';
import { startDemoActivity } from './gateway/demo-activity.js';

export { newOrderId } from './domain/order-id.js';
import { newOrderId } from './domain/order-id.js';

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
  /** Per-meter DLMS keys and invocation counters over the store (no keys without a key master). */
  keyring: StoreKeyring;
  /** The demo keys when `auth.demoKeys` is set: those given in StartOptions, else new ones. */
  demoKeys: DemoKeys | undefined;
  /**
   * Drain and stop: admit no new work (writes answer 503 E_SHUTTING_DOWN, /healthz says `stopping`), let the attempts
   * on the wire finish for up to `control.shutdownGraceMs`, then stop everything. Orders not started stay queued for
   * the next start; attempts still on the wire after the grace period are verified by a read at the next start.
   */
  stop(): Promise<void>;
  /** Whether stop() has begun. */
  readonly stopping: boolean;
}

export interface StartOptions {
  logger?: Logger;
  clock?: Clock;
  /** Where secrets from the environment are read (the key master, transport keys); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** The demo keys to accept when `auth.demoKeys` is set (main.ts keeps them across restarts); default: new ones. */
  demoKeys?: DemoKeys;
  /** Observe every order change the loop makes (tests, metrics). */
  onOrderChange?: (order: SwitchOrder) => void;
  /** Count the store's statements into this counter (the 100k bench's statements per order); off by default. */
  countStatements?: StatementCounter;
  /** The SQLite journal's worker, started before the gateway's modules loaded (main.ts, startJournalEarly); taken over by the start. */
  journal?: EarlyJournal;
}

/**
 * Assemble and start the gateway described by `config`. The order is what keeps a failed start harmless: own the
 * store (a SQLite file is one gateway's), build everything, bind the API port, and only then connect to the broker
 * and start the control loop. A start that cannot own its store or bind its port sends nothing to any meter.
 */
export async function startGateway(config: GatewayConfig, options: StartOptions = {}): Promise<RunningGateway> {
  const logger = options.logger ?? gatewayLogger(config);
  const clock = options.clock ?? systemClock;
  const stops = new StopList(logger);
  // The main thread hands back the young generation a burst grew once the gateway is quiet, as the journal's worker
  // does (quiet-memory.ts): otherwise V8 can keep ~30 MiB of it for as long as the gateway stays idle.
  stops.add(releaseMemoryWhenQuiet());
  let stopping = false;
  // Closed at stop, or if the start fails before the store is owned (closing twice is nothing).
  const journal = options.journal;
  if (journal) stops.add(() => journal.store.close());

  try {
    // The demo's own billing system and calendar (a demo only: simulated fleet in process and demo keys).
    const demoBilling = isDemo(config) && config.demo.billing && (config.policy.paymentRecheck.url === null || config.notifications.webhookUrl === null) ? await startDemoBilling(logger) : undefined;
    if (demoBilling) stops.add(() => demoBilling.close());
    config = demoConfig(config, demoBilling, logger);
    const profiles = loadFirmwareProfiles(resolve(config.profilesDir));
    let planned: PlannedMeter[] = [];
    if (config.fleet.seed) {
      const unknown = config.fleet.seed.profiles.filter((p) => !profiles.has(p));
      if (unknown.length > 0) throw new Error(`fleet.seed.profiles: unknown profile(s) ${unknown.join(', ')}; loaded: ${[...profiles.keys()].join(', ')}`);
      planned = planFleet(config.fleet.seed);
    }

    // 1. Own the store.
    const { store, anchors } = await ownStore(config, planned, clock, stops, logger, options.countStatements, journal);

    // 2. Build the rest; nothing is started, nothing goes on the wire.
    // The key master of per-meter DLMS keys: a bad one stops the start; none runs the gateway without meter keys.
    const secretEnv = options.env ?? process.env;
    const keyMaster = masterKeyFromEnv(secretEnv);
    logger.info({ keyMasterId: keyMaster?.id ?? null }, keyMaster ? 'meter keys: key master configured' : 'meter keys: no key master (METERLINE_KEY_MASTER / _FILE): key imports are refused and no meter gets keys');
    const keyring = new StoreKeyring({ store, master: keyMaster, now: () => clock.now() });
    const links = new MeterLinks(config, profiles, planned, logger, keyring, { keyring, store });
    const submitContext = (): SubmitContext => ({
      now: clock.now(),
      reconnectLimitHours: config.reconnect.limitHours,
      newOrderId: () => newOrderId(clock.now()),
      policy: config.policy,
    });
    let duty: SingletonDuty | undefined;
    const timeSeries = await newTimeSeriesWriter(config, logger);
    const control = wireControl(
      { config, store, ...(timeSeries ? { timeSeries } : {}), drivers: links.drivers, profiles, clock, logger, submitContext, singletonDutyHeld: () => duty?.held ?? false, auditAnchorAgeSeconds: () => anchors.ageSeconds(), ...(options.onOrderChange ? { onOrderChange: options.onOrderChange } : {}) },
      stops,
    );
    const { controller, monitor, credit, relayAudit, metrics, events } = control;
    const singletons = wireSingletonJobs({ config, store, clock, logger, controller, monitor, relayAudit });
    duty = singletons.duty;
    const { keys, demoKeys } = apiKeys(config, store, options.demoKeys);
    // Configured clients are in the store too, so that an administrator can issue them more keys by id.
    await store.registerClients(keys.configuredClients(), clock.now());
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
        liveEvents: { ...config.api.liveEvents, onClientDropped: (reason) => metrics.sseClientsDropped.inc({ reason }), onClientCount: (n) => metrics.sseClients.set(n) },
        metrics,
        relayAudit: () => relayAudit.run(),
        auditAnchors: () => {
          const file = auditAnchorFile(config);
          return file && existsSync(file) ? readAuditAnchors(file) : [];
        },
        credit,
        meterKeys: {
          master: keyMaster,
          env: secretEnv,
          renew: (meterId, actor) => renewMeterKeys({ store, keyring, drivers: links.drivers, profiles, now: () => clock.now(), logger: logger.child({ component: 'key-renewal' }) }, meterId, actor),
        },
        links: () => links.linkHealth(),
        mqttContract: () => ({ brokerUrl: links.brokerUrl, embedded: config.mqtt.mode === 'embedded', instanceId: config.instanceId }),
        health: gatewayHealth(store, links, controller),
        stopping: () => stopping,
      },
      logger.child({ component: 'api' }),
    );
    stops.add(() => api.close());

    // 3. Bind the API port. Until the loop runs, /healthz answers `degraded` (control: starting).
    await api.listen({ host: config.api.host, port: config.api.port }).catch((err: unknown) => {
      throw bindError(err, `api.port ${config.api.port} on ${config.api.host}`, 'METERLINE__API__PORT');
    });
    const address = api.server.address();
    const port = typeof address === 'object' && address ? address.port : config.api.port;
    const apiUrl = `http://${config.api.host === '0.0.0.0' ? '127.0.0.1' : config.api.host}:${port}`;

    // 4. The wire: broker, drivers, then the loop (recovery of orders left in flight first), then the singleton jobs.
    // Key sets stored before their system title was kept beside them get it now, so their meters' pushes are found.
    if (config.dlms.push && keyring.enabled) {
      const filled = await keyring.backfillSystemTitles().catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'meter keys: could not record system titles for push'));
      if (filled && filled.recorded + filled.unreadable + filled.withoutTitle > 0) logger.info(filled, 'meter keys: system titles recorded for DLMS push');
    }
    await links.start(stops);
    await controller.start();
    stops.add(() => controller.stop());
    await duty.start();
    stops.add(() => duty.stop());

    if (links.fleet && demoKeys && (config.demo.reconnectEveryMs > 0 || config.demo.planEveryMs > 0)) {
      const activity = startDemoActivity({ config, fleet: links.fleet, apiUrl, keys: demoKeys, billing: demoBilling, logger });
      stops.add(() => activity.stop());
    }

    return {
      config,
      logger,
      store,
      controller,
      monitor,
      readings: singletons.readings,
      relayAudit,
      timeSeries: control.timeSeries,
      api,
      apiUrl,
      brokerUrl: links.brokerUrl,
      profiles,
      fleet: links.fleet,
      demoKeys,
      keyring,
      get stopping() {
        return stopping;
      },
      stop: async () => {
        if (stopping) return;
        stopping = true;
        await stops.runAll();
      },
    };
  } catch (err) {
    stopping = true;
    await stops.runAll();
    throw err;
  }
}

/** The API keys: from the configuration (hashes), plus the demo keys' hashes when `auth.demoKeys` is set. */
function apiKeys(config: GatewayConfig, store: GatewayStore, given: DemoKeys | undefined): { keys: ApiKeyRegistry; demoKeys: RunningGateway['demoKeys'] } {
  const keys = new ApiKeyRegistry(store);
  // A configured key belongs to the client its configured name names (DESIGN.md §8: an identity is an id).
  const configured = (name: string, role: Role): Principal => ({ clientId: configuredClientId(name), name, role });
  for (const k of config.auth.keys) keys.add(k.sha256, configured(k.name, k.role));
  if (!config.auth.demoKeys) return { keys, demoKeys: undefined };
  const demoKeys = given ?? newDemoKeys();
  for (const role of DEMO_ROLES) keys.add(sha256Hex(demoKeys[role]), configured(`demo-${role}`, role));
  return { keys, demoKeys };
}

/** The links by which a gateway could reach a meter that is not simulated in its own process. */
export function outsideLinks(config: GatewayConfig): string[] {
  const out: string[] = [];
  if (config.mqtt.mode !== 'embedded') out.push(`the external MQTT broker (mqtt.mode "${config.mqtt.mode}")`);
  for (const name of Object.keys(config.modbus.rtu)) out.push(`Modbus RTU link "${name}"`);
  for (const name of Object.keys(config.modbus.tcp)) out.push(`Modbus TCP link "${name}"`);
  for (const name of Object.keys(config.dlms.ports)) out.push(`DLMS port "${name}"`);
  for (const name of Object.keys(config.dlms.tcp ?? {})) out.push(`DLMS TCP link "${name}"`);
  if (config.dlms.push) out.push('the DLMS push listener');
  return out;
}

/** The demo runs when the simulated fleet is in the process and the demo keys are on (never in production: load-config). */
const isDemo = (config: GatewayConfig): boolean => config.simulator.inProcess && config.auth.demoKeys;

/**
 * The configuration the demo runs on: its billing system where none is configured (payment re-check and customer
 * notifications, signed as in production), and its calendar (`demo.policy`). Outside the demo, `config` as given.
 */
function demoConfig(config: GatewayConfig, billing: DemoBilling | undefined, logger: Logger): GatewayConfig {
  if (!isDemo(config)) return config;
  let policy = config.policy;
  let notifications = config.notifications;
  if (billing && policy.paymentRecheck.url === null) policy = { ...policy, paymentRecheck: { ...policy.paymentRecheck, url: billing.recheckUrl } };
  if (billing && notifications.webhookUrl === null) notifications = { ...notifications, webhookUrl: billing.notificationsUrl, secret: billing.secret };
  const calendar = config.demo.policy;
  if (calendar) {
    // The demo calendar shortens the 30-minute second notice (DOMAIN.md rule 2) and opens every hour: only for a
    // gateway whose every meter is simulated. A real meter could be reached over a serial or TCP link, or through a
    // broker other than the in-process one on loopback, so any such link refuses the start rather than relax a rule.
    const outside = outsideLinks(config);
    if (outside.length > 0) {
      throw new Error(
        `demo.policy shortens the pre-disconnect notice and opens the calendar, so it is allowed only when every meter is simulated; this configuration reaches real meters through ${outside.join(', ')}. Set demo.policy to null, or remove those links`,
      );
    }
    const allDay = ['00:00-24:00'];
    policy = {
      ...policy,
      notice: { ...policy.notice, secondNoticeMinutes: calendar.secondNoticeMinutes },
      ...(calendar.alwaysOpen ? { windows: { ...policy.windows, weekly: { mon: allDay, tue: allDay, wed: allDay, thu: allDay, fri: allDay, sat: allDay, sun: allDay }, holidays: [], holidayEveCutoff: null } } : {}),
    };
  }
  if (billing || calendar) {
    logger.info(
      { recheckUrl: policy.paymentRecheck.url, notificationsUrl: notifications.webhookUrl, alwaysOpen: calendar?.alwaysOpen ?? false, secondNoticeMinutes: policy.notice.secondNoticeMinutes },
      'demo: simulated billing answers the payment re-check and takes customer notifications; demo calendar in force',
    );
  }
  return { ...config, policy, notifications };
}
