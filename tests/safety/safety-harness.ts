import { spawn } from 'node:child_process';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, expect } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import type { GatewayConfig } from '../../src/config/config-schema.js';
import type { PolicyConfig } from '../../src/domain/policy/policy-config.js';
import type { RelayState } from '../../src/domain/relay.js';
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

/** An instant (ms since the epoch) as the ISO 8601 string the API speaks. */
export const iso = (ms: number): string => new Date(ms).toISOString();
/** A simulated meter of the closing profile with its relay connected, in `region` if one is given. */
export const connectedMeter = (meterId: string, region?: string): TestMeter => ({ meterId, profileId: CLOSES, initialRelay: 'connected', ...(region ? { region } : {}) });
/** The body of a direct customer_request disconnect with its reference (`REQ-<meter>`). */
export const customerRequest = (meterId: string) => ({ reason: 'customer_request', reference: `REQ-${meterId}` });
/** A predicate: the order is held and its stateReason carries `code`. */
export const isHeld = (code: string) => (o: any): boolean => o.state === 'held' && String(o.stateReason ?? '').startsWith(`${code}:`);
/** The states an order does not leave. */
export const FINAL_STATES: readonly string[] = ['done', 'failed', 'refused', 'cancelled', 'superseded'];
/** A predicate: the order is in one of FINAL_STATES. */
export const isFinal = (o: any): boolean => FINAL_STATES.includes(o.state);
/** The order's state, reason, approval and history as JSON, for assertion messages (what a bug report needs). */
export const orderStory = (o: any): string => JSON.stringify({ id: o.id, state: o.state, stateReason: o.stateReason, attemptsUsed: o.attemptsUsed, approvedBy: o.approvedBy, events: o.events }, null, 1);
/** The paths an arrears disconnect can take into the gateway. */
export type ArrearsPath = 'single' | 'bulk' | 'cli' | 'plan';

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
  /** A disconnect for arrears by one path, with rule 1 satisfied (a letter delivered 4 days ago); the order's id. */
  arrearsDisconnectBy(path: ArrearsPath, meterId: string): Promise<string>;
  /** Set the fake clock to `t`, which must not be before now (for files whose tests move one clock forward only). */
  moveClockTo(t: number): void;
  /** The simulated meter's relay as it is now. */
  relayOf(meterId: string): RelayState;
  /** PUT the meter's flags (billing's key unless `key` is given), expecting 200; the meter's flags as returned. */
  setFlags(meterId: string, flags: Record<string, unknown>, key?: string): Promise<any>;
  /** Every order of the meter, oldest first (GET /v1/orders?meterId=&order=asc). */
  ordersOf(meterId: string): Promise<any[]>;
  /** The meter's disconnect orders (GET /v1/orders?meterId=, disconnects only). */
  disconnectOrdersOf(meterId: string): Promise<any[]>;
  /** The meter dropped the order's first command: wait until the order is back in the queue and that command was on the wire. */
  firstAttemptDropped(id: string, meterId: string): Promise<void>;
  /** Wait until the order's stateReason starts with `code:` (positive evidence the gate judged it under that rule); the order then. */
  waitForReason(id: string, code: string, timeoutMs?: number): Promise<any>;
  /** Poll until the order is in one of `states` or the time is up; returns it either way (the assertion says what it was). */
  pollOrderState(id: string, states: readonly string[], timeoutMs?: number): Promise<any>;
  /** Wait until the order satisfies `pred` and return it; on timeout the error carries the order's state and events. */
  waitUntilOrder(id: string, what: string, pred: (o: any) => boolean, timeoutMs?: number): Promise<any>;
  /** When the customer channel accepted the order's pre-disconnect notification (rule 2), once it has. */
  secondNoticeDeliveredAt(id: string): Promise<number>;
  /** The pre-disconnect notices the customer channel accepted for this meter. */
  preDisconnectNoticesTo(meterId: string): WebhookReceiver['received'];
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
    meters.map((m) => (typeof m === 'string' ? connectedMeter(m) : m)),
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
  const order: SafetyWorld['order'] = async (id) => (await f.http('GET', `/v1/orders/${id}`)).body;
  const ordersOf: SafetyWorld['ordersOf'] = async (meterId) => (await f.http('GET', `/v1/orders?meterId=${meterId}&order=asc&limit=1000`)).body.items;
  const world: SafetyWorld = {
    f,
    clock,
    hook,
    channel,
    wire,
    key,
    http,
    disconnectsOnWire: (meterId) => wire.commands.filter((c) => c.meterId === meterId && c.op === 'disconnect').length,
    order,
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
    async arrearsDisconnectBy(path, meterId) {
      await world.serveNotice(meterId, 4);
      switch (path) {
        case 'single': {
          const r = await world.single(meterId, { reason: 'arrears' });
          expect(r.status, JSON.stringify(r.body)).toBe(202);
          return r.body.id;
        }
        case 'bulk': {
          const r = await world.bulk([{ meterId, action: 'disconnect', reason: 'arrears' }]);
          expect(r.status, JSON.stringify(r.body)).toBe(202);
          expect(r.body.created).toBe(1);
          return bulkResults(r)[0]!.id;
        }
        case 'cli': {
          const r = await world.cli(['disconnect', meterId, '--reason', 'arrears', '--json']);
          expect(r.code, r.stderr).toBe(0);
          return JSON.parse(r.stdout).id;
        }
        case 'plan': {
          const plan = await world.plan([meterId]);
          expect(plan.items[meterId]!.orderId, JSON.stringify(plan.items)).toBeTruthy();
          return plan.items[meterId]!.orderId!;
        }
      }
    },
    moveClockTo(t) {
      expect(t, `the clock moves forward only (now ${iso(clock.now())})`).toBeGreaterThanOrEqual(clock.now());
      clock.set(t);
    },
    relayOf: (meterId) => f.fleet.meter(meterId).relay,
    async setFlags(meterId, flags, k) {
      const r = await f.http('PUT', `/v1/meters/${meterId}/flags`, { key: k ?? f.billingKey, headers: key(), body: flags });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return r.body;
    },
    ordersOf,
    disconnectOrdersOf: async (meterId) => (await ordersOf(meterId)).filter((o) => o.action === 'disconnect'),
    async firstAttemptDropped(id, meterId) {
      await waitFor(`the first attempt of ${id} to fail`, async () => {
        const o = await order(id);
        return o.attemptsUsed >= 1 && o.state === 'queued';
      });
      await waitFor(`the dropped command on the wire to ${meterId}`, () => world.disconnectsOnWire(meterId) >= 1);
    },
    async waitForReason(id, code, timeoutMs) {
      await waitFor(`order ${id} to carry ${code}`, async () => ((await order(id)).stateReason ?? '').startsWith(`${code}:`), timeoutMs);
      return order(id);
    },
    async pollOrderState(id, states, timeoutMs = 8_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const o = await order(id);
        if (states.includes(o.state) || Date.now() > until) return o;
        await new Promise((r) => setTimeout(r, 40));
      }
    },
    async waitUntilOrder(id, what, pred, timeoutMs = 15_000) {
      let last: any;
      try {
        await waitFor(`order ${id}: ${what}`, async () => pred((last = await order(id))), timeoutMs);
      } catch (e) {
        throw new Error(`${(e as Error).message}; it is ${last?.state} (${last?.stateReason}); events: ${JSON.stringify(last?.events)}`);
      }
      return last;
    },
    async secondNoticeDeliveredAt(id) {
      let at: string | null = null;
      await waitFor(`the pre-disconnect notification of ${id} delivered`, async () => {
        at = ((await order(id)).notifications ?? []).find((n: any) => n.kind === 'pre_disconnect_notice' && n.deliveredAt !== null)?.deliveredAt ?? null;
        return at !== null;
      });
      return Date.parse(at!);
    },
    preDisconnectNoticesTo: (meterId) => channel.received.filter((m) => m.kind === 'pre_disconnect_notice' && m.body.meterId === meterId),
    async close() {
      await wire.close().catch(() => undefined);
      await f.stop();
      await hook.close();
      await channel.close();
    },
  };
  return world;
}

/** One world for the whole test file: the object returned is filled in before its first test (60 s to start) and closed after its last. */
export function safetyWorldForFile(meters: (string | TestMeter)[], options: SafetyOptions = {}): SafetyWorld {
  const world = {} as SafetyWorld;
  beforeAll(async () => {
    Object.assign(world, await startSafetyWorld(meters, options));
  }, 60_000);
  afterAll(async () => {
    await world.close?.();
  });
  return world;
}

/** The order ids of a bulk response, in request order, with the state each was admitted in. */
export const bulkResults = (res: { body: any }): { id: string; state: string; reason: string | null }[] =>
  (res.body.results as any[]).map((r) => ({ id: r.order.id, state: r.order.state, reason: r.order.stateReason }));
