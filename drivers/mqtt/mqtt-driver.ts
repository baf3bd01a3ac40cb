import { randomBytes } from 'node:crypto';
import { connect, type IClientPublishOptions, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import {
  meterIdFromTopic,
  topicFor,
  wildcardFor,
  type MqttFirmwareProfile,
} from '../../src/domain/firmware-profile.js';
import type { RelayState, SwitchAction } from '../../src/domain/relay.js';
import { zeroLinkCounters } from '../link-health.js';
import { tuneMqttPacket } from './packet-tuning.js';
import { batchWrites } from './write-batch.js';
import type {
  CommandAck,
  LimitAck,
  LinkHealth,
  MeterAddress,
  MeterDriver,
  RelayReading,
  RequestOptions,
  WireFailure,
  WireResult,
} from '../driver.js';

/**
 * The MQTT meter driver (the MQTT contract in README.md). It reports exactly what the wire said and nothing
 * more; the control loop decides what an answer means for an order. Its safety rules:
 * - a command is never queued while the broker is down (`link_error` at once): a relay command delivered
 *   later than the gateway expects is dangerous. `exp` in the payload and the MQTT 5 message expiry
 *   bound the command's life on the wire as a second line of defence;
 * - replies are matched by `cid` only, so a late reply to a timed-out request is never taken for the next;
 * - with several instances, a reply reaches the instance that asked: firmware that honours the MQTT 5 Response
 *   Topic answers on this instance's own topic; fixed-topic firmware (and Response Topic firmware that ignores it)
 *   answers on its reply topic, which every instance subscribes to and each ignores the cids it did not send.
 *   Status reports go to one instance of a shared-subscription group;
 * - requests in flight are bounded per connection (`maxInFlight`, below mosquitto's per-client queue of
 *   1,000), beyond which a broker silently drops QoS 1 messages.
 */

export interface MqttDriverOptions {
  brokerUrl: string;
  /** Gateway instance name; the client id is `meterline-<instanceId>-<random hex>`, unique per connection. */
  instanceId: string;
  /** Profiles whose reply and status topics the driver subscribes to. */
  profiles: readonly MqttFirmwareProfile[];
  /**
   * MQTT protocol version: 5 (default). 4 (MQTT 3.1.1, for brokers such as aedes) loses the message-expiry
   * property; the payload's `exp` still makes the meter drop a late command.
   */
  protocolVersion?: 4 | 5;
  /** Requests on the wire at once on this connection; further requests wait for a slot. Default 500. */
  maxInFlight?: number;
  /**
   * Shared-subscription group for status reports (`$share/<group>/<status topic>`): with several gateway
   * instances each report is handled by one of them. Default none: every instance gets every report.
   */
  sharedGroup?: string | null;
  logger?: Logger;
  /** Delay between reconnect attempts. Default 1000 ms. */
  reconnectPeriodMs?: number;
  /**
   * MQTT keepalive in seconds. Default 10: a connection that went silent (a partition that drops packets
   * without a reset) is given up after 1.5 × this with nothing heard. mqtt.js's own default, 60 s, left the
   * link "up" for 90 s in which every attempt was spent on commands that went nowhere.
   */
  keepaliveSec?: number;
  /**
   * How long `start()` waits for the first connection and subscription. Default 10 s. `start()` never fails for
   * want of the broker: after the first connection attempt fails (or this long), it returns with the link down, and
   * the driver keeps reconnecting every `reconnectPeriodMs`; meanwhile `isLinkUp` is false and orders wait.
   */
  startTimeoutMs?: number;
}

/** The broker connection as the health check shows it. */
export interface BrokerState {
  /** Connected and subscribed: requests can go out. */
  connected: boolean;
  /** The broker's URL without credentials. */
  broker: string;
  /** When the connection last came up or went down (ms since epoch; 0 before the first attempt ended). */
  since: number;
  /** Why it is down: the client's last error (connection refused, not authorised, subscription refused). */
  lastError: string | null;
}

/** A URL as it may be shown in logs and the health check: no user name or password. */
export function publicBrokerUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url.replace(/\/\/[^@/]*@/, '//');
  }
}

/**
 * An error as a line: its message, its code, and the errors inside it (a connect to a name with an IPv6 and an IPv4
 * address fails with an AggregateError whose own message is empty: logged as `err.message`, it read "undefined").
 */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as NodeJS.ErrnoException).code;
  const inner = err instanceof AggregateError ? err.errors.map(describeError) : [];
  const parts = [err.message || err.name, ...inner].filter((x) => x !== '');
  const text = parts.join('; ');
  return code !== undefined && !text.includes(String(code)) ? `${text} (${code})` : text;
}

export interface MqttDriverCounters {
  published: number;
  /** Highest number of requests on the wire at once. */
  peakInFlight: number;
  replies: number;
  ok: number;
  timeouts: number;
  nacks: number;
  garbled: number;
  linkErrors: number;
  /** Replies whose cid matches no pending request (late answers to timed-out requests): ignored. */
  unknownCidReplies: number;
  /** Undecodable replies with no pending request on that meter to attribute them to: ignored. */
  unattributedGarbage: number;
  statusReports: number;
  badStatusReports: number;
  connects: number;
}

