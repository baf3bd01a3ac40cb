import { spawn } from 'node:child_process';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { expect } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import type { GatewayConfig } from '../../src/config/config-schema.js';
import type { PolicyConfig } from '../../src/domain/policy/policy-config.js';
import { startBillingHook, type BillingHook } from '../harness/billing-hook.js';
import { FakeClock } from '../harness/fake-clock.js';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';
import { startWebhookReceiver, type WebhookReceiver } from '../harness/webhook-receiver.js';

/**
 * The safety suite's world (issue 20, item 9): a gateway wired as in production on the gateway's own fake clock,
 * a real mosquitto, simulated meters, a real billing re-check endpoint, a real customer channel that takes the
 * pre-disconnect notices, and an independent MQTT client that records every command published to any meter's
 * command topic. A test about a rule drives each path a disconnect can take (single order, bulk, plan, CLI, a
 * retry, a restart, a policy change in between) and judges by what reached the broker, not only by order states.
 */

export const MIN = 60_000;
export const HOUR = 60 * MIN;
export const DAY = 24 * HOUR;
/** Tuesday 24 November 2026, 10:00 UTC: inside the default windows (Mon–Thu 08–16), outside friendly-credit hours. */
export const TUESDAY_10 = Date.parse('2026-11-24T10:00:00Z');
export const CLOSES = 'acme-em340-fw2.4';
const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'meterline.js');
const CHANNEL_SECRET = 'customer-channel-secret-1';

/** Every command any meter's command topic carried, as the broker delivered it to an independent subscriber. */
export interface WireRecorder {
  commands: { meterId: string; op: string; at: number }[];
  close(): Promise<void>;
}

async function recordWire(brokerUrl: string): Promise<WireRecorder> {
  const commands: WireRecorder['commands'] = [];
  const client = mqtt.connect(brokerUrl, { clientId: `safety-wire-${process.pid}-${Math.random().toString(36).slice(2)}`, reconnectPeriod: 200 });
  client.on('message', (topic, payload) => {
    const meterId = /^meters\/([^/]+)\/cmd$/.exec(topic)?.[1];
    if (!meterId) return;
    let op = 'unreadable';
    try {
      op = String((JSON.parse(payload.toString()) as { op?: unknown }).op);
    } catch {
      /* recorded as unreadable: still a command on the wire */
    }
    commands.push({ meterId, op, at: Date.now() });
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => client.subscribe('meters/+/cmd', { qos: 1 }, (err) => (err ? reject(err) : resolve())));
    client.once('error', reject);
  });
  return { commands, close: () => client.endAsync().then(() => undefined) };
}

export interface SafetyWorld {
  f: GatewayFixture;
  clock: FakeClock;
  hook: BillingHook;
  channel: WebhookReceiver;
  wire: WireRecorder;
  /** A fresh Idempotency-Key header. */
  key(): Record<string, string>;
  /** Disconnect commands the broker carried to this meter. */
  disconnectsOnWire(meterId: string): number;
  http: GatewayFixture['http'];
  order(id: string): Promise<any>;
  /** Real time for the control loop to tick a few times (tickMs 50) while the fake clock stands still. */
  settle(ms?: number): Promise<void>;
  waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs?: number): Promise<void>;
  /** Move the fake clock on in steps, letting the loop and the dispatchers run between them. */
  advance(ms: number, steps?: number): Promise<void>;
  single(meterId: string, body: Record<string, unknown>, key?: string): Promise<{ status: number; body: any }>;
  bulk(orders: Record<string, unknown>[], key?: string): Promise<{ status: number; body: any }>;
  /** Draft (operator) and approve (supervisor) a plan; returns the approved plan's items by meter. */
  plan(meterIds: string[], options?: { reason?: string; from?: number; to?: number }): Promise<{ id: string; items: Record<string, { orderId: string | null; state: string | null; why: string | null }> }>;
  /** The built `meterline` command against the gateway. */
  cli(args: string[], key?: string): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Stop the gateway and start it again on the same store, broker, fleet and clock; `change` edits its configuration first. */
  restart(change?: (config: GatewayConfig) => GatewayConfig): Promise<void>;
  /** A notice served `daysAgo` days ago by letter, delivered, with its reference (rule 1's evidence). */
  serveNotice(meterId: string, daysAgo: number): Promise<void>;
  close(): Promise<void>;
}

