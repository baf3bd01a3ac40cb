import type { ModbusFirmwareProfile } from '../src/domain/firmware-profile.js';
import type { ModbusRegisterTable } from '../src/domain/profiles/modbus-profile.js';
import type { RelayState } from '../src/domain/relay.js';
import { COIL_OFF, COIL_ON, EXCEPTION_FLAG, ExceptionCode, FunctionCode } from '../drivers/modbus/modbus-codes.js';
import { echoValueFor } from '../drivers/modbus/register-map.js';
import { encodeNumber } from '../drivers/modbus/register-values.js';
import { SimulatedMeter, type MeterOp, type MeterReply } from './meter-model.js';

/**
 * One simulated Modbus device (a unit id on a bus, or behind a TCP server): the register map of its firmware
 * profile laid over a `SimulatedMeter`. It answers request PDUs with response PDUs, exceptions, silence or
 * garbage exactly as the meter model's faults say, so the RTU bus and the TCP server only move bytes.
 * A request that touches the relay state point or the relay command goes through `SimulatedMeter.handle()`
 * (and is logged and fault-injected there); reads of voltage / energy alone are served from the meter directly.
 */

export type DeviceAnswer =
  | { kind: 'silent' }
  | { kind: 'pdu'; pdu: Buffer; delayMs: number }
  | { kind: 'garbage'; bytes: Uint8Array; delayMs: number };

export class ModbusSimDevice {
  /** Modbus-level faults on top of the meter's own. */
  readonly faults = { busyReplies: 0 };
  readonly counters = { requests: 0, exceptions: 0 };
  private seq = 0;
  /** Register spans the device has, per table: [first, last] (gaps inside a span read as 0). */
  private readonly spans = new Map<ModbusRegisterTable, [number, number]>();

