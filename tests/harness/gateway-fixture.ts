import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { ConfigSchema, type GatewayConfig } from '../../src/config/config-schema.js';
import { asMqttProfile, type FirmwareProfile } from '../../src/domain/firmware-profile.js';
import { loadConfig } from '../../src/config/load-config.js';
import { isTerminal, type OrderState } from '../../src/domain/switch-order.js';
import type { RelayState } from '../../src/domain/relay.js';
import type { Clock } from '../../src/control/clock.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { MqttFleet } from '../../simulators/mqtt-fleet.js';
import { startMosquitto, type MosquittoBroker } from './mosquitto.js';
import { writeFastProfiles } from './test-profiles.js';

export interface TestMeter {
  meterId: string;
  profileId: string;
  initialRelay: RelayState;
  link?: string;
  region?: string;
  /** Simulated load in W while connected (default 1 kW). */
  loadW?: number;
}

export interface GatewayFixture {
  broker: MosquittoBroker;
  gateway: RunningGateway;
  fleet: MqttFleet;
  operatorKey: string;
  billingKey: string;
  supervisorKey: string;
  adminKey: string;
  fieldKey: string;
  /**
   * A request to the API. Writes (not GET/HEAD) carry a fresh Idempotency-Key, as every write must, unless `headers`
   * names one; `idempotencyKey: null` sends none (for the tests of the 400 without it).
   */
  http(method: string, path: string, options?: { body?: unknown; key?: string | null; headers?: Record<string, string>; idempotencyKey?: null }): Promise<{ status: number; body: any; headers: Headers }>;
  /** Poll the API until the order is in one of `states` (default: any terminal state). */
  waitForOrder(orderId: string, states?: OrderState[], timeoutMs?: number): Promise<any>;
  registerMeters(meters: TestMeter[]): Promise<void>;
  /** Stop the gateway and start it again on the same store (file or schema), broker and fleet: a restart. New demo keys. */
  /** Stop the gateway and start it again on the same store; `change` edits its configuration first (a changed calendar, say). */
  restartGateway(change?: (config: GatewayConfig) => GatewayConfig): Promise<void>;
  stop(): Promise<void>;
}

/** The audit key and anchor files of a gateway kept in `dir`. */
export const auditFilesIn = (dir: string) => ({ keyFile: join(dir, 'audit.key'), anchorFile: join(dir, 'audit-anchors.jsonl') });

/**
 * A gateway wired exactly as in production (SQLite file, MQTT driver, control loop, HTTP API on a real port)
 * against a real mosquitto and a simulated fleet in the test process, where tests inject faults.
 */
