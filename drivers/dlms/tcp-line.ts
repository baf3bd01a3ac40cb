import { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ByteLine } from './byte-line.js';

/**
 * One TCP connection to a meter, a data concentrator, or a terminal server / modem that tunnels a serial
 * line (HDLC over TCP). A `ByteLine`, so HDLC framing runs over it as over a serial port, and the carrier
 * of the DLMS wrapper (IEC 62056-47).
 *
 * Two ways to use it: `open()` keeps the connection up, reconnecting every `reconnectMs` after a drop or a
 * failed connect (a link's standing connection; `isOpen` is the link's health); `connectOnce()` makes one
 * attempt within `connectTimeoutMs` and leaves it at that (a per-conversation connection).
 */

export interface TcpLineOptions {
  host: string;
  port: number;
  /** A connect that has not completed by then is abandoned. */
  connectTimeoutMs: number;
  /** Delay between attempts while `open()` keeps the line up. */
  reconnectMs: number;
  logger: Logger;
}

type DataListener = (chunk: Uint8Array) => void;

export class TcpLine implements ByteLine {
  private socket: Socket | undefined;
  private connected = false;
  private wanted = false;
  private connecting: Promise<boolean> | undefined;
  private renewing = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** Bumped by close(): a connect that completes after it is thrown away. */
  private generation = 0;
  private readonly listeners = new Set<DataListener>();
  private readonly closeListeners = new Set<() => void>();
  private readonly openListeners = new Set<() => void>();
  private readonly failureListeners = new Set<(why: string) => void>();
  private readonly log: Logger;
  /** Connections made and lost, for the link's counters. */
  readonly counters = { connects: 0, connectFailures: 0, drops: 0 };

  constructor(private readonly o: TcpLineOptions) {
    this.log = o.logger.child({ tcp: this.path });
  }

  get isOpen(): boolean {
    return this.connected;
  }

  get path(): string {
    return `${this.o.host.includes(':') ? `[${this.o.host}]` : this.o.host}:${this.o.port}`;
  }

  onData(listener: DataListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called each time an open connection ends: lost, dropped, or closed. */
  onClose(listener: () => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Called each time a connection is made. */
  onOpen(listener: () => void): () => void {
    this.openListeners.add(listener);
    return () => this.openListeners.delete(listener);
  }

  /** Called each time a connection attempt fails, with why in words. */
  onConnectFailure(listener: (why: string) => void): () => void {
    this.failureListeners.add(listener);
    return () => this.failureListeners.delete(listener);
  }

  /** Keep the connection up from now on. Resolves after the first attempt, connected or not. */
  async open(): Promise<void> {
    this.wanted = true;
    await this.connectOnce();
  }

  /** One connection attempt (or the one in progress); true when connected. Never rejects. */
  connectOnce(): Promise<boolean> {
    if (this.connected) return Promise.resolve(true);
    this.connecting ??= this.attempt().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  async close(): Promise<void> {
    this.wanted = false;
    this.generation++;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const s = this.socket;
    const was = this.connected;
    this.socket = undefined;
    this.connected = false;
    if (was) for (const l of this.closeListeners) l();
    if (!s || s.destroyed) return;
    await new Promise<void>((resolve) => {
      s.once('close', () => resolve());
      s.end();
      setTimeout(() => s.destroy(), 100).unref();
    });
  }

  /** True while `renew()` replaces the connection: the link is not down, only being renewed. */
  get isRenewing(): boolean {
    return this.renewing;
  }

  /**
   * Replace the connection now: the current socket is cut at once (nothing more it carries is delivered), and a
   * new one is made. Resolves true when connected again. For a connection whose state can no longer be trusted
   * (a request timed out and its late answer may still arrive).
   */
  async renew(reason: string): Promise<boolean> {
    const s = this.socket;
    this.renewing = true;
    try {
      if (s && this.socket === s) {
        this.log.info({ reason }, 'renewing the TCP connection');
        this.socket = undefined;
        this.connected = false;
        this.counters.drops++;
        for (const l of this.closeListeners) l();
        s.destroy();
      }
      return await this.connectOnce();
    } finally {
      this.renewing = false;
    }
  }

  /** Drop the connection now (a peer that broke the framing); `open()` reconnects later. */
  drop(reason: string): void {
    this.log.warn({ reason }, 'dropping the TCP connection');
    this.socket?.destroy();
  }

  write(bytes: Uint8Array): Promise<void> {
    const s = this.socket;
    if (!s || !this.connected) return Promise.reject(new Error(`TCP connection to ${this.path} is not open`));
    return new Promise((resolve, reject) => {
      s.write(bytes, (err) => (err ? reject(err) : resolve()));
    });
  }

  private attempt(): Promise<boolean> {
    const generation = this.generation;
    return new Promise<boolean>((resolve) => {
      const s = new Socket();
      let settled = false;
      const timer = setTimeout(() => finish(new Error(`no connection within ${this.o.connectTimeoutMs} ms`)), this.o.connectTimeoutMs);
      const finish = (err: Error | undefined) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          s.destroy();
          this.counters.connectFailures++;
          this.log.debug({ err: err.message }, 'TCP connect failed');
          for (const l of this.failureListeners) l(`TCP connect to ${this.path} failed: ${err.message}`);
          this.scheduleReconnect();
          return resolve(false);
        }
        if (generation !== this.generation) {
          s.destroy(); // closed while connecting
          return resolve(false);
        }
        this.adopt(s);
        resolve(true);
      };
      s.once('connect', () => finish(undefined));
      s.once('error', (e) => finish(e));
      s.setNoDelay(true);
      s.connect({ host: this.o.host, port: this.o.port });
    });
  }

  private adopt(s: Socket): void {
    this.socket = s;
    this.connected = true;
    this.counters.connects++;
    s.setKeepAlive(true, 10_000);
    s.on('data', (chunk: Buffer) => {
      const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
      for (const l of this.listeners) l(bytes);
    });
    s.on('error', (e) => this.log.debug({ err: e.message }, 'TCP connection error'));
    s.once('close', () => {
      if (this.socket !== s) return;
      this.socket = undefined;
      this.connected = false;
      this.counters.drops++;
      this.log.warn('TCP connection lost');
      for (const l of this.closeListeners) l();
      this.scheduleReconnect();
    });
    this.log.debug('TCP connection open');
    for (const l of this.openListeners) l();
  }

  private scheduleReconnect(): void {
    if (!this.wanted || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.wanted && !this.connected) void this.connectOnce();
    }, this.o.reconnectMs);
    this.reconnectTimer.unref();
  }
}
