/**
 * HDLC addresses (IEC 62056-46 §6.4.2.2 / §6.5). Every address byte carries 7 address bits above an
 * extension bit: 0 = another address byte follows, 1 = this is the last one. The client address is one
 * byte (its SAP). The server address is 1, 2 or 4 bytes: the upper HDLC address (logical device) then the
 * lower HDLC address (physical device on the bus), each in 1 or 2 bytes.
 */

const EXTENSION_LAST = 0x01;
const SEVEN_BITS = 0x7f;
/** Largest upper or lower address that fits one byte; above it the 4-byte form is needed. */
const ONE_BYTE_MAX = 0x7f;
/** Largest upper or lower address of the 4-byte form (14 bits). */
const TWO_BYTE_MAX = 0x3fff;

export interface ServerAddress {
  /** Upper HDLC address: the logical device (1 = management logical device). */
  upper: number;
  /** Lower HDLC address: the physical device on the bus; undefined in the 1-byte form. */
  lower?: number;
}

/** The client address byte for a client SAP (e.g. 0x10 public client → 0x21, 0x01 management → 0x03). */
export function encodeClientAddress(sap: number): Uint8Array {
  if (!Number.isInteger(sap) || sap < 0 || sap > ONE_BYTE_MAX) throw new RangeError(`client SAP ${sap} out of range 0..127`);
  return Uint8Array.of((sap << 1) | EXTENSION_LAST);
}

function sevenBitGroups(value: number, groups: 1 | 2): number[] {
  return groups === 1 ? [value & SEVEN_BITS] : [(value >> 7) & SEVEN_BITS, value & SEVEN_BITS];
}

/** Encode a server address in the shortest of the 1, 2 or 4-byte forms that holds it. */
export function encodeServerAddress(a: ServerAddress): Uint8Array {
  const parts: number[] = [];
  if (a.lower === undefined) {
    if (a.upper > ONE_BYTE_MAX) throw new RangeError(`upper HDLC address ${a.upper} needs a lower address too`);
    parts.push(a.upper);
  } else {
    for (const v of [a.upper, a.lower]) if (!Number.isInteger(v) || v < 0 || v > TWO_BYTE_MAX) throw new RangeError(`HDLC address ${v} out of range 0..16383`);
    const groups = a.upper > ONE_BYTE_MAX || a.lower > ONE_BYTE_MAX ? 2 : 1;
    parts.push(...sevenBitGroups(a.upper, groups), ...sevenBitGroups(a.lower, groups));
  }
  return Uint8Array.from(parts.map((p, i) => (p << 1) | (i === parts.length - 1 ? EXTENSION_LAST : 0)));
}

/** Read one address field at `offset`: its 7-bit groups and its length in bytes; undefined if it never ends within 4 bytes. */
export function readAddressField(bytes: Uint8Array, offset: number): { groups: number[]; length: number } | undefined {
  const groups: number[] = [];
  for (let i = offset; i < bytes.length && groups.length < 4; i++) {
    groups.push(bytes[i]! >> 1);
    if (bytes[i]! & EXTENSION_LAST) return groups.length === 3 ? undefined : { groups, length: groups.length };
  }
  return undefined;
}

/** A server address from the 7-bit groups of its field (1, 2 or 4 of them). */
export function serverAddressFromGroups(groups: readonly number[]): ServerAddress {
  const [a = 0, b = 0, c = 0, d = 0] = groups;
  if (groups.length === 1) return { upper: a };
  if (groups.length === 2) return { upper: a, lower: b };
  return { upper: (a << 7) | b, lower: (c << 7) | d };
}

export function sameServerAddress(x: ServerAddress, y: ServerAddress): boolean {
  return x.upper === y.upper && x.lower === y.lower;
}

export function formatServerAddress(a: ServerAddress): string {
  return a.lower === undefined ? `${a.upper}` : `${a.upper}/${a.lower}`;
}

/**
 * The meter's HDLC server address from `MeterAddress.address`: "17" is the lower (physical) address with the
 * profile's logical device as the upper; "1/17" gives both. Throws a message naming the expected form.
 */
export function parseServerAddress(text: string | null, defaultUpper: number): ServerAddress {
  const m = /^\s*(?:(\d{1,5})\s*\/\s*)?(\d{1,5})\s*$/.exec(text ?? '');
  if (!m) throw new RangeError(`DLMS meter address "${text ?? ''}" is not an HDLC server address: expected the physical address ("17") or "upper/lower" ("1/17")`);
  const upper = m[1] === undefined ? defaultUpper : Number(m[1]);
  const lower = Number(m[2]);
  if (upper > TWO_BYTE_MAX || lower > TWO_BYTE_MAX) throw new RangeError(`DLMS meter address "${text}": HDLC addresses are 0..16383`);
  return { upper, lower };
}
