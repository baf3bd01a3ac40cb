import type { Logger } from 'pino';
import type { DlmsFirmwareProfile } from '../../src/domain/firmware-profile.js';
import type { LinkCounters, LinkHealth } from '../driver.js';
import { LinkStateLog, zeroLinkCounters } from '../link-health.js';
import { hdlcApduChannel, type ApduChannel } from './apdu-channel.js';
import { BusLock } from './bus-lock.js';
import type { ByteLine } from './byte-line.js';
import type { DlmsLinksConfig, DlmsPortConfig, DlmsTcpLinkConfig } from './dlms-config.js';
import { formatServerAddress, parseServerAddress } from './hdlc-address.js';
import { HdlcClient } from './hdlc-client.js';
import { SerialLine } from './serial-line.js';
import { TcpLine } from './tcp-line.js';
import { DlmsWireFailure } from './wire-failure.js';
import { WrapperConnection } from './wrapper-channel.js';
import { DLMS_WRAPPER_PORT } from './wrapper-frame.js';

/**
 * The links a DLMS conversation can run over, one kind per transport, chosen per link by the driver:
 * a serial port (HDLC, IEC 62056-46), a TCP connection to a terminal server (HDLC over TCP), or the TCP
 * wrapper (IEC 62056-47) to a meter or a data concentrator. A link owns what must be exclusive (the bus lock,
 * a connection slot), says whether it is up, parses a meter's address on it, and hands the conversation a
 * `LinkSession`: the association's APDU channel plus the link-layer open and close around it.
 */

type DlmsProfileData = DlmsFirmwareProfile['dlms'];

/** What the conversation needs from the link while it holds it. */
export interface LinkSession {
  channel: ApduChannel;
  /** The meter, for messages: "1/17" (HDLC), "10.0.0.5:4059/1" (wrapper). */
  where: string;
  /** Open the link layer: SNRM/UA on HDLC; nothing on the wrapper (the TCP connection is up). */
  connect(): Promise<void>;
  /** Give the release its own budget once the answer is in. */
  extendDeadline(ms: number): void;
  /** Close the link layer after the release: DISC on HDLC. Never throws. */
  disconnect(): Promise<void>;
  /** Hex of what was received, for evidence when no APDU made sense. */
  evidence(): string | undefined;
  /**
   * What the conversation met below the APDUs: frames repeated, bad frames (those with a bad HCS/FCS among them) and
   * frames addressed to no one waiting (a late answer to a conversation given up on).
   */
  counters(): SessionCounters;
}

export interface SessionCounters {
  repeats: number;
  badFrames: number;
  fcsErrors: number;
  strayFrames: number;
}

export interface ConversationContext {
  profile: DlmsProfileData;
  deadline: number;
  timeoutMs: number;
  log: Logger;
}

/** A meter's place on its link, parsed from `MeterAddress.address`. */
export type MeterLocation = { kind: 'hdlc'; upper: number; lower?: number } | { kind: 'wrapper'; host?: string; port?: number; logicalDevice: number };

export interface DlmsLink {
  readonly name: string;
  /** For messages: "serial port /dev/ttyUSB0", "TCP 10.0.0.5:4059". */
  readonly description: string;
  /** What its conversations met (the driver adds each one's), shown with its state by `health()`. */
  readonly traffic: LinkCounters;
  /** Up or down since when, and the last failure in words. */
  readonly state: LinkStateLog;
  /** GET /v1/links: kind `dlms-hdlc` (serial port) or `dlms-tcp` (HDLC over TCP, the wrapper). */
  health(): LinkHealth;
  start(): Promise<void>;
  stop(): Promise<void>;
  isUp(): boolean;
  /** Throws a RangeError naming the expected form when the address does not fit this link. */
  locate(address: string | null, profile: DlmsProfileData): MeterLocation;
  /**
   * Run one conversation holding what it needs exclusively. Rejects with a DlmsWireFailure when it cannot
   * start (link down, busy past the deadline, meter unreachable); `body` runs its own error handling.
   */
  converse(at: MeterLocation, ctx: ConversationContext, body: (s: LinkSession) => Promise<void>): Promise<void>;
}