export async function startGatewayFixture(
  meters: TestMeter[],
  overrides: Partial<GatewayConfig> = {},
  /** `env`: where the gateway reads its secrets (key master, transport keys), default process.env; `logger`: where it logs (default per config: silent); `extraProfiles`: loaded beside the shipped ones; `meterClock`: the simulated meters' own clock (default the real one), to make a command arrive after its `exp`. */
  options: { clock?: Clock; env?: NodeJS.ProcessEnv; logger?: Logger; extraProfiles?: FirmwareProfile[]; meterClock?: Clock } = {},
): Promise<GatewayFixture> {
  const broker = await startMosquitto();
  const { dir: profilesDir, profiles } = writeFastProfiles(options.extraProfiles);
  const base = loadConfig({});
  // Tests not about the calendar run at any hour: every hour of every day is a permitted window (a test about the
  // calendar passes its own policy).
  const allDay = ['00:00-24:00'];
  const anyHour = { ...base.policy.windows, weekly: { mon: allDay, tue: allDay, wed: allDay, thu: allDay, fri: allDay, sat: allDay, sun: allDay }, holidayEveCutoff: null };
  const onPostgres = process.env.METERLINE_TEST_STORE === 'postgres';
  let config = ConfigSchema.parse({
    ...base,
    // SQLite: the audit key and anchors beside the database (the defaults). PostgreSQL has no default place for the
    // key: a directory of this gateway's own, as a deployment names one.
    ...(onPostgres ? { audit: { ...base.audit, ...auditFilesIn(mkdtempSync(join(tmpdir(), 'ml-gw-audit-'))) } } : {}),
    policy: { ...base.policy, windows: anyHour },
    instanceId: 'test',
    api: { ...base.api, host: '127.0.0.1', port: 0 },
    // METERLINE_TEST_STORE=postgres runs the same scenarios on PostgreSQL (a fresh schema per gateway).
    store:
      onPostgres
        ? {
            kind: 'postgres',
            sqlite: { path: 'unused.db' },
            postgres: { url: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test', schema: `ml_gw_${Math.random().toString(36).slice(2, 10)}`, maxConnections: 10 },
          }
        : { kind: 'sqlite', sqlite: { path: join(mkdtempSync(join(tmpdir(), 'ml-gw-')), 'gw.db') }, postgres: null },
    mqtt: { ...base.mqtt, mode: 'external', url: broker.url },
    profilesDir,
    control: { ...base.control, tickMs: 50 },
    auth: { keys: [], demoKeys: true },
    fleet: { seed: null },
    simulator: { ...base.simulator, inProcess: false },
    demo: { reconnectEveryMs: 0 },
    log: { level: 'silent' },
    ...overrides,
  });
  const fleet = new MqttFleet({
    brokerUrl: broker.url,
    logger: pino({ level: 'silent' }),
    ...(options.meterClock ? { now: () => options.meterClock!.now() } : {}),
    meters: meters.map((m) => ({ meterId: m.meterId, profile: asMqttProfile(profiles.get(m.profileId)!), initialRelay: m.initialRelay, ...(m.loadW !== undefined ? { loadW: m.loadW } : {}) })),
  });
  await fleet.start();
  const startOptions = { ...(options.clock ? { clock: options.clock } : {}), ...(options.env ? { env: options.env } : {}), ...(options.logger ? { logger: options.logger } : {}) };
  const gateway = await startGateway(config, startOptions);

  const http: GatewayFixture['http'] = async (method, path, options = {}) => {
    const key = options.key === undefined ? fixture.operatorKey : options.key;
    const write = method !== 'GET' && method !== 'HEAD';
    const callerNamesKey = Object.keys(options.headers ?? {}).some((h) => h.toLowerCase() === 'idempotency-key');
    const res = await fetch(fixture.gateway.apiUrl + path, {
      method,
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(write && !callerNamesKey && options.idempotencyKey !== null ? { 'idempotency-key': randomUUID() } : {}),
        ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...options.headers,
      },
      ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, body, headers: res.headers };
  };

  const fixture: GatewayFixture = {
    broker,
    gateway,
    fleet,
    operatorKey: gateway.demoKeys!.operator,
    billingKey: gateway.demoKeys!.billing,
    supervisorKey: gateway.demoKeys!.supervisor,
    adminKey: gateway.demoKeys!.admin,
    fieldKey: gateway.demoKeys!.field,
    http,
    async waitForOrder(orderId, states, timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const res = await http('GET', `/v1/orders/${orderId}`);
        if (res.status !== 200) throw new Error(`GET order ${orderId}: ${res.status} ${JSON.stringify(res.body)}`);
        const state = res.body.state as OrderState;
        if (states ? states.includes(state) : isTerminal(state)) return res.body;
        if (Date.now() > until) throw new Error(`order ${orderId} still ${state} after ${timeoutMs} ms: ${JSON.stringify(res.body)}`);
        await new Promise((r) => setTimeout(r, 40));
      }
    },
    async registerMeters(list) {
      for (const m of list) {
        const res = await http('PUT', `/v1/meters/${m.meterId}`, { body: { profileId: m.profileId, link: m.link ?? 'dc-1', region: m.region ?? 'north' } });
        if (res.status !== 200) throw new Error(`register ${m.meterId}: ${res.status} ${JSON.stringify(res.body)}`);
      }
    },
    async restartGateway(change) {
      await fixture.gateway.stop();
      if (change) config = ConfigSchema.parse(change(config));
      const again = await startGateway(config, startOptions);
      Object.assign(fixture, {
        gateway: again,
        operatorKey: again.demoKeys!.operator,
        billingKey: again.demoKeys!.billing,
        supervisorKey: again.demoKeys!.supervisor,
        adminKey: again.demoKeys!.admin,
        fieldKey: again.demoKeys!.field,
      });
    },
    async stop() {
      await fixture.gateway.stop();
      await fleet.stop();
      await broker.stop();
      const pgStore = config.store.kind === 'postgres' ? config.store.postgres : null;
      if (pgStore?.schema) {
        const pg = (await import('pg')).default;
        const client = new pg.Client({ connectionString: pgStore.url });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS ${pgStore.schema} CASCADE`);
        await client.end();
      }
    },
  };
  await fixture.registerMeters(meters);
  return fixture;
}
