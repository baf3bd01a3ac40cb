import { randomBytes } from 'node:crypto';
import { connect, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import { batchWrites } from '../drivers/mqtt/write-batch.js';
import {
  meterIdFromTopic,
  topicFor,
  wildcardFor,
  type MqttFirmwareProfile,
} from '../src/domain/firmware-profile.js';
import type { RelayState } from '../src/domain/relay.js';
import { SimulatedMeter, type MeterFaults, type MeterOp, type MeterReply } from './meter-model.js';

/**
 * A fleet of simulated MQTT meters behind a real broker, speaking the MQTT contract in README.md. It lets the
 * gateway be exercised end to end (and load-tested) against 10,000+ meters from one process: meters are
 * plain objects in a Map, and a handful of MQTT connections carry all their traffic. Over MQTT 5 commands
 * arrive through shared subscriptions (`$share/<group>/...`, one group per fleet), so the broker hands each
 * command to exactly one connection. Over MQTT 3.1.1 (brokers without shared subscriptions, e.g. aedes)
 * every connection sees every command and handles only the meters hashed to it: still exactly once.
 */

export interface FleetMeterSpec {
  meterId: string;
  profile: MqttFirmwareProfile;
  initialRelay?: RelayState;
  initialEnergyWh?: number;
  /** Constant load in W while connected (default 1 kW). */
  loadW?: number;
  faults?: Partial<MeterFaults>;
  /** The meter refuses to close with voltage on its load side (rule 14). Default: as the profile says (`checkedBy: "meter"`). */
  checksLoadSide?: boolean;
}

export interface MqttFleetOptions {
  brokerUrl: string;
  meters: readonly FleetMeterSpec[];
  /** 5 (default): shared subscriptions. 4 (MQTT 3.1.1): plain subscriptions, meters hashed to connections. */
  protocolVersion?: 4 | 5;
  /** MQTT connections to spread the traffic over. Default 4. */
  connections?: number;
  /** Clock for the meters (ms since epoch). Default Date.now. */
  now?: () => number;
  logger?: Logger;
  /** Reconnect delay after losing the broker. Default 1000 ms. */
  reconnectPeriodMs?: number;
  /** How long `start()` waits for every connection to be up and subscribed. Default 10 s. */
  startTimeoutMs?: number;
  /** Keep each meter's log of received commands (SimulatedMeter.received). Default true; the CLI, which nobody inspects, turns it off. */
  keepCommandLog?: boolean;
  /**
   * mqtt.js's `writeCache` for the fleet's connections. Default true (mqtt.js's default). The gateway's in-process
   * fleet connects before its driver and turns it off, as the driver does (MqttDriver.start): mqtt-packet's number
   * cache is process-wide, and a first packet written with it on makes a table of 65,536 buffers that stays.
   */
  writeCache?: boolean;
}

export interface FleetCounters {
  /** Command messages received (any payload). */
  messages: number;
  /** Commands handed to a meter. */
  commands: number;
  /** Payloads that were not a valid command: ignored. */
  badPayloads: number;
  /** Commands on a topic naming no meter of this fleet (or a meter of another profile): ignored. */
  unknownMeter: number;
  /** Replies published (garbled ones included). */
  replies: number;
  garbledReplies: number;
  /** Commands the meter kept silent on (offline, expired, dropped). */
  silent: number;
  statusReports: number;
  /** Successful (re)connections over all connections. */
  connects: number;
  publishErrors: number;
}

/** A command as the contract gives it (what the simulator reads of it; other fields are ignored). */
interface Command {
  cid: string;
  /** `disconnect`, `reconnect`, `read`, or the profile's `limitOp` word (checked per meter: `meterOp`). */
  op: string;
  /** For the limit op: watts, or null to remove the limit. */
  limitW?: number | null;
  orderId?: string;
  ts?: number;
  exp?: number;
}

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * `body` (parsed JSON) as a command, or the reasons it is not one. Hand-written rather than a schema library's parse
 * (per message, that was a good part of the simulator's CPU per order); accepts exactly what the zod schema it
 * replaces did: cid and op non-empty strings; limitW absent, null or a positive integer; orderId a string, ts and exp
 * numbers when present.
 */
export function parseCommand(body: unknown): Command | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'the payload is not a JSON object';
  const b = body as Record<string, unknown>;
  const issues: string[] = [];
  if (typeof b.cid !== 'string' || b.cid.length === 0) issues.push('cid: a non-empty string is required');
  if (typeof b.op !== 'string' || b.op.length === 0) issues.push('op: a non-empty string is required');
  if (b.limitW !== undefined && b.limitW !== null && !(Number.isSafeInteger(b.limitW) && (b.limitW as number) > 0)) issues.push('limitW: a positive integer or null');
  if (b.orderId !== undefined && typeof b.orderId !== 'string') issues.push('orderId: a string');
  if (b.ts !== undefined && !isNumber(b.ts)) issues.push('ts: a number');
  if (b.exp !== undefined && !isNumber(b.exp)) issues.push('exp: a number');
  if (issues.length > 0) return issues.join('; ');
  const cmd: Command = { cid: b.cid as string, op: b.op as string };
  if (b.limitW !== undefined) cmd.limitW = b.limitW as number | null;
  if (b.orderId !== undefined) cmd.orderId = b.orderId as string;
  if (b.ts !== undefined) cmd.ts = b.ts as number;
  if (b.exp !== undefined) cmd.exp = b.exp as number;
  return cmd;
}

interface FleetEntry {
  meter: SimulatedMeter;
  profile: MqttFirmwareProfile;
}

interface Link {
  index: number;
  client: MqttClient;
  subscribed: boolean;
}

/** The meter model's op for a command's op word, by the meter's profile; undefined for a word it does not know. */
function meterOp(profile: MqttFirmwareProfile, word: string): MeterOp | undefined {
  if (profile.mqtt.limitOp !== undefined && word === profile.mqtt.limitOp) return 'limit';
  return word === 'disconnect' || word === 'reconnect' || word === 'read' ? word : undefined;
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class MqttFleet {
  readonly counters: FleetCounters = {
    messages: 0,
    commands: 0,
    badPayloads: 0,
    unknownMeter: 0,
    replies: 0,
    garbledReplies: 0,
    silent: 0,
    statusReports: 0,
    connects: 0,
    publishErrors: 0,
  };

  private readonly options: MqttFleetOptions;
  private readonly now: () => number;
  private readonly log: Logger;
  /** Whether the logger logs at debug (read once: the per-command debug line's object is not built otherwise). */
  private readonly debugLog: boolean;
  private readonly entries = new Map<string, FleetEntry>();
  /** Distinct command topic templates of the fleet's profiles. */
  private readonly commandTemplates: string[];
  private readonly shareGroup = `meterline-sim-${randomBytes(4).toString('hex')}`;
  private readonly clientIdBase = `meterline-sim-${randomBytes(4).toString('hex')}`;
  private links: Link[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(options: MqttFleetOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.log = options.logger ?? pino({ level: 'silent' });
    this.debugLog = this.log.isLevelEnabled('debug');
    const templates = new Set<string>();
    const onChange = (meter: SimulatedMeter) => this.publishStatus(meter);
    for (const spec of options.meters) {
      if (this.entries.has(spec.meterId)) throw new Error(`MqttFleet: duplicate meter id ${spec.meterId}`);
      const meter = new SimulatedMeter({
        id: spec.meterId,
        remoteReconnect: spec.profile.relay.remoteReconnect,
        now: this.now,
        initialRelay: spec.initialRelay,
        initialEnergyWh: spec.initialEnergyWh,
        ...(spec.loadW !== undefined ? { loadW: spec.loadW } : {}),
        faults: spec.faults,
        checksLoadSide: spec.checksLoadSide ?? spec.profile.relay.loadSideVoltageCheck.checkedBy === 'meter',
        keepCommandLog: options.keepCommandLog ?? true,
      });
      meter.onChange(onChange);
      this.entries.set(spec.meterId, { meter, profile: spec.profile });
      templates.add(spec.profile.mqtt.commandTopic);
    }
    this.commandTemplates = [...templates];
  }

  /** The simulated meter behind an id, for fault injection and inspection. Throws for an unknown id. */
  meter(meterId: string): SimulatedMeter {
    const e = this.entries.get(meterId);
    if (!e) throw new Error(`MqttFleet: no meter ${meterId}`);
    return e.meter;
  }

  get size(): number {
    return this.entries.size;
  }

  meterIds(): IterableIterator<string> {
    return this.entries.keys();
  }

  /** MQTT client ids of the fleet's connections. */
  get clientIds(): string[] {
    return this.links.map((l) => l.client.options.clientId ?? '');
  }

  /** True when every connection is up and subscribed. */
  get ready(): boolean {
    return this.links.length > 0 && this.links.every((l) => l.client.connected && l.subscribed);
  }

  /** MQTT protocol version: 5 (default) or 4 (3.1.1). */
  get protocolVersion(): 4 | 5 {
    return this.options.protocolVersion ?? 5;
  }

  /** Connect every link and subscribe; resolves when all are up (rejects after `startTimeoutMs`). */
  async start(): Promise<void> {
    if (this.links.length > 0) throw new Error('MqttFleet already started');
    this.stopped = false;
    const n = Math.max(1, this.options.connections ?? 4);
    for (let i = 0; i < n; i++) this.links.push(this.openLink(i));
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 10_000);
    while (!this.ready) {
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`MqttFleet: could not connect and subscribe to ${this.options.brokerUrl}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    this.log.info({ meters: this.entries.size, connections: n, broker: this.options.brokerUrl }, 'fleet started');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const e of this.entries.values()) e.meter.dispose();
    const links = this.links;
    this.links = [];
    await Promise.all(links.map((l) => l.client.endAsync(true).catch(() => undefined)));
    this.log.info({ counters: this.counters }, 'fleet stopped');
  }

  private openLink(index: number): Link {
    const client = connect(this.options.brokerUrl, {
      clientId: `${this.clientIdBase}-${index}`,
      protocolVersion: this.protocolVersion,
      clean: true,
      reconnectPeriod: this.options.reconnectPeriodMs ?? 1000,
      connectTimeout: 5000,
      resubscribe: false,
      writeCache: this.options.writeCache ?? true,
      // mqtt.js logs each packet several times through `debug`, which costs even when off: a no-op unless DEBUG is set.
      ...(process.env.DEBUG ? {} : { log: () => undefined }),
    });
    const link: Link = { index, client, subscribed: false };
    client.on('connect', () => {
      this.counters.connects++;
      link.subscribed = false;
      const topics = Object.fromEntries(
        this.commandTemplates.map((t) => [
          this.protocolVersion === 5 ? `$share/${this.shareGroup}/${wildcardFor(t)}` : wildcardFor(t),
          { qos: 1 as const },
        ]),
      );
      client.subscribe(topics, (err, granted) => {
        const refused = granted?.filter((g) => g.qos > 2) ?? [];
        if (err || refused.length > 0) {
          this.log.error({ err, refused, link: index }, 'fleet subscribe failed');
          return;
        }
        link.subscribed = true;
        this.log.debug({ link: index }, 'fleet link subscribed');
      });
    });
    client.on('close', () => {
      link.subscribed = false;
    });
    client.on('error', (err) => {
      this.log.warn({ err: err.message, link: index }, 'fleet link error');
    });
    client.on('message', (topic, payload, packet) => this.onCommand(link, topic, payload, packet.properties));
    // What a link writes in one turn of the event loop (replies, PUBACKs, status reports) leaves in one socket write
    // (drivers/mqtt/write-batch.ts, as the gateway's driver does): the bytes and their order are unchanged.
    client.on('packetreceive', () => batchWrites(client.stream));
    return link;
  }

  private onCommand(link: Link, topic: string, payload: Buffer, properties?: { responseTopic?: string; correlationData?: Buffer }): void {
    let entry: FleetEntry | undefined;
    let meterId: string | undefined;
    for (const t of this.commandTemplates) {
      meterId = meterIdFromTopic(t, topic);
      if (meterId === undefined) continue;
      const e = this.entries.get(meterId);
      if (e && e.profile.mqtt.commandTopic === t) {
        entry = e;
        break;
      }
    }
    if (this.protocolVersion !== 5 && !this.owns(link, meterId ?? '')) return; // another link's command
    this.counters.messages++;
    if (!entry || meterId === undefined) {
      this.counters.unknownMeter++;
      this.log.debug({ topic }, 'command for unknown meter ignored');
      return;
    }
    let cmd: Command;
    let op: MeterOp;
    try {
      const parsed = parseCommand(JSON.parse(payload.toString('utf8')));
      if (typeof parsed === 'string') throw new Error(parsed);
      cmd = parsed;
      const known = meterOp(entry.profile, cmd.op);
      if (known === undefined) throw new Error(`op ${JSON.stringify(cmd.op)} is not one this firmware knows`);
      op = known;
    } catch (err) {
      this.counters.badPayloads++;
      this.log.debug({ meterId, err: (err as Error).message }, 'bad command payload ignored');
      return;
    }
    this.counters.commands++;
    const now = this.now();
    const reply = entry.meter.handle(op, now, cmd);
    if (this.debugLog) this.log.debug({ meterId, orderId: cmd.orderId, cid: cmd.cid, op, replied: reply !== undefined }, 'command');
    if (!reply) {
      this.counters.silent++;
      return;
    }
    // Firmware that honours the MQTT 5 Response Topic answers there, echoing the Correlation Data.
    const replyTo = entry.profile.mqtt.responseTopic && properties?.responseTopic ? { topic: properties.responseTopic, correlationData: properties.correlationData } : undefined;
    const send = () => this.publishReply(link, entry, meterId, cmd.cid, reply, replyTo);
    if (reply.replyDelayMs > 0) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        send();
      }, reply.replyDelayMs);
      this.timers.add(t);
    } else {
      send();
    }
  }

  private publishReply(link: Link, entry: FleetEntry, meterId: string, cid: string, reply: MeterReply, replyTo?: { topic: string; correlationData: Buffer | undefined }): void {
    if (this.stopped) return;
    let payload: Buffer | string;
    if (reply.garbled && reply.garbage) {
      payload = Buffer.from(reply.garbage);
      this.counters.garbledReplies++;
    } else {
      const body: Record<string, unknown> = {
        cid,
        result: reply.result,
        relay: entry.profile.mqtt.relayValues[reply.relay],
        voltageV: reply.voltageV,
        energyWh: reply.energyWh,
        loadSideVoltageV: reply.loadSideVoltageV,
        ts: reply.ts,
      };
      // A close refused for a live load side carries the firmware's own word for it (the profile's first).
      const refusalWord = reply.refusal === 'load_side_voltage' ? entry.profile.mqtt.loadSideRefusalReasons?.[0] : undefined;
      if (refusalWord !== undefined || reply.reason !== undefined) body.reason = refusalWord ?? reply.reason;
      // Firmware with a limiter says the limit in force in every reply, so a read-back shows it.
      if (entry.profile.mqtt.limitOp !== undefined) body.loadLimitW = reply.loadLimitW;
      payload = JSON.stringify(body);
    }
    this.counters.replies++;
    const topic = replyTo?.topic ?? topicFor(entry.profile.mqtt.replyTopic, meterId);
    const options = replyTo?.correlationData ? { qos: 1 as const, properties: { correlationData: replyTo.correlationData } } : { qos: 1 as const };
    link.client.publish(topic, payload, options, (err) => {
      if (err) {
        this.counters.publishErrors++;
        this.log.warn({ meterId, cid, err: err.message }, 'reply publish failed');
      }
    });
  }

  /** Without shared subscriptions every link sees every command; the link a meter id hashes to handles it. */
  private owns(link: Link, meterId: string): boolean {
    return hashString(meterId) % this.links.length === link.index;
  }

  private publishStatus(meter: SimulatedMeter): void {
    const entry = this.entries.get(meter.id);
    const link = this.links[hashString(meter.id) % Math.max(1, this.links.length)];
    if (!entry || !link || this.stopped) return;
    const body = {
      relay: entry.profile.mqtt.relayValues[meter.relay],
      voltageV: meter.voltageV,
      energyWh: meter.energyWh,
      ts: this.now(),
    };
    this.counters.statusReports++;
    link.client.publish(topicFor(entry.profile.mqtt.statusTopic, meter.id), JSON.stringify(body), { qos: 1 }, (err) => {
      if (err) {
        this.counters.publishErrors++;
        this.log.warn({ meterId: meter.id, err: err.message }, 'status publish failed');
      }
    });
  }
}
