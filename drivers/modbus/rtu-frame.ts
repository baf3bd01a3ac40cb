import { EXCEPTION_FLAG, FunctionCode } from './modbus-codes.js';

/**
 * Modbus RTU framing (Modbus over Serial Line V1.02 §2.5.1): `unit id | PDU | CRC-16 (low byte first)`.
 * A real line delimits frames by silence (t3.5); through USB adapters and pseudo-terminals that timing is
 * not observable, so both ends here delimit a frame by its length, which the function code (and byte count)
 * determine, and fall back on silence only for bytes that fit no frame (noise). Shared by the driver and the
 * RTU simulator; nothing else depends on it.
 *
 * @example
 * encodeRtuFrame(0x01, Buffer.from([0x01, 0x00, 0x13, 0x00, 0x25])) // → 01 01 00 13 00 25 0e 84
 */

/** Longest RTU frame: 256 bytes (Serial Line §2.5.1.1). */
export const MAX_RTU_FRAME = 256;
/** Unit id + function code + CRC: the shortest possible frame. */
export const MIN_RTU_FRAME = 4;

const CRC_TABLE = (() => {
  // Reflected polynomial 0xA001 (x^16 + x^15 + x^2 + 1), Serial Line §6.2.2.
  const t = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** CRC-16/MODBUS over `bytes[start, end)`: initial value 0xFFFF (Serial Line §6.2.2). */
export function crc16(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = 0xffff;
  for (let i = start; i < end; i++) crc = (crc >>> 8) ^ CRC_TABLE[(crc ^ bytes[i]!) & 0xff]!;
  return crc;
}

/** Build an RTU frame; the CRC goes low byte first (Serial Line §2.5.1.2). */
export function encodeRtuFrame(unitId: number, pdu: Uint8Array): Buffer {
  if (pdu.length + MIN_RTU_FRAME - 1 > MAX_RTU_FRAME) throw new RangeError(`PDU of ${pdu.length} bytes does not fit an RTU frame`);
  const frame = Buffer.alloc(pdu.length + 3);
  frame[0] = unitId;
  frame.set(pdu, 1);
  const crc = crc16(frame, 0, pdu.length + 1);
  frame[pdu.length + 1] = crc & 0xff;
  frame[pdu.length + 2] = crc >>> 8;
  return frame;
}

export type RtuFrameCheck = { ok: true; unitId: number; pdu: Buffer } | { ok: false; reason: 'short' | 'crc' };

/** Split a complete frame into unit id and PDU, verifying its CRC. */
export function decodeRtuFrame(frame: Uint8Array): RtuFrameCheck {
  if (frame.length < MIN_RTU_FRAME) return { ok: false, reason: 'short' };
  const n = frame.length;
  const got = frame[n - 2]! | (frame[n - 1]! << 8);
  if (crc16(frame, 0, n - 2) !== got) return { ok: false, reason: 'crc' };
  return { ok: true, unitId: frame[0]!, pdu: Buffer.from(frame.subarray(1, n - 2)) };
}

/**
 * Length of the response frame that starts `bytes`, answering a request with function code `requestFc`:
 * a number once it is known, `null` while more bytes are needed to tell, `'mismatch'` when the bytes cannot
 * be a response to that request (another function code: noise or a stray answer).
 */
export function responseFrameLength(bytes: Uint8Array, requestFc: number): number | null | 'mismatch' {
  if (bytes.length < 2) return null;
  const fc = bytes[1]!;
  if (fc === (requestFc | EXCEPTION_FLAG)) return 5; // unit, fc|0x80, exception code, CRC (MB AP §7)
  if (fc !== requestFc) return 'mismatch';
  switch (fc) {
    case FunctionCode.READ_COILS:
    case FunctionCode.READ_DISCRETE_INPUTS:
    case FunctionCode.READ_HOLDING_REGISTERS:
    case FunctionCode.READ_INPUT_REGISTERS:
      // unit, fc, byte count, data, CRC (MB AP §6.1–§6.4)
      return bytes.length < 3 ? null : 5 + bytes[2]!;
    case FunctionCode.WRITE_SINGLE_COIL:
    case FunctionCode.WRITE_SINGLE_REGISTER:
    case FunctionCode.WRITE_MULTIPLE_COILS:
    case FunctionCode.WRITE_MULTIPLE_REGISTERS:
      return 8; // unit, fc, address, value or quantity, CRC (MB AP §6.5, §6.6, §6.11, §6.12)
    default:
      return 'mismatch';
  }
}

/**
 * Length of the request frame that starts `bytes` (the server side): a number once known, `null` while
 * more bytes are needed, `'unknown'` for a function code this framing cannot size (the server then finds the
 * frame's end by t3.5 of silence, Serial Line §2.5.1.1, and answers it as a whole: exception 01 for a function it
 * does not implement).
 */
export function requestFrameLength(bytes: Uint8Array): number | null | 'unknown' {
  if (bytes.length < 2) return null;
  switch (bytes[1]!) {
    case FunctionCode.READ_COILS:
    case FunctionCode.READ_DISCRETE_INPUTS:
    case FunctionCode.READ_HOLDING_REGISTERS:
    case FunctionCode.READ_INPUT_REGISTERS:
    case FunctionCode.WRITE_SINGLE_COIL:
    case FunctionCode.WRITE_SINGLE_REGISTER:
      return 8; // unit, fc, address (2), quantity or value (2), CRC (2)
    case FunctionCode.WRITE_MULTIPLE_COILS: // §6.11
    case FunctionCode.WRITE_MULTIPLE_REGISTERS: // §6.12
      return bytes.length < 7 ? null : 9 + bytes[6]!; // unit, fc, address, quantity, byte count, values, CRC
    default:
      return 'unknown';
  }
}

/**
 * Bits one character takes on the line: start bit, data bits, parity bit if any, stop bits
 * (Serial Line §2.5.1: 11 bits in RTU mode when parity is used or two stop bits replace it).
 */
export function bitsPerCharacter(line: { dataBits: number; parity: 'none' | 'even' | 'odd'; stopBits: number }): number {
  return 1 + line.dataBits + (line.parity === 'none' ? 0 : 1) + line.stopBits;
}

/**
 * The inter-frame silence t3.5 in ms (Serial Line §2.5.1.1): 3.5 character times, but at least 1.750 ms
 * above 19,200 baud, where the spec fixes it so that slaves need not time such short gaps.
 */
export function interFrameSilenceMs(baudRate: number, bitsPerChar: number): number {
  if (baudRate > 19_200) return 1.75;
  return (3.5 * bitsPerChar * 1000) / baudRate;
}

export const toHex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
