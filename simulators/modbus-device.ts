import type { ModbusFirmwareProfile } from '../src/domain/firmware-profile.js';
import { NUMERIC_FIELDS, pointWidth, type ModbusNumericPoint, type ModbusRegisterTable } from '../src/domain/profiles/modbus-profile.js';
import type { RelayState, SwitchAction } from '../src/domain/relay.js';
import { COIL_OFF, COIL_ON, EXCEPTION_FLAG, ExceptionCode, FunctionCode } from '../drivers/modbus/modbus-codes.js';
import { coilsOfRequest, registersOfRequest } from '../drivers/modbus/modbus-pdu.js';
import { commandSteps, echoOf, relayFieldFor, relayStateField, type RelayStateField, type WriteStep } from '../drivers/modbus/register-map.js';
import { decodeNumber, decodeRaw, encodeNumber, encodeRaw } from '../drivers/modbus/register-values.js';
import { SimulatedMeter, type MeterOp, type MeterReply } from './meter-model.js';

/**
 * One simulated Modbus device (a unit id on a bus, or behind a TCP server): the register map of its firmware
 * profile laid over a `SimulatedMeter`. It answers request PDUs with response PDUs, exceptions, silence or
 * garbage exactly as the meter model's faults say, so the RTU bus and the TCP server only move bytes.
 * A request that touches the relay state point, a relay command's operate write or the demand-limit register goes
 * through `SimulatedMeter.handle()` (and is logged and fault-injected there); other reads are served from the
 * meter directly.
 *
 * It is as strict as the devices the profiles describe: a command register takes only the function codes its
 * profile writes it with (an FC16-only device answers FC06 with exception 01), the operate write of a multi-step
 * command is refused unless the steps before it came in order within `selectWindowMs`, and a close the meter
 * refuses for voltage on its load side is reported the way the profile's `closeRefusal` says.
 */

export type DeviceAnswer =
  | { kind: 'silent' }
  | { kind: 'pdu'; pdu: Buffer; delayMs: number }
  | { kind: 'garbage'; bytes: Uint8Array; delayMs: number };

export interface ModbusDeviceFaults {
  /** The next n requests are answered "server device busy" (exception 0x06) and not acted on. */
  busyReplies: number;
  /** The bits of the relay status register outside the relay field change on every read (the word's other flags). */
  statusNoise: boolean;
  /** Numeric registers are served with the bytes of each word swapped against the profile (a device set up otherwise). */
  swappedBytes: boolean;
}

/** The exception a device answers an operate write whose select / unlock step is missing or stale with. */
const SEQUENCE_REFUSAL = ExceptionCode.ILLEGAL_DATA_VALUE;

const ACTIONS: readonly SwitchAction[] = ['disconnect', 'reconnect'];

/** What the registers show of the meter. */
type MeterView = Pick<MeterReply, 'relay' | 'voltageV' | 'energyWh' | 'loadSideVoltageV' | 'loadLimitW'>;

/** A write of a request PDU: its address and its values (coils as 0/1, registers as words). */
interface Written {
  fc: number;
  address: number;
  values: number[];
}

export class ModbusSimDevice {
  /** Modbus-level faults on top of the meter's own. */
  readonly faults: ModbusDeviceFaults = { busyReplies: 0, statusNoise: false, swappedBytes: false };
  readonly counters = { requests: 0, exceptions: 0 };
  /** How long a select / unlock step stays valid for the operate write that follows it (ms). */
  selectWindowMs = 5000;
  private seq = 0;
  /** Register spans the device has, per table: [first, last] (gaps inside a span read as 0). */
  private readonly spans = new Map<ModbusRegisterTable, [number, number]>();
  private readonly state: RelayStateField;
  private readonly steps: Record<SwitchAction, WriteStep[]>;
  /** Per action: the last step received of its sequence and when (select-before-operate). */
  private readonly progress = new Map<SwitchAction, { step: number; at: number }>();
  /** The last close was refused for voltage on the load side (the profile's status bit), until the next command. */
  private refusedClose = false;

