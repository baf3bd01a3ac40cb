import type { Logger } from 'pino';
import { SerialPort } from 'serialport';
import { preciseSleep, type BusClock } from './bus-clock.js';
import { BusScheduler, BusSchedulerClosedError } from './bus-scheduler.js';
import type { ModbusRtuLinkConfig } from './modbus-config.js';
import { LinkStateLog } from '../link-health.js';
import { newModbusLinkCounters, runTransaction, type FrameTry, type ModbusLink, type TransactionRequest, type TransactionResult } from './modbus-link.js';
import { bitsPerCharacter, decodeRtuFrame, encodeRtuFrame, interFrameSilenceMs, responseFrameLength } from './rtu-frame.js';

/**
 * One RS-485 bus behind a serial port (`serialport`): many unit ids, one transaction at a time, the
 * inter-frame silence between transactions (Serial Line V1.02 §2.5.1.1), CRC-checked replies re-sent on
 * corruption. A reply ends when its length (known from the function code and byte count) has arrived, so a
 * clean bus wastes no time waiting for silence; bytes that fit no frame are collected until the line has
 * been quiet for `noiseGapMs`, then the frame is re-sent. When the port disappears (adapter unplugged, pty
 * gone) the link closes, keeps its queue and reopens the same path every `reopenMs`.
 */
export class RtuLink implements ModbusLink {
  readonly kind = 'rtu' as const;
  readonly counters = newModbusLinkCounters();
  readonly state: LinkStateLog;
  /** Silence kept between transactions (ms). */
  readonly interFrameMs: number;
  /** Time one character takes on the line (ms). */
  readonly charMs: number;
  private readonly scheduler: BusScheduler;
  private port: SerialPort | undefined;
  private stopped = false;
  private reopenTimer: NodeJS.Timeout | undefined;
  /** Where received bytes go while a frame waits for its reply. */
  private sink: ((chunk: Buffer) => void) | undefined;
  private abortTry: ((detail: string) => void) | undefined;
  /** When the last byte arrived (performance.now() ms): a frame never starts within t3.5 of it. */
  private lastRxAt = Number.NEGATIVE_INFINITY;

  constructor(
    readonly name: string,
    private readonly config: ModbusRtuLinkConfig,
    private readonly log: Logger,
    clock?: BusClock,
  ) {
    this.state = new LinkStateLog(`serial port ${config.path}`);
    const bits = bitsPerCharacter(config);
    this.charMs = (bits * 1000) / config.baudRate;
    this.interFrameMs = config.interFrameMs ?? interFrameSilenceMs(config.baudRate, bits);
    this.scheduler = new BusScheduler({ maxConcurrent: 1, interFrameMs: this.interFrameMs, ...(clock ? { clock } : {}) });
    this.scheduler.setOpen(false);
  }

  get queued(): number {
    return this.scheduler.queued;
  }

  isUp(): boolean {
    return this.port !== undefined && !this.stopped;
  }

