import { Socket } from 'node:net';
import type { Logger } from 'pino';
import { BusScheduler, BusSchedulerClosedError } from './bus-scheduler.js';
import type { ModbusTcpLinkConfig } from './modbus-config.js';
import { LinkStateLog } from '../link-health.js';
import { newModbusLinkCounters, runTransaction, type FrameTry, type ModbusLink, type TransactionRequest, type TransactionResult } from './modbus-link.js';
import { encodeMbap, MbapReader } from './mbap-frame.js';

/**
 * One Modbus TCP server or TCP-to-RTU gateway, over one connection: up to `maxConcurrent` transactions on
 * the wire at once, told apart by the MBAP transaction id (TCP/IP Implementation Guide V1.0b §3.1.3). A
 * reply whose transaction id matches nothing (a late answer) is discarded. When the connection drops the
 * link closes, fails what was on the wire with `link_error`, keeps its queue and reconnects every `reconnectMs`.
 */

interface Waiter {
  unitId: number;
  settle(t: FrameTry): void;
}

export class TcpLink implements ModbusLink {
  readonly kind = 'tcp' as const;
  readonly counters = newModbusLinkCounters();
  readonly state: LinkStateLog;
  private readonly scheduler: BusScheduler;
  private readonly reader = new MbapReader();
  private readonly waiting = new Map<number, Waiter>();
  private socket: Socket | undefined;
  private connected = false;
  private stopped = false;
  private nextTid = 1;
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly name: string,
    private readonly config: ModbusTcpLinkConfig,
    private readonly log: Logger,
  ) {
    this.state = new LinkStateLog(`Modbus TCP connection to ${config.host}:${config.port}`);
    this.scheduler = new BusScheduler({ maxConcurrent: config.maxConcurrent, interFrameMs: 0 });
    this.scheduler.setOpen(false);
  }

  get queued(): number {
    return this.scheduler.queued;
  }

  /** Highest number of transactions that were on the wire at once. */
  get peakConcurrent(): number {
    return this.scheduler.stats.peakActive;
  }

  isUp(): boolean {
    return this.connected && !this.stopped;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.scheduler.dispose('driver stopped');
    this.failAll('driver stopped');
    const s = this.socket;
    this.socket = undefined;
    this.connected = false;
    if (s && !s.destroyed) await new Promise<void>((resolve) => s.end(() => resolve()).once('close', () => resolve()));
    s?.destroy();
  }

  async transact(request: TransactionRequest): Promise<TransactionResult> {
    if (!this.isUp()) {
      this.counters.linkErrors++;
      return { ok: false, outcome: 'link_error', detail: this.stopped ? 'driver stopped' : `Modbus TCP ${this.config.host}:${this.config.port} (link ${this.name}) is not connected`, latencyMs: 0 };
    }
    try {
      return await this.scheduler.submit(request.unitId, request.priority, () =>
        runTransaction(request, this.config.frameRetries, this, () => this.tryOnce(request)),
      );
    } catch (e) {
      if (e instanceof BusSchedulerClosedError) return { ok: false, outcome: 'link_error', detail: e.message, latencyMs: 0 };
      throw e;
    }
  }

  private connect(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const { host, port } = this.config;
    const socket = new Socket();
    socket.setNoDelay(true);
    this.socket = socket;
    this.reader.reset();
    return new Promise((resolve) => {
      socket.once('connect', () => {
        this.connected = true;
        this.counters.opens++;
        this.state.up();
        this.log.info({ link: this.name, host, port, maxConcurrent: this.config.maxConcurrent }, 'Modbus TCP connected');
        this.scheduler.setOpen(true);
        resolve();
      });
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
      socket.on('error', (err) => {
        this.log.debug({ link: this.name, host, port, err: err.message }, 'Modbus TCP socket error');
        this.state.failed(`Modbus TCP ${host}:${port}: ${err.message}`);
      });
      socket.once('close', () => {
        const wasUp = this.connected;
        if (this.socket === socket) this.socket = undefined;
        this.connected = false;
        this.scheduler.setOpen(false);
        this.failAll(`Modbus TCP connection to ${host}:${port} closed`);
        if (!this.stopped) {
          if (wasUp) {
            this.counters.losses++;
            this.state.down(`Modbus TCP connection to ${host}:${port} lost; reconnecting every ${this.config.reconnectMs} ms`);
            this.log.warn({ link: this.name, host, port, queued: this.scheduler.queued }, 'Modbus TCP connection lost; queued requests wait for it');
          }
          clearTimeout(this.reconnectTimer);
          this.reconnectTimer = setTimeout(() => void this.connect(), this.config.reconnectMs);
        }
        resolve();
      });
      socket.connect(port, host);
    });
  }

  private onData(chunk: Buffer): void {
    this.counters.bytesIn += chunk.length;
    const { adus, error } = this.reader.push(chunk);
    for (const adu of adus) {
      const w = this.waiting.get(adu.transactionId);
      if (!w) {
        this.counters.strayBytes += adu.raw.length;
        this.counters.unmatchedReplies++;
        continue;
      }
      if (adu.unitId !== w.unitId) w.settle({ kind: 'corrupt', crc: false, reason: `reply names unit ${adu.unitId}, request was for unit ${w.unitId}`, raw: adu.raw });
      else w.settle({ kind: 'reply', pdu: adu.pdu, raw: adu.raw });
    }
    if (error) {
      // The stream lost its framing: nothing after this point can be trusted. Drop the connection.
      this.log.warn({ link: this.name, error }, 'Modbus TCP stream is not MBAP; reconnecting');
      for (const w of [...this.waiting.values()]) w.settle({ kind: 'corrupt', crc: false, reason: error, raw: chunk });
      this.socket?.destroy();
    }
  }

  private failAll(detail: string): void {
    for (const w of [...this.waiting.values()]) w.settle({ kind: 'link_error', detail });
  }

  private tryOnce(request: TransactionRequest): Promise<FrameTry> {
    const socket = this.socket;
    if (!socket || !this.connected) return Promise.resolve({ kind: 'link_error', detail: 'Modbus TCP not connected' });
    let tid = this.nextTid;
    while (this.waiting.has(tid)) tid = (tid % 0xffff) + 1;
    this.nextTid = (tid % 0xffff) + 1;
    return new Promise<FrameTry>((resolve) => {
      const timer = setTimeout(() => w.settle({ kind: 'timeout' }), request.timeoutMs);
      const w: Waiter = {
        unitId: request.unitId,
        settle: (t) => {
          if (this.waiting.get(tid) !== w) return;
          this.waiting.delete(tid);
          clearTimeout(timer);
          resolve(t);
        },
      };
      this.waiting.set(tid, w);
      const adu = encodeMbap(tid, request.unitId, request.pdu);
      this.counters.bytesOut += adu.length;
      socket.write(adu, (err) => {
        if (err) w.settle({ kind: 'link_error', detail: `write failed: ${err.message}` });
      });
    });
  }
}