  constructor(
    readonly unitId: number,
    readonly meter: SimulatedMeter,
    readonly profile: ModbusFirmwareProfile,
  ) {
    const m = profile.modbus;
    this.state = relayStateField(m);
    this.steps = { disconnect: commandSteps(m, 'disconnect'), reconnect: commandSteps(m, 'reconnect') };
    const add = (table: ModbusRegisterTable, first: number, width = 1): void => {
      const s = this.spans.get(table);
      const last = first + width - 1;
      this.spans.set(table, s ? [Math.min(s[0], first), Math.max(s[1], last)] : [first, last]);
    };
    for (const a of ACTIONS) for (const st of this.steps[a]) add(st.fc === 5 || st.fc === 15 ? 'coil' : 'holdingRegister', st.address, st.values.length);
    add(this.state.table, this.state.address, this.state.count);
    for (const f of NUMERIC_FIELDS) {
      const p = m[f];
      if (p) add(p.table, p.address, pointWidth(p));
    }
    const bit = m.closeRefusal?.statusBit;
    if (bit) add(bit.table, bit.address);
  }

  /** The next n requests are answered "server device busy" (exception 0x06) and not acted on. */
  busyReplies(n: number): void {
    this.faults.busyReplies = n;
  }

  answer(pdu: Buffer, now: number): DeviceAnswer {
    this.counters.requests++;
    const fc = pdu[0]!;
    if (now < this.meter.faults.offlineUntil) {
      // The meter model logs commands it ignores while offline; reads of other registers are just unanswered.
      const op = this.opOf(pdu);
      if (op || this.readsRelay(pdu)) this.meter.handle(op ?? 'read', now, { cid: this.cid() });
      return { kind: 'silent' };
    }
    if (this.faults.busyReplies > 0) {
      this.faults.busyReplies--;
      return this.exception(fc, ExceptionCode.SERVER_DEVICE_BUSY);
    }
    switch (fc) {
      case FunctionCode.READ_COILS:
      case FunctionCode.READ_DISCRETE_INPUTS:
      case FunctionCode.READ_HOLDING_REGISTERS:
      case FunctionCode.READ_INPUT_REGISTERS:
        return this.read(pdu, now);
      case FunctionCode.WRITE_SINGLE_COIL:
      case FunctionCode.WRITE_SINGLE_REGISTER:
      case FunctionCode.WRITE_MULTIPLE_COILS:
      case FunctionCode.WRITE_MULTIPLE_REGISTERS:
        return this.write(pdu, now);
      default:
        return this.exception(fc, ExceptionCode.ILLEGAL_FUNCTION);
    }
  }

  private cid(): string {
    return `unit${this.unitId}:${++this.seq}`;
  }

  private tableOf(fc: number): ModbusRegisterTable {
    return fc === FunctionCode.READ_COILS ? 'coil' : fc === FunctionCode.READ_DISCRETE_INPUTS ? 'discreteInput' : fc === FunctionCode.READ_HOLDING_REGISTERS ? 'holdingRegister' : 'inputRegister';
  }

  private readsRelay(pdu: Buffer): boolean {
    const fc = pdu[0]!;
    if (pdu.length < 5 || fc > FunctionCode.READ_INPUT_REGISTERS) return false;
    const s = this.state;
    const address = pdu.readUInt16BE(1);
    return this.tableOf(fc) === s.table && s.address < address + pdu.readUInt16BE(3) && address < s.address + s.count;
  }