const ReplySchema = z.object({
  cid: z.string().min(1),
  result: z.enum(['ok', 'nack']),
  relay: z.string().optional(),
  voltageV: z.number().optional(),
  energyWh: z.number().optional(),
  /** The demand limit in force (W), null for none: on every reply of firmware with a limiter (`limitOp`). */
  loadLimitW: z.number().nullable().optional(),
  /** Voltage on the load side of the relay, where the firmware measures it (DOMAIN.md rule 14). */
  loadSideVoltageV: z.number().optional(),
  ts: z.number().optional(),
  reason: z.string().optional(),
});
type Reply = z.infer<typeof ReplySchema>;

const noop = (): void => {};

const OPTIONAL_NUMBER_FIELDS = ['voltageV', 'energyWh', 'loadSideVoltageV', 'ts'] as const;

/**
 * The common well-formed reply, checked by hand: what `ReplySchema.safeParse` would return for it (the known fields
 * only), without zod's cost on every reply (issue 19). Undefined: anything else, which zod judges (and words).
 */
function quickReply(json: unknown): Reply | undefined {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return undefined;
  const o = json as Record<string, unknown>;
  if (typeof o.cid !== 'string' || o.cid.length === 0 || (o.result !== 'ok' && o.result !== 'nack')) return undefined;
  const reply: Reply = { cid: o.cid, result: o.result };
  if (o.relay !== undefined) {
    if (typeof o.relay !== 'string') return undefined;
    reply.relay = o.relay;
  }
  for (const k of OPTIONAL_NUMBER_FIELDS) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) return undefined;
    reply[k] = v;
  }
  if (o.loadLimitW !== undefined) {
    if (o.loadLimitW !== null && (typeof o.loadLimitW !== 'number' || !Number.isFinite(o.loadLimitW))) return undefined;
    reply.loadLimitW = o.loadLimitW;
  }
  if (o.reason !== undefined) {
    if (typeof o.reason !== 'string') return undefined;
    reply.reason = o.reason;
  }
  return reply;
}

const StatusSchema = z.object({
  relay: z.string(),
  voltageV: z.number().optional(),
  energyWh: z.number().optional(),
  ts: z.number().optional(),
});

type Op = 'read' | SwitchAction | 'limit';

interface Pending {
  cid: string;
  meterId: string;
  orderId?: string;
  op: Op;
  profile: MqttFirmwareProfile;
  publishedAt: number;
  /** Date.now() at or after which, with no reply, the request times out (DeadlineSweep). */
  deadline: number;
  timeoutMs: number;
  /** Decode a well-formed reply into the request's result. */
  onReply(reply: Reply, evidence: string, receivedAt: number): void;
  fail(outcome: WireFailure, detail: string, evidence?: string): void;
}

/** A request's fields for log lines, in this key order. */
function logContext(meterId: string, orderId: string | undefined, attempt: number | undefined, cid: string, op: Op): { meterId: string; orderId?: string; attempt?: number; cid: string; op: Op } {
  const ctx = { meterId } as { meterId: string; orderId?: string; attempt?: number; cid: string; op: Op };
  if (orderId !== undefined) ctx.orderId = orderId;
  if (attempt !== undefined) ctx.attempt = attempt;
  ctx.cid = cid;
  ctx.op = op;
  return ctx;
}

/**
 * One request on the wire. Its state on one object with methods, where it was five closures and a timer per request
 * (issue 19: allocations per order on the main thread); the driver does the work (replied, failed, expire).
 */
class PendingRequest<T> implements Pending {
  orderId?: string;
  /** mqtt.js's publish callback: a failed publish fails the request as a link error. */
  readonly published: (err?: Error) => void;

  constructor(
    private readonly driver: MqttDriver,
    readonly cid: string,
    readonly meterId: string,
    readonly op: Op,
    readonly profile: MqttFirmwareProfile,
    readonly publishedAt: number,
    readonly deadline: number,
    readonly timeoutMs: number,
    private readonly options: RequestOptions,
    readonly decode: Decode<T>,
    private readonly resolve: (result: WireResult<T>) => void,
  ) {
    if (options.orderId !== undefined) this.orderId = options.orderId;
    this.published = (err) => {
      if (err) this.fail('link_error', `publish failed: ${err.message}`);
    };
  }

  ctx(): ReturnType<typeof logContext> {
    return logContext(this.meterId, this.options.orderId, this.options.attempt, this.cid, this.op);
  }

  onReply(reply: Reply, evidence: string, receivedAt: number): void {
    this.driver.replied(this, reply, evidence, receivedAt);
  }

  fail(outcome: WireFailure, detail: string, evidence?: string): void {
    this.driver.failed(this, outcome, detail, evidence);
  }

  /** The request's one result: the first settles it, any later is ignored. */
  settle(result: WireResult<T>): void {
    if (this.driver.forget(this)) this.resolve(result);
  }
}

/**
 * A request waiting for an in-flight slot: what sending it needs, and its promise's settlers, on one object (issue 19:
 * it was a promise, a closure and a second promise per waiting request, and with the driver's window full most
 * requests wait long enough to outlive a scavenge).
 */
