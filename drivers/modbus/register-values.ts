import { pointWidth, type ModbusNumericPoint } from '../../src/domain/profiles/modbus-profile.js';

/**
 * Numbers in registers: each register is a big-endian 16-bit word (MB AP §4.2); a 32-bit value spans two
 * registers in the order the profile's `wordOrder` names; the engineering value is raw × `scale`.
 * The driver decodes with it, the simulators encode with it, so both read the profile the same way.
 */

export type NumericEncoding = Pick<ModbusNumericPoint, 'type' | 'wordOrder' | 'scale'>;

/** Words in register order → engineering value. */
export function decodeNumber(words: readonly number[], enc: NumericEncoding): number {
  const width = pointWidth(enc);
  if (words.length !== width) throw new RangeError(`${enc.type} needs ${width} register(s), got ${words.length}`);
  const buf = Buffer.alloc(4);
  if (width === 1) buf.writeUInt16BE(words[0]!, 0);
  else {
    const [first, second] = words as [number, number];
    const [high, low] = enc.wordOrder === 'lowFirst' ? [second, first] : [first, second];
    buf.writeUInt16BE(high, 0);
    buf.writeUInt16BE(low, 2);
  }
  let raw: number;
  switch (enc.type) {
    case 'uint16':
      raw = buf.readUInt16BE(0);
      break;
    case 'int16':
      raw = buf.readInt16BE(0);
      break;
    case 'uint32':
      raw = buf.readUInt32BE(0);
      break;
    case 'int32':
      raw = buf.readInt32BE(0);
      break;
    case 'float32':
      raw = Number(buf.readFloatBE(0).toPrecision(7)); // float32 carries about 7 significant digits
      break;
  }
  return roundScaled(raw * enc.scale, enc.scale);
}

/** Engineering value → words in register order (rounded to the register's resolution, clamped to its range). */
export function encodeNumber(value: number, enc: NumericEncoding): number[] {
  const raw = value / enc.scale;
  const buf = Buffer.alloc(4);
  switch (enc.type) {
    case 'uint16':
      buf.writeUInt16BE(clamp(Math.round(raw), 0, 0xffff), 0);
      return [buf.readUInt16BE(0)];
    case 'int16':
      buf.writeInt16BE(clamp(Math.round(raw), -0x8000, 0x7fff), 0);
      return [buf.readUInt16BE(0)];
    case 'uint32':
      buf.writeUInt32BE(clamp(Math.round(raw), 0, 0xffffffff), 0);
      break;
    case 'int32':
      buf.writeInt32BE(clamp(Math.round(raw), -0x80000000, 0x7fffffff), 0);
      break;
    case 'float32':
      buf.writeFloatBE(raw, 0);
      break;
  }
  const high = buf.readUInt16BE(0);
  const low = buf.readUInt16BE(2);
  return enc.wordOrder === 'lowFirst' ? [low, high] : [high, low];
}

const clamp = (n: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, n));

/** Strip float noise from scaling (230.1 × 0.1 must print as 23.01, not 23.010000000000002). */
function roundScaled(v: number, scale: number): number {
  if (!Number.isFinite(v)) return v;
  const decimals = Math.min(10, Math.max(0, -Math.floor(Math.log10(scale)) + 6));
  return Number(v.toFixed(decimals));
}