  /** Opens the port; if it cannot be opened now the link stays down and keeps trying. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.open();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reopenTimer);
    this.scheduler.dispose('driver stopped');
    this.abortTry?.('driver stopped');
    const port = this.port;
    this.port = undefined;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  async transact(request: TransactionRequest): Promise<TransactionResult> {
    if (!this.isUp()) {
      this.counters.linkErrors++;
      return { ok: false, outcome: 'link_error', detail: this.stopped ? 'driver stopped' : `serial port ${this.config.path} (link ${this.name}) is closed`, latencyMs: 0 };
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

  private open(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const { path, baudRate, parity, dataBits, stopBits } = this.config;
    const port = new SerialPort({ path, baudRate, parity, dataBits, stopBits, autoOpen: false });
    port.on('data', (chunk: Buffer) => {
      if (port !== this.port) return;
      this.lastRxAt = performance.now();
      if (this.sink) this.sink(chunk);
      else this.counters.strayBytes += chunk.length;
    });
    port.on('close', () => this.onClosed(port));
    port.on('error', (err: Error) => this.log.warn({ link: this.name, path, err: err.message }, 'serial port error'));
    return new Promise((resolve) => {
      port.open((err) => {
        if (err || this.stopped) {
          if (err) {
            this.log.debug({ link: this.name, path, err: err.message }, 'cannot open serial port; retrying');
            this.state.failed(`cannot open serial port ${path}: ${err.message}`);
          }
          else port.close();
          this.scheduleReopen();
          resolve();
          return;
        }
        this.port = port;
        this.counters.opens++;
        this.state.up();
        this.log.info({ link: this.name, path, baudRate, parity, interFrameMs: this.interFrameMs, opens: this.counters.opens }, 'serial bus open');
        this.scheduler.setOpen(true);
        resolve();
      });
    });
  }

  private onClosed(port: SerialPort): void {
    if (port !== this.port) return;
    this.port = undefined;
    this.scheduler.setOpen(false);
    if (this.stopped) return;
    this.counters.losses++;
    this.state.down(`serial port ${this.config.path} closed (adapter unplugged or device gone); reopening every ${this.config.reopenMs} ms`);
    this.log.warn({ link: this.name, path: this.config.path, queued: this.scheduler.queued }, 'serial port lost; queued requests wait for it to reopen');
    this.abortTry?.(`serial port ${this.config.path} closed during the transaction`);
    this.scheduleReopen();
  }

  private scheduleReopen(): void {
    if (this.stopped) return;
    clearTimeout(this.reopenTimer);
    this.reopenTimer = setTimeout(() => void this.open(), this.config.reopenMs);
  }

  /**
   * Wait until t3.5 has passed since the last byte seen on the line. Bytes the OS already holds (a late reply that
   * landed in the same turn as its request's timeout) are seen first: the event loop gets one turn for I/O before
   * the line is judged, and again after every wait, until no byte came in meanwhile.
   */
  private async lineQuiet(): Promise<void> {
    for (;;) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      const quiet = this.lastRxAt + this.interFrameMs - performance.now();
      if (quiet <= 0) return;
      await preciseSleep(quiet);
    }
  }

  /**
   * One frame: write it, then collect the reply by length, or the noise until the line is quiet. The
   * scheduler already keeps t3.5 between transactions; this also keeps it between the tries of one
   * transaction and after stray bytes (a late answer from a slave that was given up on).
   */
  private async tryOnce(request: TransactionRequest): Promise<FrameTry> {
    await this.lineQuiet();
    const port = this.port;
    if (!port) return Promise.resolve({ kind: 'link_error', detail: `serial port ${this.config.path} closed` });
    const { unitId, pdu } = request;
    const fc = pdu[0]!;
    const frame = encodeRtuFrame(unitId, pdu);
    return new Promise<FrameTry>((resolve) => {
      let buf: Buffer = Buffer.alloc(0);
      let broken: { crc: boolean; reason: string } | undefined;
      let gapTimer: NodeJS.Timeout | undefined;
      const finish = (t: FrameTry): void => {
        clearTimeout(gapTimer);
        clearTimeout(responseTimer);
        this.sink = undefined;
        this.abortTry = undefined;
        resolve(t);
      };
      const endOnSilence = (): void => {
        clearTimeout(gapTimer);
        gapTimer = setTimeout(() => {
          const why = broken ?? { crc: false, reason: `incomplete frame (${buf.length} byte(s)) then silence` };
          finish({ kind: 'corrupt', ...why, raw: buf });
        }, this.config.noiseGapMs);
      };
      const corrupt = (crc: boolean, reason: string): void => {
        broken = { crc, reason };
        endOnSilence();
      };
      this.abortTry = (detail) => finish({ kind: 'link_error', detail });
      this.sink = (chunk) => {
        this.counters.bytesIn += chunk.length;
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        if (broken) return endOnSilence();
        if (buf[0] !== unitId) return corrupt(false, `reply names unit ${buf[0]}, request was for unit ${unitId}`);
        const len = responseFrameLength(buf, fc);
        if (len === 'mismatch') return corrupt(false, `function code 0x${buf[1]!.toString(16)} does not answer 0x${fc.toString(16)}`);
        if (len === null || buf.length < len) return endOnSilence();
        const checked = decodeRtuFrame(buf.subarray(0, len));
        if (!checked.ok) return corrupt(true, 'CRC error');
        if (buf.length > len) this.counters.strayBytes += buf.length - len;
        finish({ kind: 'reply', pdu: checked.pdu, raw: Buffer.from(buf.subarray(0, len)) });
      };
      // The response timeout runs from the end of the request on the line, not from the write call.
      const responseTimer = setTimeout(() => {
        if (buf.length === 0) finish({ kind: 'timeout' });
        else finish({ kind: 'corrupt', crc: broken?.crc ?? false, reason: broken?.reason ?? `incomplete frame (${buf.length} byte(s))`, raw: buf });
      }, request.timeoutMs + frame.length * this.charMs);
      this.counters.bytesOut += frame.length;
      port.write(frame, (err) => {
        if (err) finish({ kind: 'link_error', detail: `write failed: ${err.message}` });
      });
    });
  }
}