  /** The address and values a write carries, or undefined for a malformed one. */
  private written(pdu: Buffer): Written | undefined {
    const fc = pdu[0]!;
    if (pdu.length < 5) return undefined;
    const address = pdu.readUInt16BE(1);
    if (fc === FunctionCode.WRITE_SINGLE_COIL) {
      const v = pdu.readUInt16BE(3);
      return v === COIL_ON || v === COIL_OFF ? { fc, address, values: [v === COIL_ON ? 1 : 0] } : undefined;
    }
    if (fc === FunctionCode.WRITE_SINGLE_REGISTER) return { fc, address, values: [pdu.readUInt16BE(3)] };
    if (pdu.length < 6) return undefined;
    const quantity = pdu.readUInt16BE(3);
    const bytes = fc === FunctionCode.WRITE_MULTIPLE_COILS ? Math.ceil(quantity / 8) : quantity * 2;
    if (pdu[5] !== bytes || pdu.length !== 6 + bytes) return undefined;
    return { fc, address, values: fc === FunctionCode.WRITE_MULTIPLE_COILS ? coilsOfRequest(pdu).map((b) => (b ? 1 : 0)) : registersOfRequest(pdu) };
  }

  /** The step of a command sequence a write is, for each action it fits. */
  private stepsMatching(w: Written): Array<{ action: SwitchAction; index: number }> {
    // A legacy single-register command also takes FC16 of one register, as such firmware does.
    const legacyFc16 = this.profile.modbus.relayCommand.kind === 'holdingRegister' && w.fc === FunctionCode.WRITE_MULTIPLE_REGISTERS && w.values.length === 1;
    const fc = legacyFc16 ? FunctionCode.WRITE_SINGLE_REGISTER : w.fc;
    return ACTIONS.flatMap((action) =>
      this.steps[action].flatMap((st, index) => (st.fc === fc && st.address === w.address && st.values.length === w.values.length && st.values.every((v, i) => v === w.values[i]) ? [{ action, index }] : [])),
    );
  }

  /** The meter operation a write asks for, if it is an operate write or the limit register. */
  private opOf(pdu: Buffer): MeterOp | undefined {
    const w = this.written(pdu);
    if (!w) return undefined;
    if (this.profile.modbus.loadLimit?.address === w.address && w.fc !== FunctionCode.WRITE_SINGLE_COIL && w.fc !== FunctionCode.WRITE_MULTIPLE_COILS) return 'limit';
    return this.stepsMatching(w).find((m) => m.index === this.steps[m.action].length - 1)?.action;
  }

  private read(pdu: Buffer, now: number): DeviceAnswer {
    const fc = pdu[0]!;
    if (pdu.length !== 5) return this.exception(fc, ExceptionCode.ILLEGAL_DATA_VALUE);
    const table = this.tableOf(fc);
    const address = pdu.readUInt16BE(1);
    const quantity = pdu.readUInt16BE(3);
    const span = this.spans.get(table);
    if (quantity < 1 || !span || address < span[0] || address + quantity - 1 > span[1]) return this.exception(fc, ExceptionCode.ILLEGAL_DATA_ADDRESS);

    const m = this.meter;
    let view: MeterView = { relay: m.relay, voltageV: m.voltageV, energyWh: m.energyWh, loadSideVoltageV: m.loadSideVoltageV, loadLimitW: m.loadLimitW };
    let delayMs = 0;
    if (this.readsRelay(pdu)) {
      const reply = m.handle('read', now, { cid: this.cid() });
      if (!reply) return { kind: 'silent' };
      if (reply.garbled) return { kind: 'garbage', bytes: reply.garbage!, delayMs: reply.replyDelayMs };
      view = reply;
      delayMs = reply.replyDelayMs;
    }
    if (table === 'coil' || table === 'discreteInput') {
      const bytes = Buffer.alloc(2 + Math.ceil(quantity / 8));
      bytes[0] = fc;
      bytes[1] = bytes.length - 2;
      for (let i = 0; i < quantity; i++) if (this.bitAt(table, address + i, view.relay)) bytes[2 + (i >> 3)]! |= 1 << (i & 7);
      return { kind: 'pdu', pdu: bytes, delayMs };
    }
    const words = this.registerImage(table, view);
    const out = Buffer.alloc(2 + quantity * 2);
    out[0] = fc;
    out[1] = quantity * 2;
    for (let i = 0; i < quantity; i++) out.writeUInt16BE(words.get(address + i) ?? 0, 2 + i * 2);
    return { kind: 'pdu', pdu: out, delayMs };
  }

