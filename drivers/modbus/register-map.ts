import type { FirmwareProfile } from '../../src/domain/firmware-profile.js';
import {
  NUMERIC_FIELDS,
  pointWidth,
  type ModbusRegisterMap,
  type ModbusRegisterTable,
  type ModbusWriteStep,
  type NumericField,
} from '../../src/domain/profiles/modbus-profile.js';
import type { RelayState, SwitchAction } from '../../src/domain/relay.js';
import { COIL_OFF, COIL_ON, FunctionCode, MAX_READ_BITS, MAX_READ_REGISTERS } from './modbus-codes.js';
import { readRequest, writeMultipleCoilsRequest, writeMultipleRegistersRequest, writeSingleCoilRequest, writeSingleRegisterRequest, type ParsedResponse, type ReadFunction } from './modbus-pdu.js';
import { decodeNumber, decodeRaw, encodeNumber, encodeRaw, UnsafeValueError } from './register-values.js';

/**
 * A firmware profile's register map turned into requests and back: the writes that command the relay (one or a
 * sequence), what their answers claim, the reads that make up one relay reading (relay state first, neighbouring
 * registers of the same table merged into one request) and how their answers decode, the demand-limit write.
 * The simulators use the same functions, so the device and the driver read a profile alike.
 */

export const READ_FUNCTION: Readonly<Record<ModbusRegisterTable, ReadFunction>> = {
  coil: FunctionCode.READ_COILS,
  discreteInput: FunctionCode.READ_DISCRETE_INPUTS,
  holdingRegister: FunctionCode.READ_HOLDING_REGISTERS,
  inputRegister: FunctionCode.READ_INPUT_REGISTERS,
};

type RemoteReconnect = FirmwareProfile['relay']['remoteReconnect'];

/** One write of a relay command, with the values of one action: coils as 0/1, registers as words. */
export interface WriteStep {
  fc: ModbusWriteStep['function'];
  address: number;
  values: number[];
  delayMs: number;
}

/** The writes that ask for `action`, in order; the legacy single-write kinds are one-step sequences. */
export function commandSteps(map: ModbusRegisterMap, action: SwitchAction): WriteStep[] {
  const c = map.relayCommand;
  if (c.kind === 'coil') {
    const close = action === 'reconnect';
    return [{ fc: 5, address: c.address, values: [(c.closedWhen === 'on') === close ? 1 : 0], delayMs: 0 }];
  }
  if (c.kind === 'holdingRegister') return [{ fc: 6, address: c.address, values: [c.values[action]], delayMs: 0 }];
  return c.steps.map((s) => ({ fc: s.function, address: s.address, values: Array.isArray(s.values) ? s.values : s.values[action], delayMs: s.delayMs ?? 0 }));
}

/** The request PDU of one step. */
export function stepPdu(step: WriteStep): Buffer {
  switch (step.fc) {
    case 5:
      return writeSingleCoilRequest(step.address, step.values[0] === 1);
    case 6:
      return writeSingleRegisterRequest(step.address, step.values[0]!);
    case 15:
      return writeMultipleCoilsRequest(step.address, step.values.map((v) => v === 1));
    case 16:
      return writeMultipleRegistersRequest(step.address, step.values);
  }
}

/** The value an FC05/FC06 echo carries for a step (MB AP §6.5: a coil's ON is 0xFF00), or its quantity for FC15/FC16. */
export function echoOf(step: WriteStep): number {
  if (step.fc === 5) return step.values[0] === 1 ? COIL_ON : COIL_OFF;
  if (step.fc === 6) return step.values[0]!;
  return step.values.length;
}

const target = (action: SwitchAction, remoteReconnect: RemoteReconnect): RelayState =>
  action === 'disconnect' ? 'disconnected' : remoteReconnect === 'arms' ? 'armed' : 'connected';

/**
 * What the answer to a command's last write claims. An FC05/FC06 echo carries a value (MB AP §6.5/§6.6): a device
 * that echoes the other action's value (firmware reporting a relay that did not move) claims that state instead.
 * FC15/FC16 echo only address and quantity (§6.11/§6.12): the claim is that the command was accepted.
 * Either way only the read-back decides. Undefined when the echo fits neither action.
 */
export function claimFromEcho(map: ModbusRegisterMap, remoteReconnect: RemoteReconnect, action: SwitchAction, value: number): RelayState | undefined {
  const last = (a: SwitchAction) => commandSteps(map, a).at(-1)!;
  const mine = last(action);
  if (mine.fc === 15 || mine.fc === 16) return value === mine.values.length ? target(action, remoteReconnect) : undefined;
  if (value === echoOf(mine)) return target(action, remoteReconnect);
  const other: SwitchAction = action === 'disconnect' ? 'reconnect' : 'disconnect';
  return value === echoOf(last(other)) ? target(other, remoteReconnect) : undefined;
}

