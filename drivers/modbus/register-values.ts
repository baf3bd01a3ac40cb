import { pointWidth, type ModbusNumericPoint } from '../../src/domain/profiles/modbus-profile.js';

/**
 * Numbers in registers: each register is a 16-bit word, big-endian on the wire (MB AP §4.2) unless the device
 * swaps its bytes (`byteOrder: 'swapped'`); a wider value spans 2 or 4 registers in the order `wordOrder` names;
 * the engineering value is raw × `scale` + `offset`. The four orders data sheets write as letters, for a 32-bit
 * value whose bytes are A (most significant) … D:
 *   ABCD = highFirst + bigEndian, CDAB = lowFirst + bigEndian, BADC = highFirst + swapped, DCBA = lowFirst + swapped.
 * 64-bit integers are decoded with BigInt so nothing is lost on the way; a scaled value a JavaScript number cannot
 * hold exactly (beyond ±2^53) is refused with `UnsafeValueError`, never rounded silently.
 * The driver decodes with it, the simulators encode with it, so both read the profile the same way.
 */

export type NumericEncoding = Pick<ModbusNumericPoint, 'type' | 'wordOrder' | 'scale'> & Partial<Pick<ModbusNumericPoint, 'byteOrder' | 'offset'>>;

/** A decoded value that does not fit a JavaScript number exactly. */
export class UnsafeValueError extends RangeError {}

/** Words in register order → the value's bytes, most significant first. */
function toBigEndian(words: readonly number[], enc: NumericEncoding): Buffer {
  const ordered = enc.wordOrder === 'lowFirst' ? [...words].reverse() : words;
  const buf = Buffer.alloc(ordered.length * 2);
  ordered.forEach((w, i) => buf.writeUInt16BE(w, i * 2));
  if (enc.byteOrder === 'swapped') buf.swap16();
  return buf;
}

/** The value's bytes, most significant first → words in register order (the inverse of `toBigEndian`). */
function fromBigEndian(buf: Buffer, enc: NumericEncoding): number[] {
  const b = Buffer.from(buf);
  if (enc.byteOrder === 'swapped') b.swap16();
  const words = Array.from({ length: b.length / 2 }, (_, i) => b.readUInt16BE(i * 2));
  return enc.wordOrder === 'lowFirst' ? words.reverse() : words;
}

/** The raw value before scaling: a number, or a bigint for 64-bit integers. */
export function decodeRaw(words: readonly number[], enc: NumericEncoding): number | bigint {
  const width = pointWidth(enc);
  if (words.length !== width) throw new RangeError(`${enc.type} needs ${width} register(s), got ${words.length}`);
  const buf = toBigEndian(words, enc);
  switch (enc.type) {
    case 'uint16':
      return buf.readUInt16BE(0);
    case 'int16':
      return buf.readInt16BE(0);
    case 'uint32':
      return buf.readUInt32BE(0);
    case 'int32':
      return buf.readInt32BE(0);
    case 'float32':
      return Number(buf.readFloatBE(0).toPrecision(7)); // float32 carries about 7 significant digits
    case 'uint64':
      return buf.readBigUInt64BE(0);
    case 'int64':
      return buf.readBigInt64BE(0);
    case 'float64':
      return buf.readDoubleBE(0);
  }
}

/** Words in register order → engineering value. Throws `UnsafeValueError` for a value beyond ±2^53 after scaling. */
export function decodeNumber(words: readonly number[], enc: NumericEncoding): number {
  const raw = decodeRaw(words, enc);
  const offset = enc.offset ?? 0;
  if (typeof raw === 'bigint') return scaleBig(raw, enc.scale, offset, enc.type);
  return roundScaled(raw * enc.scale + offset, enc.scale);
}

/**
 * raw × scale + offset computed exactly: the scale as a decimal fraction n / 10^d, the integer part in BigInt.
 * Only the final value must fit a double exactly.
 */
function scaleBig(raw: bigint, scale: number, offset: number, type: string): number {
  const [n, d] = decimalFraction(scale);
  const scaled = raw * n;
  const div = 10n ** BigInt(d);
  const whole = scaled / div;
  const frac = Number(scaled % div) / Number(div);
  const limit = BigInt(Number.MAX_SAFE_INTEGER);
  if (whole > limit || whole < -limit) {
    throw new UnsafeValueError(`${type} value ${raw} × ${scale} is beyond ±2^53 and cannot be reported exactly; give the point a scale that fits (e.g. kWh instead of Wh)`);
  }
  return roundScaled(Number(whole) + frac + offset, scale);
}

/** A positive finite number as n / 10^d with n a bigint (0.001 → [1n, 3]). */
function decimalFraction(x: number): [bigint, number] {
  const [mantissa, exp] = x.toExponential().split('e') as [string, string];
  const [int, dec = ''] = mantissa.split('.') as [string, string?];
  const digits = BigInt(int + dec);
  const shift = dec.length - Number(exp);
  return shift >= 0 ? [digits, shift] : [digits * 10n ** BigInt(-shift), 0];
}

/** Engineering value → words in register order (rounded to the register's resolution, clamped to its range). */
export function encodeNumber(value: number, enc: NumericEncoding): number[] {
  const raw = (value - (enc.offset ?? 0)) / enc.scale;
  return encodeRaw(enc.type.startsWith('float') ? raw : Math.round(raw), enc);
}

/** A raw value (before scaling) → words in register order, clamped to the type's range. */
export function encodeRaw(raw: number | bigint, enc: NumericEncoding): number[] {
  const buf = Buffer.alloc(pointWidth(enc) * 2);
  const n = Number(raw);
  switch (enc.type) {
    case 'uint16':
      buf.writeUInt16BE(clamp(n, 0, 0xffff), 0);
      break;
    case 'int16':
      buf.writeInt16BE(clamp(n, -0x8000, 0x7fff), 0);
      break;
    case 'uint32':
      buf.writeUInt32BE(clamp(n, 0, 0xffffffff), 0);
      break;
    case 'int32':
      buf.writeInt32BE(clamp(n, -0x80000000, 0x7fffffff), 0);
      break;
    case 'float32':
      buf.writeFloatBE(n, 0);
      break;
    case 'uint64':
      buf.writeBigUInt64BE(clampBig(BigInt(raw), 0n, 2n ** 64n - 1n), 0);
      break;
    case 'int64':
      buf.writeBigInt64BE(clampBig(BigInt(raw), -(2n ** 63n), 2n ** 63n - 1n), 0);
      break;
    case 'float64':
      buf.writeDoubleBE(n, 0);
      break;
  }
  return fromBigEndian(buf, enc);
}

const clamp = (n: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, n));
const clampBig = (n: bigint, lo: bigint, hi: bigint): bigint => (n < lo ? lo : n > hi ? hi : n);

/** Strip float noise from scaling (230.1 × 0.1 must print as 23.01, not 23.010000000000002). */
function roundScaled(v: number, scale: number): number {
  if (!Number.isFinite(v)) return v;
  const decimals = Math.min(10, Math.max(0, -Math.floor(Math.log10(scale)) + 6));
  return Number(v.toFixed(decimals));
}