  private bitAt(table: 'coil' | 'discreteInput', address: number, relay: RelayState): boolean {
    const s = this.state;
    if (s.table === table && address >= s.address && address < s.address + s.count) return ((relayFieldFor(s, relay) >> (address - s.address)) & 1) === 1;
    // A single command coil reads back as the relay it drives (MB AP §6.1 read of a coil written by §6.5).
    const c = this.profile.modbus.relayCommand;
    if (table === 'coil' && c.kind === 'coil' && c.address === address) return (relay === 'connected') === (c.closedWhen === 'on');
    return false;
  }

  private registerImage(table: ModbusRegisterTable, view: MeterView): Map<number, number> {
    const m = this.profile.modbus;
    const words = new Map<number, number>();
    const c = m.relayCommand;
    if (c.kind === 'holdingRegister' && table === 'holdingRegister') words.set(c.address, echoOf(this.finalStep(view.relay)));
    const s = this.state;
    if (s.table === table) {
      const noise = this.faults.statusNoise ? (0xa5c3 ^ Math.imul(this.counters.requests, 0x9e37)) & 0xffff & ~s.mask : 0;
      words.set(s.address, ((relayFieldFor(s, view.relay) << s.shift) | noise) & 0xffff);
    }
    const points: Array<[ModbusNumericPoint | undefined, () => number[]]> = [
      [m.voltageV, () => this.encode(view.voltageV, m.voltageV!)],
      [m.energyWh, () => this.encode(view.energyWh, m.energyWh!)],
      [m.loadSideVoltageV, () => this.encode(view.loadSideVoltageV, m.loadSideVoltageV!)],
      [m.loadLimit, () => (view.loadLimitW === null ? encodeRaw(m.loadLimit!.noLimit, m.loadLimit!) : this.encode(view.loadLimitW, m.loadLimit!))],
    ];
    for (const [p, encode] of points) if (p?.table === table) encode().forEach((w, i) => words.set(p.address + i, w));
    const bit = m.closeRefusal?.statusBit;
    if (bit?.table === table) words.set(bit.address, (words.get(bit.address) ?? 0) | (this.refusedClose ? bit.mask : 0));
    return words;
  }

  private encode(value: number, p: ModbusNumericPoint): number[] {
    const words = encodeNumber(value, p);
    return this.faults.swappedBytes ? words.map((w) => ((w & 0xff) << 8) | (w >> 8)) : words;
  }

  /** The operate write of the action whose result is `claimed` (what an FC05/FC06 echo shows for it). */
  private finalStep(claimed: RelayState): WriteStep {
    return this.steps[claimed === 'disconnected' ? 'disconnect' : 'reconnect'].at(-1)!;
  }

