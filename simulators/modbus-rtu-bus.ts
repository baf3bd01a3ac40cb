import { pino, type Logger } from 'pino';
import { SerialPort } from 'serialport';
import type { ModbusFirmwareProfile } from '../src/domain/firmware-profile.js';
import type { RelayState } from '../src/domain/relay.js';
import { preciseSleep } from '../drivers/modbus/bus-clock.js';
import { FunctionCode } from '../drivers/modbus/modbus-codes.js';
import { bitsPerCharacter, decodeRtuFrame, encodeRtuFrame, interFrameSilenceMs, requestFrameLength } from '../drivers/modbus/rtu-frame.js';
import { SimulatedMeter, type MeterFaults } from './meter-model.js';
import { ModbusSimDevice, type DeviceAnswer } from './modbus-device.js';

/**
 * A simulated RS-485 bus: many Modbus RTU slaves on the device end of a serial link (a pty from
 * tests/harness/pty-pair.ts, or a real port through a null-modem cable). It parses RTU frames itself
 * (drivers/modbus/rtu-frame.ts), answers through `ModbusSimDevice`s backed by `SimulatedMeter`s, and adds
 * what a physical line does:
 * - line noise: a share of the bytes on the line is corrupted (replies, requests or both);
 * - baud-rate pacing: replies leave at baud/bits-per-character bytes per second, a request is taken to
 *   occupy the line for its own transmission time, and a slave starts answering only after t3.5 of silence;
 * - a referee: it asserts that there are never two frames on the bus at once, counting every request that
 *   starts while a reply is still being sent, or before the inter-frame silence after it (Serial Line §2.5.1.1).
 */

export interface RtuBusDeviceSpec {
  unitId: number;
  meterId: string;
  profile: ModbusFirmwareProfile;
  initialRelay?: RelayState;
  initialEnergyWh?: number;
  faults?: Partial<MeterFaults>;
}

export interface ModbusRtuBusOptions {
  /** The simulator's end of the link. */
  path: string;
  baudRate?: number;
  parity?: 'none' | 'even' | 'odd';
  dataBits?: 7 | 8;
  stopBits?: 1 | 2;
  devices: readonly RtuBusDeviceSpec[];
  /** Pace bytes as the real line would. Default false (answers leave at once). */
  paced?: boolean;
  /** Share of bytes corrupted (0–1), and on which direction. Default none. */
  noise?: { share: number; on?: 'replies' | 'requests' | 'both' };
  /** Silence (ms) after which bytes that fit no frame are discarded. Default 20. */
  noiseGapMs?: number;
  reopenMs?: number;
  now?: () => number;
  random?: () => number;
  logger?: Logger;
}

/** Function codes a master may broadcast: the writes (MB AP §6.5, §6.6, §6.11, §6.12). */
const BROADCAST_WRITES: ReadonlySet<number> = new Set([
  FunctionCode.WRITE_SINGLE_COIL,
  FunctionCode.WRITE_SINGLE_REGISTER,
  FunctionCode.WRITE_MULTIPLE_COILS,
  FunctionCode.WRITE_MULTIPLE_REGISTERS,
]);

/** A reply the simulator owes: delayed on purpose (a fault), and when its last byte should leave. */
interface ReplyInfo {
  late: boolean;
  plannedEndAt: number;
}

export interface BusViolation {
  at: number;
  kind: 'overlap' | 'silence';
  detail: string;
}

export class ModbusRtuBus {
  readonly counters = {
    requests: 0,
    replies: 0,
    /** Request frames that failed their CRC (noise on the way in): no answer, as a real slave. */
    badRequests: 0,
    /** Bytes discarded because they fitted no frame. */
    noiseBytes: 0,
    unknownUnit: 0,
    corruptedBytes: 0,
    /** Requests that broke "one frame on the bus at a time" by the master's doing. Must stay 0. */
    violations: 0,
    /**
     * Requests that came while a slave's reply was due but not yet started: the slave answered after the master's
     * response timeout (a late slave, or a simulator starved of CPU), and its reply then collides. Not the master's
     * fault: it cannot see a reply that has not begun.
     */
    lateReplyCollisions: 0,
    portOpens: 0,
    /** Broadcast requests (unit 0) taken: executed by every slave, answered by none. */
    broadcasts: 0,
  };
  /** The first violations, for the test's failure message. */
  readonly violations: BusViolation[] = [];
  readonly charMs: number;
  readonly interFrameMs: number;

