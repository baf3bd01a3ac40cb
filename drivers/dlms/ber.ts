/**
 * The little BER (ISO/IEC 8825-1) the ACSE APDUs of IEC 62056-5-3 need: tag, definite length (short form
 * below 0x80, else 0x81/0x82 long form), contents. AARQ/AARE/RLRQ/RLRE are BER; xDLMS APDUs are A-XDR.
 */

export interface Tlv {
  tag: number;
  value: Uint8Array;
}

export class BerError extends Error {
  override readonly name = 'BerError';
}

export function berLength(n: number): number[] {
  if (n < 0x80) return [n];
  if (n <= 0xff) return [0x81, n];
  return [0x82, n >> 8, n & 0xff];
}

export function tlv(tag: number, value: ArrayLike<number>): number[] {
  return [tag, ...berLength(value.length), ...Array.from(value)];
}

/** Split `bytes` into consecutive TLVs (one nesting level). */
export function readTlvs(bytes: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  let i = 0;
  while (i < bytes.length) {
    const tag = bytes[i]!;
    let len = bytes[i + 1];
    if (len === undefined) throw new BerError(`length missing after tag 0x${tag.toString(16)}`);
    let p = i + 2;
    if (len >= 0x80) {
      const n = len & 0x7f;
      if (n < 1 || n > 2 || p + n > bytes.length) throw new BerError(`bad long-form length at byte ${i + 1}`);
      len = n === 1 ? bytes[p]! : (bytes[p]! << 8) | bytes[p + 1]!;
      p += n;
    }
    if (p + len > bytes.length) throw new BerError(`tag 0x${tag.toString(16)} claims ${len} bytes, ${bytes.length - p} left`);
    out.push({ tag, value: bytes.slice(p, p + len) });
    i = p + len;
  }
  return out;
}

/** The single TLV that fills `bytes` and has `tag`. */
export function readOne(bytes: Uint8Array, tag: number, what: string): Uint8Array {
  const all = readTlvs(bytes);
  if (all.length !== 1 || all[0]!.tag !== tag) throw new BerError(`${what}: expected tag 0x${tag.toString(16)}`);
  return all[0]!.value;
}

/** A small non-negative BER INTEGER. */
export function readSmallInteger(bytes: Uint8Array, what: string): number {
  const v = readOne(bytes, 0x02, what);
  if (v.length < 1 || v.length > 2) throw new BerError(`${what}: integer of ${v.length} bytes`);
  return v.length === 1 ? v[0]! : (v[0]! << 8) | v[1]!;
}
