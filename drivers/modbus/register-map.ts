import type { FirmwareProfile } from '../../src/domain/firmware-profile.js';
import { pointWidth, type ModbusNumericPoint, type ModbusRegisterMap, type ModbusRegisterTable } from '../../src/domain/profiles/modbus-profile.js';
import type { RelayState, SwitchAction } from '../../src/domain/relay.js';
import { COIL_OFF, COIL_ON, FunctionCode, MAX_READ_REGISTERS } from './modbus-codes.js';
import { readRequest, writeSingleCoilRequest, writeSingleRegisterRequest, type ParsedResponse, type ReadFunction } from './modbus-pdu.js';
import { decodeNumber } from './register-values.js';

/**
 * A firmware profile's register map turned into requests and back: the PDU that commands the relay, what
 * its echo claims, the reads that make up one relay reading (relay state first, neighbouring registers of
 * the same table merged into one request) and how their answers decode.
 */

export const READ_FUNCTION: Readonly<Record<ModbusRegisterTable, ReadFunction>> = {
  coil: FunctionCode.READ_COILS,
  discreteInput: FunctionCode.READ_DISCRETE_INPUTS,
  holdingRegister: FunctionCode.READ_HOLDING_REGISTERS,
  inputRegister: FunctionCode.READ_INPUT_REGISTERS,
};

type RemoteReconnect = FirmwareProfile['relay']['remoteReconnect'];

/** One read request of a reading plan. */
export interface PlannedRead {
  table: ModbusRegisterTable;
  address: number;
  quantity: number;
  pdu: Buffer;
}

type Field = 'relay' | 'voltageV' | 'energyWh';
interface FieldSpan {
  field: Field;
  table: ModbusRegisterTable;
  address: number;
  width: number;
}

export interface ReadingPlan {
  /** In order; the first one holds the relay state. */
  reads: PlannedRead[];
  decode(answers: readonly ParsedResponse[]): { relay: RelayState; voltageV?: number; energyWh?: number } | { problem: string };
}

/** Check what the schema cannot see: an 'arms' profile must be able to read "armed". Returns the problem or null. */
export function registerMapProblem(map: ModbusRegisterMap, remoteReconnect: RemoteReconnect): string | null {
  const s = map.relayState;
  if (remoteReconnect === 'arms' && (s.kind === 'coil' || s.kind === 'discreteInput' || s.values.armed === undefined)) {
    return 'remote reconnect "arms" needs a relay state register with an "armed" value';
  }
  return null;
}

/** The PDU that asks for `action`. */
export function relayCommandPdu(map: ModbusRegisterMap, action: SwitchAction): Buffer {
  const c = map.relayCommand;
  if (c.kind === 'coil') {
    const close = action === 'reconnect';
    return writeSingleCoilRequest(c.address, c.closedWhen === 'on' ? close : !close);
  }
  return writeSingleRegisterRequest(c.address, c.values[action]);
}

/**
 * What a write echo claims. A conforming device echoes the value written (MB AP §6.5/§6.6); a device that
 * echoes another value (firmware reporting a relay that did not move) claims that value's state instead.
 * Either way only the read-back decides.
 */
export function claimFromEcho(map: ModbusRegisterMap, remoteReconnect: RemoteReconnect, value: number): RelayState | undefined {
  const c = map.relayCommand;
  let action: SwitchAction | undefined;
  if (c.kind === 'coil') {
    if (value !== COIL_ON && value !== COIL_OFF) return undefined;
    const closed = (value === COIL_ON) === (c.closedWhen === 'on');
    action = closed ? 'reconnect' : 'disconnect';
  } else if (value === c.values.reconnect) action = 'reconnect';
  else if (value === c.values.disconnect) action = 'disconnect';
  if (action === undefined) return undefined;
  if (action === 'disconnect') return 'disconnected';
  return remoteReconnect === 'arms' ? 'armed' : 'connected';
}

/** The value a device echoes to claim a relay state (used by the simulators). */
export function echoValueFor(map: ModbusRegisterMap, claimed: RelayState): number {
  const c = map.relayCommand;
  const closed = claimed !== 'disconnected';
  if (c.kind === 'coil') return closed === (c.closedWhen === 'on') ? COIL_ON : COIL_OFF;
  return closed ? c.values.reconnect : c.values.disconnect;
}

/** Reads for one relay reading: the relay state, then voltage and energy, merging neighbours of one table. */
export function readingPlan(map: ModbusRegisterMap): ReadingPlan {
  const s = map.relayState;
  const spans: FieldSpan[] = [{ field: 'relay', table: s.kind, address: s.address, width: 1 }];
  const numeric: Array<[Field, ModbusNumericPoint | undefined]> = [
    ['voltageV', map.voltageV],
    ['energyWh', map.energyWh],
  ];
  for (const [field, p] of numeric) if (p) spans.push({ field, table: p.table, address: p.address, width: pointWidth(p) });

  const groups: FieldSpan[][] = [];
  for (const span of spans) {
    const bits = span.table === 'coil' || span.table === 'discreteInput';
    const group = groups.find((g) => {
      if (g[0]!.table !== span.table) return false;
      const lo = Math.min(...g.map((x) => x.address), span.address);
      const hi = Math.max(...g.map((x) => x.address + x.width), span.address + span.width);
      const used = g.reduce((n, x) => n + x.width, span.width);
      return hi - lo <= (bits ? 2000 : MAX_READ_REGISTERS) && hi - lo - used <= map.mergeGap;
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
      const out: { relay?: RelayState; voltageV?: number; energyWh?: number } = {};
      for (const [i, r] of reads.entries()) {
        const a = answers[i];
        if (!a) return { problem: `no answer for read ${i + 1} of ${reads.length}` };
        for (const span of r.spans) {
          const offset = span.address - r.address;
          if (span.field === 'relay') {
            const relay = decodeRelay(map, a, offset);
            if (typeof relay !== 'string') return relay;
            out.relay = relay;
          } else {
            if (a.kind !== 'registers') return { problem: `expected registers for ${span.field}, got ${a.kind}` };
            out[span.field] = decodeNumber(a.words.slice(offset, offset + span.width), (span.field === 'voltageV' ? map.voltageV : map.energyWh)!);
          }
        }
      }
      if (out.relay === undefined) return { problem: 'relay state missing' };
      return out as { relay: RelayState; voltageV?: number; energyWh?: number };
    },
  };
}

function decodeRelay(map: ModbusRegisterMap, a: ParsedResponse, offset: number): RelayState | { problem: string } {
  const s = map.relayState;
  if (s.kind === 'coil' || s.kind === 'discreteInput') {
    if (a.kind !== 'bits') return { problem: `expected bits for the relay state, got ${a.kind}` };
    const on = a.bits[offset]!;
    return on === (s.closedWhen === 'on') ? 'connected' : 'disconnected';
  }
  if (a.kind !== 'registers') return { problem: `expected registers for the relay state, got ${a.kind}` };
  const word = a.words[offset]!;
  if (word === s.values.connected) return 'connected';
  if (word === s.values.disconnected) return 'disconnected';
  if (s.values.armed !== undefined && word === s.values.armed) return 'armed';
  return { problem: `relay state value ${word} is none of the profile's values (${JSON.stringify(s.values)})` };
}