/** The HDLC session over any byte line (serial port, TCP tunnel). */
function hdlcSession(line: ByteLine, at: MeterLocation, ctx: ConversationContext, frameRetries: number): LinkSession & { close(): void } {
  if (at.kind !== 'hdlc') throw new Error('hdlc session needs an HDLC address');
  const server = at.lower === undefined ? { upper: at.upper } : { upper: at.upper, lower: at.lower };
  const d = ctx.profile;
  const where = formatServerAddress(server);
  const hdlc = new HdlcClient({
    line,
    server,
    clientSap: d.clientSap,
    proposal: { maxInfoTx: d.hdlc.maxInfoTx, maxInfoRx: d.hdlc.maxInfoRx, windowTx: d.hdlc.windowTx, windowRx: d.hdlc.windowRx },
    responseTimeoutMs: Math.min(d.hdlc.responseTimeoutMs, Math.max(10, Math.floor(ctx.timeoutMs / (frameRetries + 2)))),
    frameRetries,
    deadline: ctx.deadline,
    log: ctx.log,
  });
  let connected = false;
  return {
    channel: hdlcApduChannel(hdlc, where),
    where,
    async connect() {
      await hdlc.connect();
      connected = true;
    },
    extendDeadline(ms) {
      hdlc.deadline = Date.now() + ms;
    },
    async disconnect() {
      if (connected) await hdlc.disconnect(Math.min(d.hdlc.responseTimeoutMs, 100));
    },
    evidence: () => hdlc.evidence(),
    counters: () => ({ repeats: hdlc.counters.repeats, badFrames: hdlc.counters.badFrames, fcsErrors: hdlc.counters.fcsErrors, strayFrames: 0 }),
    close: () => hdlc.close(),
  };
}

const parseHdlc = (address: string | null, profile: DlmsProfileData): MeterLocation => ({ kind: 'hdlc', ...parseServerAddress(address, profile.serverLogicalAddress) });

/** A line carrying one half-duplex HDLC bus: a serial port, or a TCP tunnel to one. */
abstract class HdlcBusLink implements DlmsLink {
  private readonly lock = new BusLock();
  protected stopped = false;
  readonly traffic = zeroLinkCounters();
  abstract readonly state: LinkStateLog;
  abstract readonly name: string;
  abstract readonly description: string;
  protected abstract readonly line: ByteLine;
  protected abstract readonly frameRetries: number;
  protected abstract readonly interFrameMs: number | undefined;
  abstract start(): Promise<void>;
  abstract stop(): Promise<void>;

  isUp(): boolean {
    return !this.stopped && this.line.isOpen;
  }

  abstract health(): LinkHealth;

  locate(address: string | null, profile: DlmsProfileData): MeterLocation {
    return parseHdlc(address, profile);
  }

  converse(at: MeterLocation, ctx: ConversationContext, body: (s: LinkSession) => Promise<void>): Promise<void> {
    return this.lock.run(async () => {
      if (Date.now() >= ctx.deadline) throw new DlmsWireFailure('timeout', `the bus ${this.name} stayed busy past the deadline`);
      if (!this.isUp()) throw new DlmsWireFailure('link_error', `${this.description} (link ${this.name}) is not open`);
      const session = hdlcSession(this.line, at, ctx, this.frameRetries);
      try {
        await body(session);
      } finally {
        session.close();
        if (this.interFrameMs) await new Promise((r) => setTimeout(r, this.interFrameMs));
      }
    });
  }
}

export class SerialHdlcLink extends HdlcBusLink {
  readonly description: string;
  readonly state: LinkStateLog;
  protected readonly line: SerialLine;
  protected readonly frameRetries: number;
  protected readonly interFrameMs: number | undefined;