class QueuedRequest<T> implements SlotWaiter {
  constructor(
    private readonly driver: MqttDriver,
    private readonly meter: MeterAddress,
    private readonly profile: MqttFirmwareProfile,
    private readonly op: Op,
    private readonly options: RequestOptions,
    private readonly decode: Decode<T>,
    private readonly args: Record<string, unknown> | undefined,
    private readonly resolve: (result: WireResult<T>) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  granted(ok: boolean): void {
    // Sent from inside another request's ending (its freed slot): a throw here is this request's failure, not that one's.
    try {
      this.driver.send(this.meter, this.profile, this.op, this.options, this.decode, this.args, ok, this.resolve, this.reject);
    } catch (err) {
      this.reject(err as Error);
    }
  }
}

/**
 * Request deadlines on one timer (issue 19: a timer set and cleared per request was main-thread work per order).
 * Requests wait in first-in-first-out queues, one per timeout length, so each queue's deadlines only grow; the timer is
 * set for the earliest deadline at the head of a queue. A request that settles stays queued (it is skipped when it
 * reaches the head), so ending a request costs nothing here. A request times out no earlier than its deadline, as with
 * a timer of its own; the driver empties the queues whenever no request is in flight.
 */
class DeadlineSweep {
  private readonly queues = new Map<number, { items: Pending[]; head: number }>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;

  constructor(
    private readonly isPending: (p: Pending) => boolean,
    private readonly expire: (p: Pending) => void,
  ) {}

  add(p: Pending): void {
    let q = this.queues.get(p.timeoutMs);
    if (!q) {
      q = { items: [], head: 0 };
      this.queues.set(p.timeoutMs, q);
    }
    q.items.push(p);
    if (p.deadline < this.timerAt) this.arm(p.deadline);
  }

  /** Nothing is in flight: forget every queued request and the timer. */
  clear(): void {
    this.queues.clear();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.sweep(), Math.max(0, at - Date.now()));
  }

  private sweep(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = Date.now();
    const due: Pending[] = [];
    let next = Infinity;
    for (const [ms, q] of this.queues) {
      const { items } = q;
      while (q.head < items.length) {
        const p = items[q.head]!;
        if (!this.isPending(p)) q.head++;
        else if (p.deadline <= now) {
          due.push(p);
          q.head++;
        } else break;
      }
      if (q.head >= items.length) this.queues.delete(ms);
      else {
        if (q.head > 1024 && q.head * 2 > items.length) {
          q.items = items.slice(q.head);
          q.head = 0;
        }
        next = Math.min(next, q.items[q.head]!.deadline);
      }
    }
    if (next !== Infinity) this.arm(next);
    for (const p of due) this.expire(p);
  }
}

type StatusListener = (meterId: string, reading: RelayReading, evidence: string) => void;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Payload as evidence: its text when it is UTF-8, otherwise `hex:<bytes>`. */
export function payloadEvidence(payload: Uint8Array): string {
  try {
    return utf8.decode(payload);
  } catch {
    return `hex:${Buffer.from(payload).toString('hex')}`;
  }
}

/** Something waiting for a slot: `granted(true)` when it has one, `granted(false)` when none will come (closed). */
interface SlotWaiter {
  granted(ok: boolean): void;
}

/**
 * Counting semaphore with a FIFO of waiters; `close()` makes every waiter (and later caller) get false. A freed slot goes
 * to the next waiter at once, in a loop rather than by recursion: a waiter that gives its slot straight back (the link
 * is down) does not nest the next one's grant inside its own.
 */
class Slots {
  private free: number;
  private readonly waiters: SlotWaiter[] = [];
  private closed = false;
  private granting = false;
  constructor(size: number) {
    this.free = size;
  }
  get waiting(): number {
    return this.waiters.length;
  }
  /** A slot now (true), none ever (false: closed), or undefined: `wait()` for one. */
  tryAcquire(): boolean | undefined {
    if (this.closed) return false;
    if (this.free > 0) {
      this.free--;
      return true;
    }
    return undefined;
  }
  /** Queue `waiter` for the next free slot (after tryAcquire() said there is none now). */
  wait(waiter: SlotWaiter): void {
    this.waiters.push(waiter);
  }
  release(): void {
    this.free++;
    if (this.granting) return;
    this.granting = true;
    try {
      while (this.free > 0 && this.waiters.length > 0) {
        this.free--;
        this.waiters.shift()!.granted(true);
      }
    } finally {
      this.granting = false;
    }
  }
  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.granted(false);
  }
}

/** The relay states a word can name, in the order they are matched (one array, not one per reply). */
const RELAY_STATES = ['connected', 'disconnected', 'armed'] as const;

function relayFromWord(profile: MqttFirmwareProfile, word: string | undefined): RelayState | undefined {
  if (word === undefined) return undefined;
  const values = profile.mqtt.relayValues;
  for (const state of RELAY_STATES) if (values[state] === word) return state;
  return undefined;
}

/**
 * A nack in the driver's words: one whose reason is among the profile's load-side refusal words is the meter
 * refusing to close onto a live load side (DOMAIN.md rule 14), `load_side_voltage`, never retried; any other is `nack`.
 */