  private write(pdu: Buffer, now: number): DeviceAnswer {
    const fc = pdu[0]!;
    const w = this.written(pdu);
    if (!w) return this.exception(fc, ExceptionCode.ILLEGAL_DATA_VALUE);
    const l = this.profile.modbus.loadLimit;
    if (l && w.address === l.address) return this.writeLimit(pdu, w, now);
    const atAddress = ACTIONS.flatMap((a) => this.steps[a]).filter((st) => st.address === w.address);
    if (atAddress.length === 0) return this.exception(fc, ExceptionCode.ILLEGAL_DATA_ADDRESS);
    const matches = this.stepsMatching(w);
    if (matches.length === 0) {
      const legacyFc16 = this.profile.modbus.relayCommand.kind === 'holdingRegister' && fc === FunctionCode.WRITE_MULTIPLE_REGISTERS;
      return this.exception(fc, atAddress.some((st) => st.fc === fc) || legacyFc16 ? ExceptionCode.ILLEGAL_DATA_VALUE : ExceptionCode.ILLEGAL_FUNCTION);
    }
    this.refusedClose = false;
    const operate = matches.find((x) => x.index === this.steps[x.action].length - 1);
    if (!operate) {
      // A select / unlock step: remember it for the operate write; it must follow the step before it in time.
      for (const x of matches) {
        const before = this.progress.get(x.action);
        if (x.index === 0 || (before?.step === x.index - 1 && now - before.at <= this.selectWindowMs)) this.progress.set(x.action, { step: x.index, at: now });
        else return this.exception(fc, SEQUENCE_REFUSAL);
      }
      return this.echo(pdu);
    }
    const n = this.steps[operate.action].length;
    const before = this.progress.get(operate.action);
    this.progress.clear();
    if (n > 1 && !(before?.step === n - 2 && now - before.at <= this.selectWindowMs)) return this.exception(fc, SEQUENCE_REFUSAL);

    const reply = this.meter.handle(operate.action, now, { cid: this.cid() });
    if (!reply) return { kind: 'silent' };
    if (reply.garbled) return { kind: 'garbage', bytes: reply.garbage!, delayMs: reply.replyDelayMs };
    if (reply.result === 'nack') {
      const how = this.profile.modbus.closeRefusal;
      if (reply.refusal === 'load_side_voltage' && how) {
        this.refusedClose = true;
        // A device with only a status bit takes the write and does not close; one with an exception code refuses.
        if (how.exceptionCode === undefined) return { ...this.echo(pdu, echoOf(this.finalStep(reply.relay))), delayMs: reply.replyDelayMs };
        return { ...this.exception(fc, how.exceptionCode), delayMs: reply.replyDelayMs };
      }
      return { ...this.exception(fc, ExceptionCode.SERVER_DEVICE_FAILURE), delayMs: reply.replyDelayMs };
    }
    // The echo (MB AP §6.5/§6.6) carries the value for the state the meter claims; FC15/16 echo the quantity.
    return { ...this.echo(pdu, echoOf(this.finalStep(reply.relay))), delayMs: reply.replyDelayMs };
  }

  private writeLimit(pdu: Buffer, w: Written, now: number): DeviceAnswer {
    const l = this.profile.modbus.loadLimit!;
    const fc = pdu[0]!;
    if (fc !== l.writeFunction) return this.exception(fc, ExceptionCode.ILLEGAL_FUNCTION);
    if (w.values.length !== pointWidth(l)) return this.exception(fc, ExceptionCode.ILLEGAL_DATA_VALUE);
    const limitW = Number(decodeRaw(w.values, l)) === l.noLimit ? null : decodeNumber(w.values, l);
    const reply = this.meter.handle('limit', now, { cid: this.cid(), limitW });
    if (!reply) return { kind: 'silent' };
    if (reply.garbled) return { kind: 'garbage', bytes: reply.garbage!, delayMs: reply.replyDelayMs };
    if (reply.result === 'nack') return { ...this.exception(fc, ExceptionCode.SERVER_DEVICE_FAILURE), delayMs: reply.replyDelayMs };
    return { ...this.echo(pdu), delayMs: reply.replyDelayMs };
  }

  /**
   * A write's answer: FC05/FC06 echo address and value (§6.5, §6.6; `value` when the device claims another than the
   * one written), FC15/FC16 address and quantity (§6.11, §6.12).
   */
  private echo(pdu: Buffer, value?: number): { kind: 'pdu'; pdu: Buffer; delayMs: number } {
    const out = Buffer.from(pdu.subarray(0, 5));
    if (value !== undefined && (pdu[0] === FunctionCode.WRITE_SINGLE_COIL || pdu[0] === FunctionCode.WRITE_SINGLE_REGISTER)) out.writeUInt16BE(value, 3);
    return { kind: 'pdu', pdu: out, delayMs: 0 };
  }

  private exception(fc: number, code: number): { kind: 'pdu'; pdu: Buffer; delayMs: number } {
    this.counters.exceptions++;
    return { kind: 'pdu', pdu: Buffer.from([fc | EXCEPTION_FLAG, code]), delayMs: 0 };
  }
}
