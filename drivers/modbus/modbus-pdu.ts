import { COIL_OFF, COIL_ON, EXCEPTION_FLAG, FunctionCode } from './modbus-codes.js';

/**
 * Protocol data units (MB AP §4.1: function code + data), independent of the transport (RTU frame or MBAP).
 * Builders for the requests the driver sends, and one parser that checks a response against its request.
 * All multi-byte fields are big-endian (MB AP §4.2).
 */

export type ReadFunction =
  | typeof FunctionCode.READ_COILS
  | typeof FunctionCode.READ_DISCRETE_INPUTS
  | typeof FunctionCode.READ_HOLDING_REGISTERS
  | typeof FunctionCode.READ_INPUT_REGISTERS;

/** Read request: function code, starting address, quantity (MB AP §6.1–§6.4). */
export function readRequest(fc: ReadFunction, address: number, quantity: number): Buffer {
  const pdu = Buffer.alloc(5);
  pdu[0] = fc;
  pdu.writeUInt16BE(address, 1);
  pdu.writeUInt16BE(quantity, 3);
  return pdu;
}

/** Write Single Coil (MB AP §6.5): 0xFF00 for ON, 0x0000 for OFF. */
export function writeSingleCoilRequest(address: number, on: boolean): Buffer {
  const pdu = Buffer.alloc(5);
  pdu[0] = FunctionCode.WRITE_SINGLE_COIL;
  pdu.writeUInt16BE(address, 1);
  pdu.writeUInt16BE(on ? COIL_ON : COIL_OFF, 3);
  return pdu;
}

/** Write Single Register (MB AP §6.6). */
export function writeSingleRegisterRequest(address: number, value: number): Buffer {
  const pdu = Buffer.alloc(5);
  pdu[0] = FunctionCode.WRITE_SINGLE_REGISTER;
  pdu.writeUInt16BE(address, 1);
  pdu.writeUInt16BE(value, 3);
  return pdu;
}

/** Write Multiple Registers (MB AP §6.12). */
export function writeMultipleRegistersRequest(address: number, values: readonly number[]): Buffer {
  const pdu = Buffer.alloc(6 + values.length * 2);
  pdu[0] = FunctionCode.WRITE_MULTIPLE_REGISTERS;
  pdu.writeUInt16BE(address, 1);
  pdu.writeUInt16BE(values.length, 3);
  pdu[5] = values.length * 2;
  values.forEach((v, i) => pdu.writeUInt16BE(v, 6 + i * 2));
  return pdu;
}

/** Write Multiple Coils (MB AP §6.11): the coils packed LSB first, the first coil in bit 0 of the first byte. */
export function writeMultipleCoilsRequest(address: number, bits: readonly boolean[]): Buffer {
  const count = Math.ceil(bits.length / 8);
  const pdu = Buffer.alloc(6 + count);
  pdu[0] = FunctionCode.WRITE_MULTIPLE_COILS;
  pdu.writeUInt16BE(address, 1);
  pdu.writeUInt16BE(bits.length, 3);
  pdu[5] = count;
  bits.forEach((on, i) => {
    if (on) pdu[6 + (i >> 3)]! |= 1 << (i & 7);
  });
  return pdu;
}

/** The coils an FC15 request writes, in address order (MB AP §6.11). */
export function coilsOfRequest(pdu: Buffer): boolean[] {
  const quantity = pdu.readUInt16BE(3);
  return Array.from({ length: quantity }, (_, i) => ((pdu[6 + (i >> 3)]! >> (i & 7)) & 1) === 1);
}

/** The registers an FC16 request writes, in address order (MB AP §6.12). */
export function registersOfRequest(pdu: Buffer): number[] {
  return Array.from({ length: pdu.readUInt16BE(3) }, (_, i) => pdu.readUInt16BE(6 + i * 2));
}

export type ParsedResponse =
  | { kind: 'exception'; code: number }
  | { kind: 'bits'; bits: boolean[] }
  | { kind: 'registers'; words: number[] }
  /** Write responses echo the address and the value (FC05, FC06) or the quantity (FC15, FC16) (MB AP §6.5, §6.6, §6.11, §6.12). */
  | { kind: 'echo'; address: number; value: number }
  | { kind: 'malformed'; reason: string };

/** Check a response PDU against the request PDU it answers. */
export function parseResponse(request: Uint8Array, response: Uint8Array): ParsedResponse {
  const fc = request[0]!;
  if (response.length < 2) return { kind: 'malformed', reason: `response PDU of ${response.length} byte(s)` };
  const rfc = response[0]!;
  if (rfc === (fc | EXCEPTION_FLAG)) {
    return response.length === 2 ? { kind: 'exception', code: response[1]! } : { kind: 'malformed', reason: 'exception response of wrong length' };
  }
  if (rfc !== fc) return { kind: 'malformed', reason: `function code 0x${rfc.toString(16)} answers a 0x${fc.toString(16)} request` };
  const req = Buffer.from(request.buffer, request.byteOffset, request.byteLength);
  const res = Buffer.from(response.buffer, response.byteOffset, response.byteLength);
  switch (fc) {
    case FunctionCode.READ_COILS:
    case FunctionCode.READ_DISCRETE_INPUTS: {
      const quantity = req.readUInt16BE(3);
      const count = Math.ceil(quantity / 8);
      if (res[1] !== count || res.length !== 2 + count) return { kind: 'malformed', reason: `byte count ${res[1]} for ${quantity} bit(s)` };
      // Bits are packed LSB first, the first addressed bit in bit 0 of the first data byte (MB AP §6.1).
      const bits = Array.from({ length: quantity }, (_, i) => ((res[2 + (i >> 3)]! >> (i & 7)) & 1) === 1);
      return { kind: 'bits', bits };
    }
    case FunctionCode.READ_HOLDING_REGISTERS:
    case FunctionCode.READ_INPUT_REGISTERS: {
      const quantity = req.readUInt16BE(3);
      if (res[1] !== quantity * 2 || res.length !== 2 + quantity * 2) return { kind: 'malformed', reason: `byte count ${res[1]} for ${quantity} register(s)` };
      return { kind: 'registers', words: Array.from({ length: quantity }, (_, i) => res.readUInt16BE(2 + i * 2)) };
    }
    case FunctionCode.WRITE_SINGLE_COIL:
    case FunctionCode.WRITE_SINGLE_REGISTER:
    case FunctionCode.WRITE_MULTIPLE_COILS:
    case FunctionCode.WRITE_MULTIPLE_REGISTERS: {
      if (res.length !== 5) return { kind: 'malformed', reason: `write response of ${res.length} bytes` };
      const address = res.readUInt16BE(1);
      if (address !== req.readUInt16BE(1)) return { kind: 'malformed', reason: `write response names address ${address}, not ${req.readUInt16BE(1)}` };
      const value = res.readUInt16BE(3);
      // FC15/FC16 answer with the quantity written (§6.11, §6.12): another quantity is not this request's answer.
      if ((fc === FunctionCode.WRITE_MULTIPLE_COILS || fc === FunctionCode.WRITE_MULTIPLE_REGISTERS) && value !== req.readUInt16BE(3)) {
        return { kind: 'malformed', reason: `write response names quantity ${value}, not ${req.readUInt16BE(3)}` };
      }
      return { kind: 'echo', address, value };
    }
    default:
      return { kind: 'malformed', reason: `function code 0x${fc.toString(16)} is not used by this driver` };
  }
}