function nackOutcome(profile: MqttFirmwareProfile, reply: Reply): { outcome: 'nack' | 'load_side_voltage'; detail: string } {
  if (reply.reason !== undefined && profile.mqtt.loadSideRefusalReasons?.includes(reply.reason)) {
    const volts = reply.loadSideVoltageV !== undefined ? `${reply.loadSideVoltageV} V` : 'voltage';
    return { outcome: 'load_side_voltage', detail: `meter refused to close: ${volts} on the load side (reason ${JSON.stringify(reply.reason)})` };
  }
  return { outcome: 'nack', detail: `meter refused: ${reply.reason ?? 'no reason given'}` };
}

/** A well-formed reply as a request's result (one function per kind of request, not a closure per request: issue 19). */
type Decode<T> = (reply: Reply, relay: RelayState, receivedAt: number, profile: MqttFirmwareProfile) => T;

const decodeReading: Decode<RelayReading> = (reply, relay, receivedAt, profile) => {
  const reading: RelayReading = { relay, at: reply.ts ?? receivedAt };
  if (reply.voltageV !== undefined) reading.voltageV = reply.voltageV;
  if (reply.energyWh !== undefined) reading.energyWh = reply.energyWh;
  // Only firmware with a limiter reports one: for any other, the reading says nothing of a limit.
  if (profile.mqtt.limitOp !== undefined && reply.loadLimitW !== undefined) reading.loadLimitW = reply.loadLimitW;
  if (reply.loadSideVoltageV !== undefined) reading.loadSideVoltageV = reply.loadSideVoltageV;
  return reading;
};

const decodeCommandAck: Decode<CommandAck> = (_reply, relay) => ({ claimedRelay: relay });

const decodeLimitAck: Decode<LimitAck> = (reply) => (reply.loadLimitW !== undefined ? { claimedLimitW: reply.loadLimitW } : {});

export class MqttDriver implements MeterDriver {
  readonly protocol = 'mqtt' as const;
  readonly clientId: string;
  readonly counters: MqttDriverCounters = {
    published: 0,
    peakInFlight: 0,
    replies: 0,
    ok: 0,
    timeouts: 0,
    nacks: 0,
    garbled: 0,
    linkErrors: 0,
    unknownCidReplies: 0,
    unattributedGarbage: 0,
    statusReports: 0,
    badStatusReports: 0,
    connects: 0,
  };

  private readonly options: MqttDriverOptions;
  private readonly log: Logger;
  private readonly slots: Slots;
  private readonly pending = new Map<string, Pending>();
  /** Pending requests per meter, oldest first (to attribute undecodable replies). */
  private readonly pendingByMeter = new Map<string, Pending[]>();
  /** Every in-flight request's deadline, on one timer. */
  private readonly deadlines = new DeadlineSweep(
    (p) => this.pending.get(p.cid) === p,
    (p) => this.expire(p as PendingRequest<unknown>),
  );
  private readonly replyTemplates = new Set<string>();
  /** This instance's own reply topic (MQTT 5 Response Topic) template. */
  private readonly ownReplyTemplate: string;
  private readonly statusTemplates = new Map<string, MqttFirmwareProfile[]>();
  private readonly statusListeners: StatusListener[] = [];
  private client: MqttClient | undefined;
  private subscribed = false;
  private stopped = false;
  private readonly brokerName: string;
  private stateSince = 0;
  private lastError: string | null = null;
  /** The last failure on the connection, kept after it recovers (GET /v1/links). */
  private lastFailure: { at: number; message: string } | null = null;
  private readonly createdAt = Date.now();
  /** The last error line logged and when, so a broker that stays down is logged once a minute, not once a second. */
  private loggedError = { text: '', at: 0 };
  /** When the broker last sent anything (any packet) on the current connection. */
  private lastPacketAt = 0;

  constructor(options: MqttDriverOptions) {
    this.options = options;
    this.log = (options.logger ?? pino({ level: 'silent' })).child({ driver: 'mqtt' });
    this.clientId = `meterline-${options.instanceId}-${randomBytes(6).toString('hex')}`;
    this.slots = new Slots(Math.max(1, options.maxInFlight ?? 500));
    this.ownReplyTemplate = `meterline/${options.instanceId}/reply/{meterId}`;
    this.brokerName = publicBrokerUrl(options.brokerUrl);
    for (const p of options.profiles) {
      this.replyTemplates.add(p.mqtt.replyTopic);
      const list = this.statusTemplates.get(p.mqtt.statusTopic) ?? [];
      list.push(p);
      this.statusTemplates.set(p.mqtt.statusTopic, list);
    }
  }

  /** Some profile's firmware answers on the Response Topic (MQTT 5 only; 3.1.1 has no such property). */
  private get usesResponseTopic(): boolean {
    return (this.options.protocolVersion ?? 5) === 5 && this.options.profiles.some((p) => p.mqtt.responseTopic);
  }

  /** Connected to the broker and subscribed: requests can go out. */
  /** Every MQTT link shares this driver's broker connection. */
  isLinkUp(_link: string): boolean {
    return this.connected;
  }

  /** Every MQTT link shares this driver's window: requests wait for a slot when it is full. */
  hasBacklog(_link: string): boolean {
    return this.slots.waiting > 0;
  }