/** The relay state point made uniform: which items to read, and which field value means which state. */
export interface RelayStateField {
  table: ModbusRegisterTable;
  address: number;
  /** Items read: registers (always 1) or coils / inputs. */
  count: number;
  /** For a register: the bit field (word AND mask) >> shift. */
  mask: number;
  shift: number;
  encodings: Partial<Record<RelayState, number[]>>;
}

const list = (e: number | number[] | undefined): number[] | undefined => (e === undefined ? undefined : typeof e === 'number' ? [e] : e);

export function relayStateField(map: ModbusRegisterMap): RelayStateField {
  const s = map.relayState;
  if (s.kind === 'coil' || s.kind === 'discreteInput') {
    const on = s.closedWhen === 'on' ? 1 : 0;
    return { table: s.kind, address: s.address, count: 1, mask: 1, shift: 0, encodings: { connected: [on], disconnected: [1 - on] } };
  }
  const encodings: Partial<Record<RelayState, number[]>> = { connected: list(s.values.connected)!, disconnected: list(s.values.disconnected)! };
  const armed = list(s.values.armed);
  if (armed) encodings.armed = armed;
  if ('count' in s) {
    return { table: s.kind === 'coils' ? 'coil' : 'discreteInput', address: s.address, count: s.count, mask: 2 ** s.count - 1, shift: 0, encodings };
  }
  return { table: s.kind, address: s.address, count: 1, mask: s.mask, shift: s.shift, encodings };
}

/** Check what the schema cannot see: an 'arms' profile must be able to read "armed". Returns the problem or null. */
export function registerMapProblem(map: ModbusRegisterMap, remoteReconnect: RemoteReconnect): string | null {
  if (remoteReconnect === 'arms' && relayStateField(map).encodings.armed === undefined) {
    return 'remote reconnect "arms" needs a relay state with an "armed" encoding';
  }
  return null;
}

/** One read request of a reading plan. */
export interface PlannedRead {
  table: ModbusRegisterTable;
  address: number;
  quantity: number;
  pdu: Buffer;
}

type Field = 'relay' | NumericField;
interface FieldSpan {
  field: Field;
  table: ModbusRegisterTable;
  address: number;
  width: number;
}

export interface DecodedReading {
  relay: RelayState;
  voltageV?: number;
  energyWh?: number;
  loadSideVoltageV?: number;
  /** The demand limit in W, null when the register holds the profile's "no limit" value. */
  loadLimitW?: number | null;
}

export interface ReadingPlan {
  /** In order; the first one holds the relay state. */
  reads: PlannedRead[];
  decode(answers: readonly ParsedResponse[]): DecodedReading | { problem: string };
}

/** Reads for one relay reading: the relay state, then the numeric points, merging neighbours of one table. */
export function readingPlan(map: ModbusRegisterMap): ReadingPlan {
  const s = relayStateField(map);
  const spans: FieldSpan[] = [{ field: 'relay', table: s.table, address: s.address, width: s.count }];
  for (const field of NUMERIC_FIELDS) {
    const p = map[field];
    if (p) spans.push({ field, table: p.table, address: p.address, width: pointWidth(p) });
  }

  const groups: FieldSpan[][] = [];
  for (const span of spans) {
    const bits = span.table === 'coil' || span.table === 'discreteInput';
    const group = groups.find((g) => {
      if (g[0]!.table !== span.table) return false;
      const lo = Math.min(...g.map((x) => x.address), span.address);
      const hi = Math.max(...g.map((x) => x.address + x.width), span.address + span.width);
      const used = g.reduce((n, x) => n + x.width, span.width);
      return hi - lo <= (bits ? MAX_READ_BITS : MAX_READ_REGISTERS) && hi - lo - used <= map.mergeGap;
    });
    if (group) group.push(span);
    else groups.push([span]);
  }
  const reads = groups.map((g) => {
    const address = Math.min(...g.map((x) => x.address));
    const quantity = Math.max(...g.map((x) => x.address + x.width)) - address;
    const table = g[0]!.table;
    return { table, address, quantity, pdu: readRequest(READ_FUNCTION[table], address, quantity), spans: g };
  });

  return {
    reads: reads.map(({ table, address, quantity, pdu }) => ({ table, address, quantity, pdu })),
    decode(answers) {
      const out: Partial<DecodedReading> = {};
      for (const [i, r] of reads.entries()) {
        const a = answers[i];
        if (!a) return { problem: `no answer for read ${i + 1} of ${reads.length}` };
        for (const span of r.spans) {
          const offset = span.address - r.address;
          if (span.field === 'relay') {
            const relay = decodeRelay(s, a, offset);
            if (typeof relay !== 'string') return relay;
            out.relay = relay;
            continue;
          }
          if (a.kind !== 'registers') return { problem: `expected registers for ${span.field}, got ${a.kind}` };
          const words = a.words.slice(offset, offset + span.width);
          const value = decodeField(map, span.field, words);
          if (typeof value === 'object' && value !== null) return value;
          if (span.field === 'loadLimit') out.loadLimitW = value;
          else out[span.field] = value as number;
        }
      }
      if (out.relay === undefined) return { problem: 'relay state missing' };
      return out as DecodedReading;
    },
  };
}