  constructor(
    readonly name: string,
    readonly config: DlmsPortConfig,
    reopenMs: number,
    private readonly log: Logger,
  ) {
    super();
    this.description = `serial port ${config.path}`;
    this.state = new LinkStateLog(this.description);
    this.frameRetries = config.frameRetries;
    this.interFrameMs = config.interFrameMs;
    this.line = new SerialLine({ path: config.path, baudRate: config.baudRate, ...(config.parity ? { parity: config.parity } : {}), reopenMs, logger: log });
    this.line.onOpen(() => this.state.up());
    this.line.onClose((why) => this.state.down(why));
    this.line.onOpenFailure((why) => this.state.failed(why));
  }

  health(): LinkHealth {
    return this.state.health(this.name, 'dlms-hdlc', this.isUp(), { ...this.traffic, reopens: Math.max(0, this.line.counters.opens - 1) });
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.line.open();
    if (!this.line.isOpen) this.log.warn({ path: this.config.path }, 'serial port not available yet; requests get link_error until it is back');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.line.close();
  }
}

export class TcpHdlcLink extends HdlcBusLink {
  readonly description: string;
  readonly state: LinkStateLog;
  protected readonly line: TcpLine;
  protected readonly frameRetries: number;
  protected readonly interFrameMs: number | undefined;

  constructor(
    readonly name: string,
    config: DlmsTcpLinkConfig,
    private readonly log: Logger,
  ) {
    super();
    this.line = new TcpLine({ host: config.host!, port: config.port!, connectTimeoutMs: config.connectTimeoutMs, reconnectMs: config.reconnectMs, logger: log });
    this.description = `HDLC over TCP ${this.line.path}`;
    this.state = new LinkStateLog(this.description);
    this.frameRetries = config.frameRetries ?? 3;
    this.interFrameMs = config.interFrameMs;
    watchConnection(this.line, this.state, () => false);
  }

  health(): LinkHealth {
    return this.state.health(this.name, 'dlms-tcp', this.isUp(), { ...this.traffic, reconnects: Math.max(0, this.line.counters.connects - 1) });
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.line.open();
    if (!this.line.isOpen) this.log.warn({ to: this.line.path }, 'terminal server not reachable yet; orders wait until it is');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.line.close();
  }
}

/** A standing TCP connection's ups and downs as its link's state (a renewal, cut and made again at once, is neither). */
function watchConnection(line: TcpLine, state: LinkStateLog, renewing: () => boolean): void {
  line.onOpen(() => state.up());
  line.onClose(() => {
    if (!renewing()) state.down(`TCP connection to ${line.path} lost; reconnecting`);
  });
  line.onConnectFailure((why) => state.failed(why));
}

/** Up to `max` holders at once, FIFO; waiters give up at their deadline. */
class Slots {
  private used = 0;
  private readonly waiting: Array<{ grant: () => void }> = [];
  constructor(private readonly max: number) {}

  get inUse(): number {
    return this.used;
  }

  acquire(deadline: number): Promise<boolean> {
    if (this.used < this.max) {
      this.used++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const entry = {
        grant: () => {
          clearTimeout(timer);
          this.used++;
          resolve(true);
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        resolve(false);
      }, Math.max(0, deadline - Date.now()));
      this.waiting.push(entry);
    });
  }

  release(): void {
    this.used--;
    this.waiting.shift()?.grant();
  }
}