  get connected(): boolean {
    return !this.stopped && this.subscribed && (this.client?.connected ?? false);
  }

  brokerState(): BrokerState {
    return { connected: this.connected, broker: this.brokerName, since: this.stateSince, lastError: this.connected ? null : (this.lastError ?? (this.client ? 'connecting for the first time' : 'not started')) };
  }

  /**
   * The one broker connection this driver keeps, named by the broker's address (without credentials): replies with a
   * correlation id no request waits for, reconnects (every connection after the first), timeouts, garbled replies.
   */
  linkHealth(): LinkHealth[] {
    const c = this.counters;
    const since = this.stateSince || this.createdAt;
    return [
      {
        link: this.brokerName,
        kind: 'mqtt',
        state: this.connected ? 'up' : 'down',
        since,
        lastError: this.lastFailure && { ...this.lastFailure },
        counters: { ...zeroLinkCounters(), garbled: c.garbled + c.unattributedGarbage, timeouts: c.timeouts, unknownCorrelationIds: c.unknownCidReplies, reconnects: Math.max(0, c.connects - 1) },
      },
    ];
  }

  /** Requests currently on the wire. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Requests waiting for an in-flight slot. */
  get queued(): number {
    return this.slots.waiting;
  }

  async start(): Promise<void> {
    if (this.client) throw new Error('MqttDriver already started');
    // mqtt-packet's `debug` calls (~25 per packet, a cost even when off) and its write per field (issue 19): unless DEBUG
    // is set, no debug calls, and a PUBLISH or PUBACK in one buffer, the same bytes (packet-tuning.ts).
    tuneMqttPacket();
    const client = connect(this.options.brokerUrl, {
      clientId: this.clientId,
      protocolVersion: this.options.protocolVersion ?? 5,
      clean: true,
      reconnectPeriod: this.options.reconnectPeriodMs ?? 1000,
      connectTimeout: 5000,
      keepalive: this.options.keepaliveSec ?? 10,
      // A PINGREQ every keepalive interval whatever else flows, instead of the keepalive timer cleared and set again on
      // every PUBACK received (mqtt.js's default; a timer per packet, issue 19). A silent broker is noticed no later:
      // 1.5 keepalive intervals after its last PINGRESP, which is never after its last packet.
      reschedulePings: false,
      resubscribe: false,
      // Never hold QoS 0 packets for later either: nothing this driver sends may go out late.
      queueQoSZero: false,
      // mqtt-packet's number cache off (process-wide, set here before this client writes a packet): the few packets
      // mqtt-packet still writes (CONNECT, SUBSCRIBE, PINGREQ...; PUBLISH and PUBACK are fast-packet.ts's) take a
      // two-byte buffer per number they carry, instead of a table of all 65,536 made on the first packet written and
      // kept for good: ~7 MiB of the main thread's heap (issue 19, memory per meter). The same bytes on the wire.
      writeCache: false,
      // mqtt.js logs each packet several times through `debug`, which costs even when off (issue 19): a no-op unless
      // DEBUG is set (then mqtt.js's own `debug` logger, as before).
      ...(process.env.DEBUG ? {} : { log: noop }),
    });
    this.client = client;
    client.on('connect', () => {
      this.counters.connects++;
      this.subscribed = false;
      const topics: Record<string, { qos: 1 }> = {};
      // Every profile's fixed reply topic, Response Topic firmware included: MQTT 3.1.1 firmware, or MQTT 5 firmware
      // that ignores the Response Topic, answers there, and an unheard reply would leave a relay that moved unverified.
      for (const p of this.options.profiles) topics[wildcardFor(p.mqtt.replyTopic)] = { qos: 1 };
      if (this.usesResponseTopic) topics[wildcardFor(this.ownReplyTemplate)] = { qos: 1 };
      const share = this.options.sharedGroup ? `$share/${this.options.sharedGroup}/` : '';
      for (const t of this.statusTemplates.keys()) topics[share + wildcardFor(t)] = { qos: 1 };
      client.subscribe(topics, (err, granted) => {
        const refused = granted?.filter((g) => g.qos > 2) ?? [];
        if (err || refused.length > 0) {
          this.lastError = `subscription refused by the broker: ${err ? describeError(err) : refused.map((g) => `${g.topic} (reason ${g.qos})`).join(', ')}`;
          this.noteFailure(this.lastError);
          this.log.error({ broker: this.brokerName, err: err ? describeError(err) : undefined, refused }, 'subscribe failed; requests fail as link_error');
          return;
        }
        this.subscribed = true;
        this.lastError = null;
        this.stateSince = Date.now();
        this.log.info({ clientId: this.clientId, broker: this.brokerName, topics: Object.keys(topics) }, 'connected and subscribed');
      });
    });
    client.on('close', () => {
      if (this.subscribed) {
        this.stateSince = Date.now();
        this.noteFailure('broker connection lost; reconnecting');
        this.log.warn({ clientId: this.clientId, broker: this.brokerName }, 'broker connection lost; reconnecting');
      }
      this.subscribed = false;
    });
    client.on('error', (err) => this.onClientError(err));
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    client.on('packetreceive', () => {
      this.lastPacketAt = Date.now();
      // From the first packet of each connection (its CONNACK) on, what is written in one turn of the event loop
      // (commands, read-backs, PUBACKs) leaves in one socket write (write-batch.ts).
      batchWrites(client.stream);
    });

    // Wait for the first connection, but not past its first failure: a broker that is down at start is a degraded
    // start (the health check names the broker, orders wait), not a failed one; mqtt.js keeps reconnecting.
    const startedAt = Date.now();
    const deadline = startedAt + (this.options.startTimeoutMs ?? 10_000);
    let failedOnce = false;
    const failed = () => (failedOnce = true);
    client.once('error', failed);
    client.once('close', failed);
    while (!this.connected && !failedOnce && !this.stopped && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    client.removeListener('error', failed);
    client.removeListener('close', failed);
    if (!this.connected && !this.stopped) {
      this.stateSince = Date.now();
      this.lastError ??= failedOnce ? 'the connection closed before it was established' : `no connection within ${Date.now() - startedAt} ms`;
      this.noteFailure(this.lastError);
      this.log.error(
        { broker: this.brokerName, err: this.lastError, retryEveryMs: this.options.reconnectPeriodMs ?? 1000 },
        'MQTT broker not reachable at start; running degraded and reconnecting: orders wait for it without spending attempts',
      );
    }
  }

  /** A client error: kept for the health check, and logged with what it really says (once a minute while it repeats). */
  private onClientError(err: unknown): void {
    const text = describeError(err);
    this.lastError = text;
    this.noteFailure(text);
    const now = Date.now();
    if (text === this.loggedError.text && now - this.loggedError.at < 60_000) return;
    this.loggedError = { text, at: now };
    this.log.warn({ broker: this.brokerName, err: text }, `mqtt client error: ${text}`);
  }

  private noteFailure(message: string): void {
    this.lastFailure = { at: Date.now(), message };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.slots.close();
    for (const p of [...this.pending.values()]) p.fail('link_error', 'driver stopped');
    const client = this.client;
    this.subscribed = false;
    if (client) await client.endAsync(true).catch(() => undefined);
  }

  onStatusReport(listener: StatusListener): void {
    this.statusListeners.push(listener);
  }

  readRelay(meter: MeterAddress, options: RequestOptions): Promise<WireResult<RelayReading>> {
    return this.request<RelayReading>(meter, 'read', options, decodeReading);
  }

  operateRelay(meter: MeterAddress, action: SwitchAction, options: RequestOptions): Promise<WireResult<CommandAck>> {
    return this.request<CommandAck>(meter, action, options, decodeCommandAck);
  }

  /**
   * Set (watts) or remove (null) the demand limit with the profile's `limitOp` (README "MQTT contract"). The reply's
   * `loadLimitW` is a claim; the control loop reads the limit back. A profile without `limitOp` has no limiter.
   */
  setLoadLimit(meter: MeterAddress, limitW: number | null, options: RequestOptions): Promise<WireResult<LimitAck>> {
    if (meter.profile.protocol !== 'mqtt' || meter.profile.mqtt.limitOp === undefined) {
      return Promise.resolve({ outcome: 'nack', detail: `firmware profile ${meter.profile.id} has no load limiter (no mqtt.limitOp)`, latencyMs: 0 });
    }
    return this.request<LimitAck>(meter, 'limit', options, decodeLimitAck, { limitW });
  }

  /**
   * A request on the wire, its result when it ends. Not an async function: the promise it returns is the request's own
   * (an async function returning it would wrap it in a second, settled a turn later: issue 19, promises per order). A
   * request that must wait for a slot waits as one small object (QueuedRequest), settling this same promise.
   */
  private request<T>(
    meter: MeterAddress,
    op: Op,
    options: RequestOptions,
    decode: Decode<T>,
    /** Fields the command carries besides cid and op (a limit's `limitW`). */
    args?: Record<string, unknown>,
  ): Promise<WireResult<T>> {
    return new Promise<WireResult<T>>((resolve, reject) => {
      const { meterId, profile } = meter;
      if (profile.protocol !== 'mqtt') throw new Error(`MqttDriver: meter ${meterId} has ${profile.protocol} profile ${profile.id}`);
      if (!this.replyTemplates.has(profile.mqtt.replyTopic)) {
        throw new Error(`MqttDriver: profile ${profile.id} was not given to the driver, its replies are not subscribed`);
      }
      // A free slot is taken at once, without a turn through the microtask queue per request.
      const slot = this.slots.tryAcquire();
      if (slot === undefined) this.slots.wait(new QueuedRequest<T>(this, meter, profile, op, options, decode, args, resolve, reject));
      else this.send(meter, profile, op, options, decode, args, slot, resolve, reject);
    });
  }

  /**
   * A request that was given a slot (`slot` true) or none (false: the driver stopped): on the wire (settled when it
   * ends), or a link error now. @internal (QueuedRequest)
   */
  send<T>(
    meter: MeterAddress,
    profile: MqttFirmwareProfile,
    op: Op,
    options: RequestOptions,
    decode: Decode<T>,
    args: Record<string, unknown> | undefined,
    slot: boolean,
    resolve: (result: WireResult<T>) => void,
    reject: (err: Error) => void,
  ): void {
    const { meterId } = meter;
    const { correlationId: cid, orderId, timeoutMs } = options;
    if (!slot) return resolve(this.notSent(meterId, op, options, 'driver stopped'));
    if (!this.connected) {
      this.slots.release();
      return resolve(this.notSent(meterId, op, options, this.stopped ? 'driver stopped' : 'broker not connected'));
    }
    if (this.pending.has(cid)) {
      this.slots.release();
      return reject(new Error(`MqttDriver: correlation id ${cid} is already in flight`));
    }

    const publishedAt = Date.now();
    const entry = new PendingRequest<T>(this, cid, meterId, op, profile, publishedAt, publishedAt + timeoutMs, timeoutMs, options, decode, resolve);
    this.pending.set(cid, entry);
    if (this.pending.size > this.counters.peakInFlight) this.counters.peakInFlight = this.pending.size;
    const list = this.pendingByMeter.get(meterId);
    if (list) list.push(entry);
    else this.pendingByMeter.set(meterId, [entry]);
    this.deadlines.add(entry);

    // The op word on the wire: the firmware's own for a limit (profile `limitOp`), the action's name otherwise.
    const body: Record<string, unknown> = { cid, op: op === 'limit' ? profile.mqtt.limitOp : op };
    if (args) for (const k in args) body[k] = args[k];
    if (orderId !== undefined) body.orderId = orderId;
    body.ts = publishedAt;
    body.exp = publishedAt + timeoutMs;
    this.counters.published++;
    if (this.log.isLevelEnabled('debug')) this.log.debug({ ...entry.ctx(), timeoutMs }, 'publish');
    const properties: { messageExpiryInterval: number; responseTopic?: string; correlationData?: string } = { messageExpiryInterval: Math.max(1, Math.ceil(timeoutMs / 1000)) };
    if (profile.mqtt.responseTopic && this.usesResponseTopic) {
      properties.responseTopic = topicFor(this.ownReplyTemplate, meterId);
      // The cid's UTF-8 bytes, as a Buffer of it would be: mqtt-packet writes a string as its UTF-8 bytes, and mqtt.js's
      // copy of the packet for its outgoing store does not copy a string (issue 19: a Buffer and its copy per request).
      properties.correlationData = cid;
    }
    this.client!.publish(topicFor(profile.mqtt.commandTopic, meterId), JSON.stringify(body), { qos: profile.mqtt.qos, properties: properties as IClientPublishOptions['properties'] }, entry.published);
  }

  /** A request that never went out: counted, logged, its result. */
  private notSent<T>(meterId: string, op: Op, options: RequestOptions, detail: string): WireResult<T> {
    this.counters.linkErrors++;
    this.log.warn({ ...logContext(meterId, options.orderId, options.attempt, options.correlationId, op), detail }, 'request not sent: link error');
    return { outcome: 'link_error', detail, latencyMs: 0 };
  }

  /** @internal A request has ended (PendingRequest): off the books, its slot free for the next. */
  forget(entry: Pending): boolean {
    if (this.pending.get(entry.cid) !== entry) return false; // already settled
    this.pending.delete(entry.cid);
    const list = this.pendingByMeter.get(entry.meterId);
    if (list) {
      const i = list.indexOf(entry);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.pendingByMeter.delete(entry.meterId);
    }
    if (this.pending.size === 0) this.deadlines.clear();
    this.slots.release();
    return true;
  }

  /** @internal A request's deadline passed without a reply (DeadlineSweep). */
  expire(entry: PendingRequest<unknown>): void {
    if (this.pending.get(entry.cid) !== entry) return;
    const { timeoutMs } = entry;
    this.counters.timeouts++;
    this.noteFailure(`meter ${entry.meterId}: no reply within ${timeoutMs} ms`);
    this.log.info({ ...entry.ctx(), timeoutMs }, 'no reply within timeout');
    if (entry.profile.mqtt.qos > 0 && this.lastPacketAt < entry.publishedAt) this.dropSilentConnection(timeoutMs);
    entry.settle({ outcome: 'timeout', detail: `no reply within ${timeoutMs} ms`, latencyMs: Date.now() - entry.publishedAt });
  }

  /** @internal A well-formed reply to `entry` (PendingRequest). */
  replied<T>(entry: PendingRequest<T>, reply: Reply, evidence: string, receivedAt: number): void {
    const latencyMs = receivedAt - entry.publishedAt;
    const { profile } = entry;
    if (reply.result === 'nack') {
      this.counters.nacks++;
      const { outcome, detail } = nackOutcome(profile, reply);
      this.log.info({ ...entry.ctx(), outcome, detail }, 'nack');
      entry.settle({ outcome, detail, evidence, latencyMs });
      return;
    }
    const relay = relayFromWord(profile, reply.relay);
    if (relay === undefined) {
      entry.fail('garbled', `relay word ${JSON.stringify(reply.relay)} is not one of the profile's relay values`, evidence);
      return;
    }
    this.counters.ok++;
    if (this.log.isLevelEnabled('debug')) this.log.debug({ ...entry.ctx(), relay, latencyMs }, 'reply');
    entry.settle({ outcome: 'ok', value: entry.decode(reply, relay, receivedAt, profile), evidence, latencyMs });
  }

  /** @internal A request failed (PendingRequest.fail). */
  failed<T>(entry: PendingRequest<T>, outcome: WireFailure, detail: string, evidence: string | undefined): void {
    this.noteFailure(`meter ${entry.meterId}: ${detail}`);
    if (outcome === 'garbled') this.counters.garbled++;
    if (outcome === 'link_error') this.counters.linkErrors++;
    this.log.warn({ ...entry.ctx(), outcome, detail, evidence }, 'request failed');
    const r: WireResult<T> = { outcome, detail, latencyMs: Date.now() - entry.publishedAt };
    if (evidence !== undefined) r.evidence = evidence;
    entry.settle(r);
  }

  /**
   * The broker has said nothing (not even the PUBACK of a QoS 1 command) since a request that has now timed
   * out was published: the connection is silently dead (a partition that drops packets). Give it up now
   * rather than at the keepalive timeout, so the link reads as down and orders wait for it instead of
   * spending their attempts on commands that go nowhere; mqtt.js reconnects.
   */
  private dropSilentConnection(timeoutMs: number): void {
    const client = this.client;
    if (!client || this.stopped || !this.subscribed) return;
    this.log.warn({ clientId: this.clientId, silentMs: Date.now() - this.lastPacketAt, timeoutMs }, 'broker silent for a whole request timeout: dropping the connection and reconnecting');
    this.subscribed = false;
    client.stream?.destroy();
  }

  private onMessage(topic: string, payload: Buffer): void {
    const receivedAt = Date.now();
    const own = meterIdFromTopic(this.ownReplyTemplate, topic);
    if (own !== undefined) {
      this.onReply(own, payload, receivedAt);
      return;
    }
    for (const t of this.replyTemplates) {
      const meterId = meterIdFromTopic(t, topic);
      if (meterId !== undefined) {
        this.onReply(meterId, payload, receivedAt);
        return;
      }
    }
    for (const [t, profiles] of this.statusTemplates) {
      const meterId = meterIdFromTopic(t, topic);
      if (meterId !== undefined) {
        this.onStatus(meterId, profiles, payload, receivedAt);
        return;
      }
    }
    this.log.debug({ topic }, 'message on an unexpected topic ignored');
  }

  private onReply(meterId: string, payload: Buffer, receivedAt: number): void {
    this.counters.replies++;
    const evidence = payloadEvidence(payload);
    let json: unknown;
    try {
      json = JSON.parse(evidence);
    } catch {
      json = undefined;
    }
    const quick = quickReply(json);
    const parsed = quick ? ({ success: true, data: quick } as const) : ReplySchema.safeParse(json);
    if (parsed.success) {
      const entry = this.pending.get(parsed.data.cid);
      if (entry && entry.meterId === meterId) {
        entry.onReply(parsed.data, evidence, receivedAt);
      } else {
        this.counters.unknownCidReplies++;
        this.log.debug({ meterId, cid: parsed.data.cid, pendingFor: entry?.meterId }, 'reply with unknown cid ignored (late reply?)');
      }
      return;
    }
    // Undecodable: the request it names, else the oldest request waiting on this meter.
    const namedCid = typeof json === 'object' && json !== null ? (json as { cid?: unknown }).cid : undefined;
    const named = typeof namedCid === 'string' ? this.pending.get(namedCid) : undefined;
    const entry = named && named.meterId === meterId ? named : this.pendingByMeter.get(meterId)?.[0];
    const why =
      json === undefined
        ? 'reply is not JSON'
        : `reply lacks required fields: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`;
    if (!entry) {
      this.counters.unattributedGarbage++;
      this.log.debug({ meterId, evidence }, `undecodable reply with no pending request ignored (${why})`);
      return;
    }
    entry.fail('garbled', why, evidence);
  }

  private onStatus(meterId: string, profiles: readonly MqttFirmwareProfile[], payload: Buffer, receivedAt: number): void {
    const evidence = payloadEvidence(payload);
    let relay: RelayState | undefined;
    let parsed: z.infer<typeof StatusSchema> | undefined;
    try {
      const r = StatusSchema.safeParse(JSON.parse(evidence));
      if (r.success) {
        parsed = r.data;
        for (const p of profiles) relay ??= relayFromWord(p, r.data.relay);
      }
    } catch {
      // fall through: counted below
    }
    if (!parsed || relay === undefined) {
      this.counters.badStatusReports++;
      this.log.warn({ meterId, evidence }, 'undecodable status report ignored');
      return;
    }
    this.counters.statusReports++;
    const reading: RelayReading = { relay, at: parsed.ts ?? receivedAt };
    if (parsed.voltageV !== undefined) reading.voltageV = parsed.voltageV;
    if (parsed.energyWh !== undefined) reading.energyWh = parsed.energyWh;
    this.log.debug({ meterId, relay }, 'status report');
    for (const l of this.statusListeners) {
      try {
        l(meterId, reading, evidence);
      } catch (err) {
        this.log.error({ meterId, err: (err as Error).message }, 'status listener threw');
      }
    }
  }
}