function decodeField(map: ModbusRegisterMap, field: NumericField, words: number[]): number | null | { problem: string } {
  const p = map[field]!;
  try {
    if (field === 'loadLimit' && map.loadLimit && Number(decodeRaw(words, map.loadLimit)) === map.loadLimit.noLimit) return null;
    return decodeNumber(words, p);
  } catch (e) {
    if (e instanceof UnsafeValueError) return { problem: `${field}: ${e.message}` };
    throw e;
  }
}

/** The field value of the relay state (bit field of a register, or the inputs read as bits of a number). */
function relayFieldValue(s: RelayStateField, a: ParsedResponse, offset: number): number | { problem: string } {
  if (s.table === 'coil' || s.table === 'discreteInput') {
    if (a.kind !== 'bits') return { problem: `expected bits for the relay state, got ${a.kind}` };
    let v = 0;
    for (let i = 0; i < s.count; i++) if (a.bits[offset + i]) v |= 1 << i;
    return v;
  }
  if (a.kind !== 'registers') return { problem: `expected registers for the relay state, got ${a.kind}` };
  return (a.words[offset]! & s.mask) >>> s.shift;
}

function decodeRelay(s: RelayStateField, a: ParsedResponse, offset: number): RelayState | { problem: string } {
  const v = relayFieldValue(s, a, offset);
  if (typeof v !== 'number') return v;
  for (const [state, enc] of Object.entries(s.encodings)) if (enc.includes(v)) return state as RelayState;
  const raw = a.kind === 'registers' ? ` (register ${s.address} reads 0x${a.words[offset]!.toString(16).padStart(4, '0')}, mask 0x${s.mask.toString(16)}, shift ${s.shift})` : ` (${s.count} input(s) from ${s.address})`;
  return { problem: `relay state value ${v}${raw} is none of the profile's encodings ${JSON.stringify(s.encodings)}` };
}

/** The value a device shows in its relay state field for `state` (the first encoding; open for an unknown armed). */
export function relayFieldFor(s: RelayStateField, state: RelayState): number {
  return (s.encodings[state] ?? s.encodings.disconnected)![0]!;
}

/** The write that sets (W) or removes (null) the demand limit, or why it cannot be written. */
export function loadLimitPdu(map: ModbusRegisterMap, limitW: number | null): Buffer | { problem: string } {
  const l = map.loadLimit;
  if (!l) return { problem: 'the profile has no load limiter (modbus.loadLimit)' };
  const noLimit = encodeRaw(l.noLimit, l);
  let words = noLimit;
  if (limitW !== null) {
    if (!Number.isFinite(limitW) || limitW <= 0) return { problem: `limit ${limitW} W is not a positive number of watts` };
    words = encodeNumber(limitW, l);
    const back = decodeNumber(words, l);
    if (Math.abs(back - limitW) > l.scale) return { problem: `limit ${limitW} W is outside what the ${l.type} register at ${l.address} holds` };
    if (words.every((w, i) => w === noLimit[i])) return { problem: `limit ${limitW} W would read as "no limit" on this device` };
  }
  return l.writeFunction === 6 ? writeSingleRegisterRequest(l.address, words[0]!) : writeMultipleRegistersRequest(l.address, words);
}

/** The read of the status bit that tells a refused close, where the profile has one. */
export function closeRefusalRead(map: ModbusRegisterMap): PlannedRead | undefined {
  const b = map.closeRefusal?.statusBit;
  if (!b) return undefined;
  return { table: b.table, address: b.address, quantity: 1, pdu: readRequest(READ_FUNCTION[b.table], b.address, 1) };
}