/** Parse "host", "host:port", "host:port/17", "[v6]:port/17" (a direct meter's address on a wrapper link without host). */
export function parseWrapperEndpoint(text: string | null, defaultLogical: number): { host: string; port: number; logicalDevice: number } {
  const m = /^\s*(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(?:\/(\d{1,5}))?\s*$/.exec(text ?? '');
  const form = 'expected "host:port/logicalDevice" ("10.0.0.5:4059/1"; port default 4059, logical device default the profile\'s)';
  if (!m) throw new RangeError(`DLMS meter address "${text ?? ''}" is not a TCP endpoint: ${form}`);
  const port = m[2] === undefined ? DLMS_WRAPPER_PORT : Number(m[2]);
  const logicalDevice = m[3] === undefined ? defaultLogical : Number(m[3]);
  if (port < 1 || port > 65_535) throw new RangeError(`DLMS meter address "${text}": port ${port} out of range 1..65535`);
  if (logicalDevice > 0xffff) throw new RangeError(`DLMS meter address "${text}": logical device ${logicalDevice} out of range 0..65535`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port, logicalDevice };
}

/**
 * The TCP wrapper link: a concentrator/endpoint with standing connections (`host` set), or direct meters
 * each reached at its own host:port with a connection per conversation (no `host`). See DlmsTcpLinkSchema.
 */
export class WrapperLink implements DlmsLink {
  readonly description: string;
  private readonly slots: Slots;
  private readonly maxApduBytes: number;
  /** Standing connections (endpoint links): the first is kept up always; the link is up while it is. */
  private readonly standing: WrapperConnection[] = [];
  private readonly idle: WrapperConnection[] = [];
  private stopped = true;
  readonly counters = { connectFailures: 0 };
  readonly traffic = zeroLinkCounters();
  readonly state: LinkStateLog;
  /** Connections (standing and per conversation) open now, for tests and metrics. */
  openConnections = 0;

  constructor(
    readonly name: string,
    private readonly config: DlmsTcpLinkConfig,
    private readonly log: Logger,
  ) {
    this.slots = new Slots(config.maxConnections ?? 4);
    this.maxApduBytes = config.maxApduBytes ?? 0xffff;
    this.description = config.host ? `TCP wrapper ${config.host}:${config.port ?? DLMS_WRAPPER_PORT}` : 'TCP wrapper (direct meters)';
    this.state = new LinkStateLog(this.description);
  }

  private newConnection(host: string, port: number, standing: boolean): WrapperConnection {
    const line = new TcpLine({ host, port, connectTimeoutMs: this.config.connectTimeoutMs, reconnectMs: this.config.reconnectMs, logger: this.log });
    line.onOpen(() => this.openConnections++);
    line.onClose(() => this.openConnections--);
    const c = new WrapperConnection(line, this.maxApduBytes);
    if (standing) {
      // The link is up while its first standing connection is (isUp); the others only add capacity.
      if (this.standing.length === 0) watchConnection(line, this.state, () => line.isRenewing);
      this.standing.push(c);
    }
    return c;
  }

  /**
   * Reconnects are those of the standing connections (each after its first connect, renewals after a timeout
   * included); with direct meters (a connection per conversation) there are none, and the link is always up.
   */
  health(): LinkHealth {
    const reconnects = this.standing.reduce((n, c) => n + Math.max(0, c.line.counters.connects - 1), 0);
    return this.state.health(this.name, 'dlms-tcp', this.isUp(), { ...this.traffic, reconnects });
  }

  async start(): Promise<void> {
    this.stopped = false;
    if (!this.config.host) return;
    const first = this.newConnection(this.config.host, this.config.port ?? DLMS_WRAPPER_PORT, true);
    this.idle.push(first);
    await first.line.open();
    if (!first.line.isOpen) this.log.warn({ to: first.line.path }, 'DLMS TCP endpoint not reachable yet; orders wait until it is');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const all = [...this.standing];
    this.standing.length = 0;
    this.idle.length = 0;
    await Promise.all(all.map((c) => c.line.close()));
  }

  isUp(): boolean {
    if (this.stopped) return false;
    if (!this.config.host) return true; // direct meters: one meter unreachable is that meter's failure
    const first = this.standing[0]?.line;
    return first !== undefined && (first.isOpen || first.isRenewing);
  }

  locate(address: string | null, profile: DlmsProfileData): MeterLocation {
    if (!this.config.host) return { kind: 'wrapper', ...parseWrapperEndpoint(address, profile.serverLogicalAddress) };
    const text = (address ?? '').trim();
    if (text === '') return { kind: 'wrapper', logicalDevice: profile.serverLogicalAddress };
    if (!/^\d{1,5}$/.test(text) || Number(text) > 0xffff) throw new RangeError(`DLMS meter address "${address}" on link ${this.name} (${this.description}) is not a logical device: expected the server wPort ("1"), or empty for the profile's`);
    return { kind: 'wrapper', logicalDevice: Number(text) };
  }

  async converse(at: MeterLocation, ctx: ConversationContext, body: (s: LinkSession) => Promise<void>): Promise<void> {
    if (at.kind !== 'wrapper') throw new Error('wrapper link needs a wrapper location');
    if (!(await this.slots.acquire(ctx.deadline))) throw new DlmsWireFailure('timeout', `link ${this.name}: all ${this.config.maxConnections ?? 4} connections stayed busy past the deadline`);
    let conn: WrapperConnection | undefined;
    let perConversation = false;
    let timeoutsBefore = 0;
    try {
      if (this.stopped) throw new DlmsWireFailure('link_error', `link ${this.name} is stopped`);
      if (this.config.host) conn = await this.takeStanding(ctx);
      else {
        perConversation = true;
        conn = this.newConnection(at.host!, at.port!, false);
        if (!(await conn.line.connectOnce())) {
          this.counters.connectFailures++;
          throw new DlmsWireFailure('link_error', `meter ${at.host}:${at.port}/${at.logicalDevice}: no TCP connection within ${this.config.connectTimeoutMs} ms`);
        }
      }
      const where = `${conn.line.path}/${at.logicalDevice}`;
      timeoutsBefore = conn.counters.timeouts;
      let deadline = ctx.deadline;
      const channel = conn.channel({ client: ctx.profile.clientSap, server: at.logicalDevice }, where, () => deadline);
      const before = { ...conn.counters };
      const c = conn;
      await body({
        channel,
        where,
        connect: async () => undefined,
        extendDeadline: (ms) => {
          deadline = Date.now() + ms;
        },
        disconnect: async () => undefined,
        evidence: () => channel.received.join(' '),
        counters: () => {
          const strayFrames = c.counters.strayFrames - before.strayFrames;
          return { repeats: 0, badFrames: strayFrames + c.counters.badStreams - before.badStreams, fcsErrors: 0, strayFrames };
        },
      });
    } finally {
      if (conn) {
        if (perConversation) await conn.line.close();
        else {
          // A request that timed out may still be answered; on this connection that late answer would be taken
          // for the next association's (the wrapper carries no invoke id for an AARQ). Start afresh instead.
          if (conn.counters.timeouts > timeoutsBefore && !this.stopped) await conn.line.renew('a request timed out: its late answer must not be taken for the next request');
          if (!this.stopped) this.idle.push(conn);
        }
      }
      this.slots.release();
    }
  }

  /** An idle standing connection, opened again if it dropped, or a new one within the limit. */
  private async takeStanding(ctx: ConversationContext): Promise<WrapperConnection> {
    // An open idle connection first; then a new one (within the slots, so within maxConnections); then one to reopen.
    const open = this.idle.findIndex((c) => c.line.isOpen);
    let conn = open >= 0 ? this.idle.splice(open, 1)[0] : this.standing.length < (this.config.maxConnections ?? 4) ? undefined : this.idle.shift();
    if (!conn) {
      // Another standing connection, kept up (and reconnected) like the first from now on.
      conn = this.newConnection(this.config.host!, this.config.port ?? DLMS_WRAPPER_PORT, true);
      await conn.line.open();
    }
    if (conn.line.isOpen) return conn;
    if (!(await conn.line.connectOnce())) {
      this.idle.push(conn);
      this.counters.connectFailures++;
      throw new DlmsWireFailure('link_error', `link ${this.name}: no TCP connection to ${conn.line.path} (deadline ${Math.max(0, ctx.deadline - Date.now())} ms away)`);
    }
    return conn;
  }
}

/** Every configured link by name. */
export function createDlmsLinks(config: DlmsLinksConfig, reopenMs: number, log: Logger): Map<string, DlmsLink> {
  const links = new Map<string, DlmsLink>();
  for (const [name, port] of Object.entries(config.ports)) links.set(name, new SerialHdlcLink(name, port, reopenMs, log.child({ link: name })));
  for (const [name, tcp] of Object.entries(config.tcp ?? {})) {
    links.set(name, tcp.kind === 'hdlc' ? new TcpHdlcLink(name, tcp, log.child({ link: name })) : new WrapperLink(name, tcp, log.child({ link: name })));
  }
  return links;
}