  private readonly options: ModbusRtuBusOptions;
  private readonly devices = new Map<number, ModbusSimDevice>();
  private readonly byMeter = new Map<string, ModbusSimDevice>();
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly now: () => number;
  private port: SerialPort | undefined;
  private stopped = false;
  private reopenTimer: NodeJS.Timeout | undefined;
  private rx: Buffer = Buffer.alloc(0);
  private rxStartedAt = 0;
  private gapTimer: NodeJS.Timeout | undefined;
  /** Replies scheduled or being sent, each with its own facts. */
  private readonly due = new Set<ReplyInfo>();
  /** The paced reply whose bytes are leaving now. */
  private onLine: ReplyInfo | undefined;
  /** The last reply ended late (delayed on purpose, or the simulator fell behind its own timing). */
  private lastReplyLate = false;
  /** When the last byte of the last reply left (performance.now() ms). */
  private lastReplyEndAt = Number.NEGATIVE_INFINITY;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(options: ModbusRtuBusOptions) {
    this.options = options;
    this.log = (options.logger ?? pino({ level: 'silent' })).child({ simulator: 'modbus-rtu' });
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    const baud = options.baudRate ?? 19_200;
    const bits = bitsPerCharacter({ dataBits: options.dataBits ?? 8, parity: options.parity ?? 'none', stopBits: options.stopBits ?? 1 });
    this.charMs = (bits * 1000) / baud;
    this.interFrameMs = interFrameSilenceMs(baud, bits);
    for (const d of options.devices) {
      if (this.devices.has(d.unitId)) throw new Error(`unit id ${d.unitId} is used twice on the bus`);
      const meter = new SimulatedMeter({
        id: d.meterId,
        remoteReconnect: d.profile.relay.remoteReconnect,
        // A profile that says how the device reports a refused close describes a device that checks its load side.
        checksLoadSide: d.profile.modbus.closeRefusal !== undefined,
        now: this.now,
        ...(d.initialRelay ? { initialRelay: d.initialRelay } : {}),
        ...(d.initialEnergyWh !== undefined ? { initialEnergyWh: d.initialEnergyWh } : {}),
        ...(d.faults ? { faults: d.faults } : {}),
      });
      const device = new ModbusSimDevice(d.unitId, meter, d.profile);
      this.devices.set(d.unitId, device);
      this.byMeter.set(d.meterId, device);
    }
  }

  meter(meterId: string): SimulatedMeter {
    const d = this.byMeter.get(meterId);
    if (!d) throw new Error(`no simulated Modbus meter ${meterId} on this bus`);
    return d.meter;
  }

  device(unitId: number): ModbusSimDevice {
    const d = this.devices.get(unitId);
    if (!d) throw new Error(`no simulated Modbus device with unit id ${unitId}`);
    return d;
  }

