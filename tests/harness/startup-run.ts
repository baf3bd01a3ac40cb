import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newApiKey } from '../../src/api/auth.js';
import type { FirmwareProfile } from '../../src/domain/firmware-profile.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import type { OrderRequest } from '../../src/store/store.js';
import { planFleet } from '../../simulators/fleet-plan.js';
import type { MqttFleet } from '../../simulators/mqtt-fleet.js';
import { GatewayProcess, MAIN, writeGatewayConfig } from './fault-run.js';
import { freePort } from './mosquitto.js';
import { openPolicy } from './test-policy.js';
import { writeFastProfiles } from './test-profiles.js';

/**
 * Plumbing for the start-up and shutdown tests (tests/e2e/startup-*.test.ts, signals, disk full): the gateway as the
 * built program in a child process on a SQLite file, its meters simulated in the test process (they keep a log of
 * every command they receive), and a raw HTTP helper that returns the status instead of throwing.
 */
export type FleetSeed = Parameters<typeof planFleet>[0];

export interface StartupRun {
  dir: string;
  sqlitePath: string;
  configFile: string;
  port: number;
  apiKey: string;
  seed: FleetSeed;
  profiles: Map<string, FirmwareProfile>;
  meterIds: string[];
  gateway: GatewayProcess;
  request(path: string, init?: RequestInit): Promise<{ status: number; body: any; headers: Headers }>;
}

export interface StartupRunOptions {
  name: string;
  count: number;
  mqttUrl: string;
  /** Where the SQLite file and the configuration go (default: a new temp directory). */
  dir?: string;
  /** The SQLite file (default `<dir>/gw.db`): a second instance passes the first one's. */
  sqlitePath?: string;
  instanceId?: string;
  apiKey?: string;
  control?: Record<string, unknown>;
  links?: number;
  /** Meter id prefix (default `S-`): runs that share a broker need their own meters. */
  prefix?: string;
  /** The gateway's log level (default warn). */
  logLevel?: string;
}

export async function prepareStartupRun(o: StartupRunOptions): Promise<StartupRun> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first`);
  const { dir: profilesDir, profiles } = writeFastProfiles();
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), `ml-${o.name}-`));
  const apiKey = o.apiKey ?? newApiKey('op');
  const port = await freePort();
  const seed: FleetSeed = { count: o.count, prefix: o.prefix ?? 'S-', profiles: ['acme-em340-fw2.4', 'volta-pp20-fw1.7'], links: o.links ?? 2, regions: ['north'] };
  const sqlitePath = o.sqlitePath ?? join(dir, 'gw.db');
  const configFile = join(dir, `${o.name}.json`);
  writeGatewayConfig(configFile, {
    instanceId: o.instanceId ?? o.name,
    api: { port, rateLimit: { max: 100_000, timeWindowMs: 1000 } },
    store: { kind: 'sqlite', sqlite: { path: sqlitePath }, postgres: null },
    mqttUrl: o.mqttUrl,
    profilesDir,
    control: { linkConcurrency: 20, ...o.control },
    apiKey,
    seed,
    ...(o.logLevel ? { logLevel: o.logLevel } : {}),
  });
  const request: StartupRun['request'] = async (path, init = {}) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      ...init,
      signal: AbortSignal.timeout(10_000),
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
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
  return { dir, sqlitePath, configFile, port, apiKey, seed, profiles, meterIds: planFleet(seed).map((m) => m.meterId), gateway: new GatewayProcess(configFile), request };
}

/** A reconnect for payment, as billing sends it. */
export function reconnectRequest(meterId: string, now: number): OrderRequest {
  return { meterId, action: 'reconnect', reason: 'payment', note: null, urgent: false, notBefore: null, paymentAt: now, requestedBy: 'billing', idempotencyKey: null, requestHash: `h-${meterId}` };
}

/**
 * Leave work in the run's SQLite file as a crash would, written through the store as the gateway writes it: the
 * seeded meters, a reconnect queued for each, and the first `inFlight` of them on the wire under a lease of an
 * earlier run that has run out. A gateway that starts on this file acts on them at once.
 */
export async function leaveWorkInStore(run: StartupRun, inFlight: number): Promise<void> {
  const store = new SqliteStore(run.sqlitePath);
  try {
    await store.migrate();
    const now = Date.now();
    await store.upsertMeters(planFleet(run.seed), now);
    let n = 0;
    const outs = await store.submitOrders(
      run.meterIds.map((id) => reconnectRequest(id, now)),
      { now, reconnectLimitHours: 24, newOrderId: () => `ord_left_${String(++n).padStart(4, '0')}`, policy: openPolicy() },
    );
    const ids = outs.map((o) => o.order.id).slice(0, inFlight);
    await store.beginAttempts(ids, now - 60_000, { owner: 'an-earlier-run', until: now - 30_000 });
  } finally {
    await store.close();
  }
}

/** Every command (and read) the simulated meters received, over the whole fleet. */
export function receivedByFleet(fleet: MqttFleet): { op: string; at: number; meterId: string }[] {
  return [...fleet.meterIds()].flatMap((id) => fleet.meter(id).received.map((c) => ({ op: c.op, at: c.at, meterId: id })));
}

/** Poll `check` until it returns a value (not undefined), or fail with `what` after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, everyMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  let lastError = '';
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      lastError = (err as Error).message;
    }
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${lastError}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