  constructor(
    readonly unitId: number,
    readonly meter: SimulatedMeter,
    readonly profile: ModbusFirmwareProfile,
  ) {
    const m = profile.modbus;
    const add = (table: ModbusRegisterTable, first: number, width = 1): void => {
      const s = this.spans.get(table);
      const last = first + width - 1;
      this.spans.set(table, s ? [Math.min(s[0], first), Math.max(s[1], last)] : [first, last]);
    };
    add(m.relayCommand.kind, m.relayCommand.address);
    add(m.relayState.kind, m.relayState.address);
    if (m.voltageV) add(m.voltageV.table, m.voltageV.address, m.voltageV.type.endsWith('16') ? 1 : 2);
    if (m.energyWh) add(m.energyWh.table, m.energyWh.address, m.energyWh.type.endsWith('16') ? 1 : 2);
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
      if (this.touchesRelay(pdu)) this.meter.handle(this.opOf(pdu) ?? 'read', now, { cid: this.cid() });
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

  private touchesRelay(pdu: Buffer): boolean {
    if (pdu.length < 5) return false;
    const fc = pdu[0]!;
    if (fc <= FunctionCode.READ_INPUT_REGISTERS) {
      const s = this.profile.modbus.relayState;
      const address = pdu.readUInt16BE(1);
      return this.tableOf(fc) === s.kind && s.address >= address && s.address < address + pdu.readUInt16BE(3);
    }
    return this.opOf(pdu) !== undefined;
  }

  /** The relay command a write asks for, if it is one. */
  private opOf(pdu: Buffer): MeterOp | undefined {
    const c = this.profile.modbus.relayCommand;
    const fc = pdu[0]!;
    if (pdu.length < 5 || pdu.readUInt16BE(1) !== c.address) return undefined;
    if (fc === FunctionCode.WRITE_SINGLE_COIL && c.kind === 'coil') {
      const v = pdu.readUInt16BE(3);
      if (v !== COIL_ON && v !== COIL_OFF) return undefined;
      return (v === COIL_ON) === (c.closedWhen === 'on') ? 'reconnect' : 'disconnect';
    }
    let value: number | undefined;
    if (fc === FunctionCode.WRITE_SINGLE_REGISTER) value = pdu.readUInt16BE(3);
    if (fc === FunctionCode.WRITE_MULTIPLE_REGISTERS && pdu.length >= 8 && pdu.readUInt16BE(3) === 1) value = pdu.readUInt16BE(6);
    if (c.kind !== 'holdingRegister' || value === undefined) return undefined;
    return value === c.values.reconnect ? 'reconnect' : value === c.values.disconnect ? 'disconnect' : undefined;
  }

  private read(pdu: Buffer, now: number): DeviceAnswer {
    const fc = pdu[0]!;
    if (pdu.length !== 5) return this.exception(fc, ExceptionCode.ILLEGAL_DATA_VALUE);
    const table = this.tableOf(fc);
    const address = pdu.readUInt16BE(1);
    const quantity = pdu.readUInt16BE(3);
    const span = this.spans.get(table);
    if (quantity < 1 || !span || address < span[0] || address + quantity - 1 > span[1]) return this.exception(fc, ExceptionCode.ILLEGAL_DATA_ADDRESS);

    let relay: RelayState = this.meter.relay;
    let voltageV = this.meter.voltageV;
    let energyWh = this.meter.energyWh;
    let delayMs = 0;
    if (this.touchesRelay(pdu)) {
      const reply = this.meter.handle('read', now, { cid: this.cid() });
      if (!reply) return { kind: 'silent' };
      if (reply.garbled) return { kind: 'garbage', bytes: reply.garbage!, delayMs: reply.replyDelayMs };
      ({ relay, voltageV, energyWh } = reply);
      delayMs = reply.replyDelayMs;
    }
    if (table === 'coil' || table === 'discreteInput') {
      const bytes = Buffer.alloc(2 + Math.ceil(quantity / 8));
      bytes[0] = fc;
      bytes[1] = bytes.length - 2;
      for (let i = 0; i < quantity; i++) if (this.bitAt(table, address + i, relay)) bytes[2 + (i >> 3)]! |= 1 << (i & 7);
      return { kind: 'pdu', pdu: bytes, delayMs };
    }
    const words = this.registerImage(table, relay, voltageV, energyWh);
    const out = Buffer.alloc(2 + quantity * 2);
    out[0] = fc;
    out[1] = quantity * 2;
    for (let i = 0; i < quantity; i++) out.writeUInt16BE(words.get(address + i) ?? 0, 2 + i * 2);
    return { kind: 'pdu', pdu: out, delayMs };
  }

  private bitAt(table: 'coil' | 'discreteInput', address: number, relay: RelayState): boolean {
    const m = this.profile.modbus;
    for (const p of [m.relayState, m.relayCommand]) {
      if (p.kind === table && p.address === address && 'closedWhen' in p) return (relay === 'connected') === (p.closedWhen === 'on');
    }
    return false;
  }

  private registerImage(table: ModbusRegisterTable, relay: RelayState, voltageV: number, energyWh: number): Map<number, number> {
    const m = this.profile.modbus;
    const words = new Map<number, number>();
    const s = m.relayState;
    if (s.kind === table && 'values' in s) words.set(s.address, relay === 'armed' ? (s.values.armed ?? s.values.disconnected) : s.values[relay]);
    const c = m.relayCommand;
    if (c.kind === table) words.set(c.address, echoValueFor(m, relay));
    for (const [p, v] of [[m.voltageV, voltageV], [m.energyWh, energyWh]] as const) {
      if (p?.table === table) encodeNumber(v, p).forEach((w, i) => words.set(p.address + i, w));
    }
    return words;
  }

  private write(pdu: Buffer, now: number): DeviceAnswer {
    const fc = pdu[0]!;
    const c = this.profile.modbus.relayCommand;
    if (pdu.length < 5 || pdu.readUInt16BE(1) !== c.address || (fc === FunctionCode.WRITE_SINGLE_COIL) !== (c.kind === 'coil')) {
      return this.exception(fc, ExceptionCode.ILLEGAL_DATA_ADDRESS);
    }
    const op = this.opOf(pdu);
    if (!op) return this.exception(fc, ExceptionCode.ILLEGAL_DATA_VALUE);
    const reply: MeterReply | undefined = this.meter.handle(op, now, { cid: this.cid() });
    if (!reply) return { kind: 'silent' };
    if (reply.garbled) return { kind: 'garbage', bytes: reply.garbage!, delayMs: reply.replyDelayMs };
    if (reply.result === 'nack') return { ...this.exception(fc, ExceptionCode.SERVER_DEVICE_FAILURE), delayMs: reply.replyDelayMs };
    // The echo (MB AP §6.5/§6.6/§6.12) carries the value for the state the meter claims.
    const out = Buffer.from(pdu.subarray(0, 5));
    if (fc !== FunctionCode.WRITE_MULTIPLE_REGISTERS) out.writeUInt16BE(echoValueFor(this.profile.modbus, reply.relay), 3);
    return { kind: 'pdu', pdu: out, delayMs: reply.replyDelayMs };
  }

  private exception(fc: number, code: number): { kind: 'pdu'; pdu: Buffer; delayMs: number } {
    this.counters.exceptions++;
    return { kind: 'pdu', pdu: Buffer.from([fc | EXCEPTION_FLAG, code]), delayMs: 0 };
  }
}