export interface SafetyOptions {
  policy?: Partial<PolicyConfig>;
  config?: Partial<GatewayConfig>;
  start?: number;
}

export async function startSafetyWorld(meters: (string | TestMeter)[], options: SafetyOptions = {}): Promise<SafetyWorld> {
  const clock = new FakeClock(options.start ?? TUESDAY_10);
  const hook = await startBillingHook();
  const channel = await startWebhookReceiver(CHANNEL_SECRET);
  const base = loadConfig({});
  const f = await startGatewayFixture(
    meters.map((m) => (typeof m === 'string' ? { meterId: m, profileId: CLOSES, initialRelay: 'connected' as const } : m)),
    {
      policy: { ...base.policy, paymentRecheck: { url: hook.url, timeoutMs: 1000, retryAfterMs: 10 * MIN }, ...options.policy },
      notifications: { webhookUrl: channel.url, secret: CHANNEL_SECRET, pollMs: 50 },
      ...options.config,
    },
    { clock },
  );
  const wire = await recordWire(f.broker.url);
  let n = 0;
  const http: GatewayFixture['http'] = (method, path, o) => f.http(method, path, o);
  const waitFor: SafetyWorld['waitFor'] = async (what, cond, timeoutMs = 15_000) => {
    const until = Date.now() + timeoutMs;
    while (!(await cond())) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 30));
    }
  };
  const settle = (ms = 400) => new Promise<void>((r) => setTimeout(r, ms));
  const key = () => ({ 'idempotency-key': `safety-${process.pid}-${++n}` });
  const world: SafetyWorld = {
    f,
    clock,
    hook,
    channel,
    wire,
    key,
    http,
    disconnectsOnWire: (meterId) => wire.commands.filter((c) => c.meterId === meterId && c.op === 'disconnect').length,
    order: async (id) => (await f.http('GET', `/v1/orders/${id}`)).body,
    settle,
    waitFor,
    async advance(ms, steps = 4) {
      for (let i = 0; i < steps; i++) {
        clock.advance(ms / steps);
        await settle(150);
      }
    },
    single: (meterId, body, k) => f.http('POST', `/v1/meters/${meterId}/disconnect`, { key: k ?? f.operatorKey, headers: key(), body }),
    bulk: (orders, k) => f.http('POST', '/v1/orders/bulk', { key: k ?? f.operatorKey, headers: key(), body: { orders } }),
    async plan(meterIds, o = {}) {
      const draft = await f.http('POST', '/v1/plans', {
        key: f.operatorKey,
        headers: key(),
        body: { reason: o.reason ?? 'arrears', windowFrom: new Date(o.from ?? clock.now() - MIN).toISOString(), windowTo: new Date(o.to ?? clock.now() + 14 * DAY).toISOString(), meters: meterIds },
      });
      expect(draft.status, JSON.stringify(draft.body)).toBe(201);
      const approved = await f.http('POST', `/v1/plans/${draft.body.id}/approve`, { key: f.supervisorKey, headers: key() });
      expect(approved.status, JSON.stringify(approved.body)).toBe(200);
      return { id: approved.body.id, items: Object.fromEntries(approved.body.items.map((i: any) => [i.meterId, { orderId: i.orderId, state: i.state, why: i.why }])) };
    },
    cli: (args, k) =>
      new Promise((resolve, reject) => {
        const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, METERLINE_URL: f.gateway.apiUrl, METERLINE_KEY: k ?? f.operatorKey };
        const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      }),
    restart: (change) => f.restartGateway(change),
    async serveNotice(meterId, daysAgo) {
      const r = await f.http('POST', `/v1/meters/${meterId}/notices`, {
        key: f.billingKey,
        headers: key(),
        body: { channel: 'letter', servedAt: new Date(clock.now() - daysAgo * DAY).toISOString(), delivery: 'delivered', receiptRef: `RM-${meterId}-${daysAgo}` },
      });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    },
    async close() {
      await wire.close().catch(() => undefined);
      await f.stop();
      await hook.close();
      await channel.close();
    },
  };
  return world;
}

/** The order ids of a bulk response, in request order, with the state each was admitted in. */
export const bulkResults = (res: { body: any }): { id: string; state: string; reason: string | null }[] =>
  (res.body.results as any[]).map((r) => ({ id: r.order.id, state: r.order.state, reason: r.order.stateReason }));