  get isOpen(): boolean {
    return this.port !== undefined;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.open();
    if (!this.port) throw new Error(`simulated RTU bus: cannot open ${this.options.path}`);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reopenTimer);
    clearTimeout(this.gapTimer);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const d of this.devices.values()) d.meter.dispose();
    const port = this.port;
    this.port = undefined;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  private open(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const port = new SerialPort({
      path: this.options.path,
      baudRate: this.options.baudRate ?? 19_200,
      parity: this.options.parity ?? 'none',
      dataBits: this.options.dataBits ?? 8,
      stopBits: this.options.stopBits ?? 1,
      autoOpen: false,
    });
    port.on('data', (chunk: Buffer) => {
      if (port === this.port) this.onBytes(chunk);
    });
    port.on('error', (err: Error) => this.log.debug({ err: err.message }, 'port error'));
    port.on('close', () => {
      if (port !== this.port) return;
      this.port = undefined;
      this.rx = Buffer.alloc(0);
      this.scheduleReopen();
    });
    return new Promise((resolve) => {
      port.open((err) => {
        if (err) {
          this.scheduleReopen();
        } else if (this.stopped) {
          port.close();
        } else {
          this.port = port;
          this.counters.portOpens++;
        }
        resolve();
      });
    });
  }

  private scheduleReopen(): void {
    if (this.stopped) return;
    clearTimeout(this.reopenTimer);
    this.reopenTimer = setTimeout(() => void this.open(), this.options.reopenMs ?? 100);
  }

  private noisy(dir: 'replies' | 'requests'): boolean {
    const n = this.options.noise;
    return !!n && n.share > 0 && ((n.on ?? 'both') === 'both' || n.on === dir);
  }

  /** Flip a share of the bytes: XOR with a non-zero value, so every hit really changes the byte. */
  private addNoise(bytes: Buffer): Buffer {
    const share = this.options.noise!.share;
    const out = Buffer.from(bytes);
    for (let i = 0; i < out.length; i++) {
      if (this.random() < share) {
        out[i]! ^= 1 + Math.floor(this.random() * 255);
        this.counters.corruptedBytes++;
      }
    }
    return out;
  }

  private onBytes(chunk: Buffer): void {
    const at = performance.now();
    if (this.noisy('requests')) chunk = this.addNoise(chunk);
    if (this.rx.length === 0) {
      this.rxStartedAt = at;
      this.referee(at);
    }
    this.rx = this.rx.length === 0 ? chunk : Buffer.concat([this.rx, chunk]);
    this.takeFrames();
  }

  /** A new frame starts at `at`: the line must have been quiet for t3.5 since our last reply. */
  private referee(at: number): void {
    let v: BusViolation | undefined;
    if (this.due.size > 0) {
      // The slave is late when its answer was delayed on purpose (a fault) or it fell behind its own timing by more
      // than t3.5 (a starved simulator): a master that timed out meanwhile is not at fault for what follows.
      const late = [...this.due].some((r) => r.late || at > r.plannedEndAt + this.interFrameMs);
      if (late) {
        this.counters.lateReplyCollisions++;
        return;
      }
      v = { at, kind: 'overlap', detail: `a request started while a reply was ${this.onLine ? 'on the bus' : 'due on it'}` };
    } else if (at < this.lastReplyEndAt + this.interFrameMs) {
      if (this.lastReplyLate) {
        this.counters.lateReplyCollisions++;
        return;
      }
      v = { at, kind: 'silence', detail: `a request started ${(at - this.lastReplyEndAt).toFixed(3)} ms after a reply; t3.5 is ${this.interFrameMs.toFixed(3)} ms` };
    }
    if (!v) return;
    this.counters.violations++;
    if (this.violations.length < 20) this.violations.push(v);
    this.log.warn(v, 'two frames on the bus at once');
  }

  private takeFrames(): void {
    clearTimeout(this.gapTimer);
    for (;;) {
      const len = requestFrameLength(this.rx);
      if (len === null || len === 'unknown' || this.rx.length < len) break;
      const frame = this.rx.subarray(0, len);
      const startedAt = this.rxStartedAt;
      this.rx = this.rx.subarray(len);
      this.onFrame(Buffer.from(frame), startedAt);
      if (this.rx.length > 0) {
        // Another frame right behind this one, with no silence between: it is refereed like any other.
        this.rxStartedAt = performance.now();
        this.referee(this.rxStartedAt);
      }
    }
    if (this.rx.length > 0) {
      // A function code whose length framing cannot tell (one this slave does not implement, or noise in the
      // function code byte): the frame ends at t3.5 of silence (Serial Line §2.5.1.1). A frame whose CRC checks is
      // answered (exception 01, illegal function); anything else is noise. Bytes of a known frame that stop short
      // are dropped after `noiseGapMs`.
      const unsized = requestFrameLength(this.rx) === 'unknown';
      this.gapTimer = setTimeout(
        () => {
          const bytes = this.rx;
          this.rx = Buffer.alloc(0);
          if (unsized && decodeRtuFrame(bytes).ok) {
            this.onFrame(Buffer.from(bytes), this.rxStartedAt);
            return;
          }
          this.counters.noiseBytes += bytes.length;
          this.counters.badRequests++;
        },
        unsized ? this.interFrameMs : (this.options.noiseGapMs ?? 20),
      );
    }
  }

  private onFrame(frame: Buffer, startedAt: number): void {
    const checked = decodeRtuFrame(frame);
    if (!checked.ok) {
      this.counters.badRequests++;
      return;
    }
    this.counters.requests++;
    if (checked.unitId === 0) {
      // Broadcast (Serial Line §2.1, MB AP §4.1): every slave executes a write, and none answers; a read cannot
      // be broadcast and is ignored.
      if (!BROADCAST_WRITES.has(checked.pdu[0]!)) return;
      this.counters.broadcasts++;
      const now = this.now();
      for (const d of this.devices.values()) d.answer(checked.pdu, now);
      return;
    }
    const device = this.devices.get(checked.unitId);
    if (!device) {
      this.counters.unknownUnit++;
      return;
    }
    const answer = device.answer(checked.pdu, this.now());
    if (answer.kind === 'silent') return;
    this.reply(checked.unitId, answer, startedAt + frame.length * this.charMs);
  }

  /** Send one answer; paced, it starts t3.5 after the request left the line and takes its bytes' time. */
  private reply(unitId: number, answer: Exclude<DeviceAnswer, { kind: 'silent' }>, requestEndsAt: number): void {
    let bytes: Buffer = answer.kind === 'pdu' ? encodeRtuFrame(unitId, answer.pdu) : Buffer.from(answer.bytes);
    if (this.noisy('replies')) bytes = this.addNoise(bytes);
    const paced = this.options.paced ?? false;
    const startAt = (paced ? Math.max(performance.now(), requestEndsAt + this.interFrameMs) : performance.now()) + answer.delayMs;
    // Each reply keeps its own facts: a late one may still be due when the next request's answer is made.
    const info: ReplyInfo = { late: answer.delayMs > 0, plannedEndAt: startAt + (paced ? bytes.length * this.charMs : 0) };
    this.due.add(info);
    const go = (): void => {
      const port = this.port;
      if (!port) {
        this.due.delete(info);
        return;
      }
      this.counters.replies++;
      if (!paced) {
        port.write(bytes);
        this.endReply(info);
        return;
      }
      this.onLine = info;
      void this.pacedWrite(port, bytes, info);
    };
    const wait = startAt - performance.now();
    if (wait <= 0) go();
    else if (answer.delayMs > 0) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        go();
      }, wait);
      this.timers.add(t);
    } else void preciseSleep(wait).then(go);
  }

  /**
   * Bytes leave one character time apart, as on the line: each is handed to the port when its last bit has
   * been sent (as a UART receiver delivers it), so the last byte's write marks the end of the reply.
   */
  private async pacedWrite(port: SerialPort, bytes: Buffer, info: ReplyInfo): Promise<void> {
    const start = performance.now();
    let sent = 0;
    while (sent < bytes.length && !this.stopped) {
      await preciseSleep(start + (sent + 1) * this.charMs - performance.now());
      const done = Math.min(bytes.length, Math.floor((performance.now() - start) / this.charMs));
      if (done > sent) {
        port.write(bytes.subarray(sent, done));
        sent = done;
      }
    }
    this.endReply(info);
  }

  private endReply(info: ReplyInfo): void {
    this.lastReplyEndAt = performance.now();
    this.lastReplyLate = info.late || this.lastReplyEndAt > info.plannedEndAt + this.interFrameMs;
    this.due.delete(info);
    if (this.onLine === info) this.onLine = undefined;
  }

}
