/**
 * COSEM `Data` in A-XDR (IEC 62056-5-3 §… "Data" CHOICE, encoded per IEC 61334-6): a one-byte tag, then the
 * value. Fixed-size types carry no length; strings, arrays and structures carry an A-XDR length
 * (one byte below 0x80, else 0x80|n followed by n length bytes, big-endian). Integers are big-endian.
 */

export const DATA_TAG = {
  'null-data': 0,
  array: 1,
  structure: 2,
  boolean: 3,
  'bit-string': 4,
  'double-long': 5,
  'double-long-unsigned': 6,
  'octet-string': 9,
  'visible-string': 10,
  'utf8-string': 12,
  integer: 15,
  long: 16,
  unsigned: 17,
  'long-unsigned': 18,
  long64: 20,
  'long64-unsigned': 21,
  enum: 22,
  float32: 23,
  float64: 24,
} as const;

type IntType = 'integer' | 'long' | 'double-long' | 'unsigned' | 'long-unsigned' | 'double-long-unsigned' | 'enum';

/** Byte width and signedness of each fixed-size integer type. */
const INT_LAYOUT: Record<IntType, { width: 1 | 2 | 4; signed: boolean }> = {
  integer: { width: 1, signed: true },
  long: { width: 2, signed: true },
  'double-long': { width: 4, signed: true },
  unsigned: { width: 1, signed: false },
  'long-unsigned': { width: 2, signed: false },
  'double-long-unsigned': { width: 4, signed: false },
  enum: { width: 1, signed: false },
};

export type DlmsData =
  | { type: 'null-data' }
  | { type: 'array' | 'structure'; items: DlmsData[] }
  | { type: 'boolean'; value: boolean }
  | { type: 'bit-string'; bitLength: number; bytes: Uint8Array }
  | { type: IntType; value: number }
  | { type: 'long64' | 'long64-unsigned'; value: bigint }
  | { type: 'octet-string'; value: Uint8Array }
  | { type: 'visible-string' | 'utf8-string'; value: string }
  | { type: 'float32' | 'float64'; value: number };

export class AxdrError extends Error {
  override readonly name = 'AxdrError';
}

/** Convenience constructors, so call sites read like the standard's type names. */
export const data = {
  null: (): DlmsData => ({ type: 'null-data' }),
  boolean: (value: boolean): DlmsData => ({ type: 'boolean', value }),
  integer: (value: number): DlmsData => ({ type: 'integer', value }),
  long: (value: number): DlmsData => ({ type: 'long', value }),
  doubleLong: (value: number): DlmsData => ({ type: 'double-long', value }),
  unsigned: (value: number): DlmsData => ({ type: 'unsigned', value }),
  longUnsigned: (value: number): DlmsData => ({ type: 'long-unsigned', value }),
  doubleLongUnsigned: (value: number): DlmsData => ({ type: 'double-long-unsigned', value }),
  enum: (value: number): DlmsData => ({ type: 'enum', value }),
  octetString: (value: Uint8Array): DlmsData => ({ type: 'octet-string', value }),
  visibleString: (value: string): DlmsData => ({ type: 'visible-string', value }),
  structure: (...items: DlmsData[]): DlmsData => ({ type: 'structure', items }),
  array: (...items: DlmsData[]): DlmsData => ({ type: 'array', items }),
};

export function encodeLength(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

export function decodeLength(bytes: Uint8Array, offset: number): { value: number; next: number } {
  const first = bytes[offset];
  if (first === undefined) throw new AxdrError(`length expected at byte ${offset}`);
  if (first < 0x80) return { value: first, next: offset + 1 };
  const n = first & 0x7f;
  if (n === 0 || n > 4 || offset + 1 + n > bytes.length) throw new AxdrError(`bad length prefix 0x${first.toString(16)} at byte ${offset}`);
  let value = 0;
  for (let i = 1; i <= n; i++) value = value * 256 + bytes[offset + i]!;
  return { value, next: offset + 1 + n };
}

function intBytes(value: number, width: 1 | 2 | 4, signed: boolean, type: string): number[] {
  const min = signed ? -(2 ** (8 * width - 1)) : 0;
  const max = signed ? 2 ** (8 * width - 1) - 1 : 2 ** (8 * width) - 1;
  if (!Number.isInteger(value) || value < min || value > max) throw new AxdrError(`${value} does not fit ${type}`);
  const u = value < 0 ? value + 2 ** (8 * width) : value;
  const out: number[] = [];
  for (let i = width - 1; i >= 0; i--) out.push(Math.floor(u / 2 ** (8 * i)) & 0xff);
  return out;
}

function encodeInto(d: DlmsData, out: number[]): void {
  out.push(DATA_TAG[d.type]);
  switch (d.type) {
    case 'null-data':
      return;
    case 'array':
    case 'structure':
      out.push(...encodeLength(d.items.length));
      for (const item of d.items) encodeInto(item, out);
      return;
    case 'boolean':
      out.push(d.value ? 0xff : 0x00);
      return;
    case 'bit-string':
      out.push(...encodeLength(d.bitLength), ...d.bytes);
      return;
    case 'octet-string':
      out.push(...encodeLength(d.value.length), ...d.value);
      return;
    case 'visible-string':
    case 'utf8-string': {
      const bytes = d.type === 'visible-string' ? Buffer.from(d.value, 'latin1') : Buffer.from(d.value, 'utf8');
      out.push(...encodeLength(bytes.length), ...bytes);
      return;
    }
    case 'long64':
    case 'long64-unsigned': {
      const b = Buffer.alloc(8);
      if (d.type === 'long64') b.writeBigInt64BE(d.value);
      else b.writeBigUInt64BE(d.value);
      out.push(...b);
      return;
    }
    case 'float32':
    case 'float64': {
      const b = Buffer.alloc(d.type === 'float32' ? 4 : 8);
      if (d.type === 'float32') b.writeFloatBE(d.value);
      else b.writeDoubleBE(d.value);
      out.push(...b);
      return;
    }
    default: {
      const { width, signed } = INT_LAYOUT[d.type];
      out.push(...intBytes(d.value, width, signed, d.type));
    }
  }
}

export function encodeData(d: DlmsData): Uint8Array {
  const out: number[] = [];
  encodeInto(d, out);
  return Uint8Array.from(out);
}

const TYPE_BY_TAG = new Map<number, DlmsData['type']>(Object.entries(DATA_TAG).map(([k, v]) => [v, k as DlmsData['type']]));
/** Structures nested deeper than this are not something a meter sends; stop before the stack does. */
const MAX_DEPTH = 16;

function need(bytes: Uint8Array, offset: number, n: number, what: string): void {
  if (offset + n > bytes.length) throw new AxdrError(`${what}: ${n} byte(s) needed at ${offset}, ${bytes.length - offset} left`);
}

export function decodeDataAt(bytes: Uint8Array, offset: number, depth = 0): { value: DlmsData; next: number } {
  if (depth > MAX_DEPTH) throw new AxdrError('data nested too deeply');
  need(bytes, offset, 1, 'data tag');
  const tag = bytes[offset]!;
  const type = TYPE_BY_TAG.get(tag);
  if (type === undefined) throw new AxdrError(`unsupported data tag ${tag} at byte ${offset}`);
  let p = offset + 1;
  switch (type) {
    case 'null-data':
      return { value: { type }, next: p };
    case 'array':
    case 'structure': {
      const n = decodeLength(bytes, p);
      p = n.next;
      const items: DlmsData[] = [];
      for (let i = 0; i < n.value; i++) {
        const item = decodeDataAt(bytes, p, depth + 1);
        items.push(item.value);
        p = item.next;
      }
      return { value: { type, items }, next: p };
    }
    case 'boolean':
      need(bytes, p, 1, type);
      return { value: { type, value: bytes[p] !== 0 }, next: p + 1 };
    case 'bit-string': {
      const n = decodeLength(bytes, p);
      const len = Math.ceil(n.value / 8);
      need(bytes, n.next, len, type);
      return { value: { type, bitLength: n.value, bytes: bytes.slice(n.next, n.next + len) }, next: n.next + len };
    }
    case 'octet-string':
    case 'visible-string':
    case 'utf8-string': {
      const n = decodeLength(bytes, p);
      need(bytes, n.next, n.value, type);
      const raw = bytes.slice(n.next, n.next + n.value);
      const next = n.next + n.value;
      if (type === 'octet-string') return { value: { type, value: raw }, next };
      return { value: { type, value: Buffer.from(raw).toString(type === 'visible-string' ? 'latin1' : 'utf8') }, next };
    }
    case 'long64':
    case 'long64-unsigned': {
      need(bytes, p, 8, type);
      const b = Buffer.from(bytes.buffer, bytes.byteOffset + p, 8);
      return { value: { type, value: type === 'long64' ? b.readBigInt64BE() : b.readBigUInt64BE() }, next: p + 8 };
    }
    case 'float32':
    case 'float64': {
      const w = type === 'float32' ? 4 : 8;
      need(bytes, p, w, type);
      const b = Buffer.from(bytes.buffer, bytes.byteOffset + p, w);
      return { value: { type, value: w === 4 ? b.readFloatBE() : b.readDoubleBE() }, next: p + w };
    }
    default: {
      const { width, signed } = INT_LAYOUT[type];
      need(bytes, p, width, type);
      let v = 0;
      for (let i = 0; i < width; i++) v = v * 256 + bytes[p + i]!;
      if (signed && v >= 2 ** (8 * width - 1)) v -= 2 ** (8 * width);
      return { value: { type, value: v }, next: p + width };
    }
  }
}

/** Decode exactly one Data value filling `bytes`. */
export function decodeData(bytes: Uint8Array): DlmsData {
  const { value, next } = decodeDataAt(bytes, 0);
  if (next !== bytes.length) throw new AxdrError(`${bytes.length - next} unexpected byte(s) after the data`);
  return value;
}

/** A short text form for logs and evidence. */
export function describeData(d: DlmsData): string {
  switch (d.type) {
    case 'null-data':
      return 'null';
    case 'array':
    case 'structure':
      return `${d.type}{${d.items.map(describeData).join(', ')}}`;
    case 'octet-string':
      return `octet-string(${Buffer.from(d.value).toString('hex')})`;
    case 'bit-string':
      return `bit-string(${d.bitLength}:${Buffer.from(d.bytes).toString('hex')})`;
    default:
      return `${d.type}(${String(d.value)})`;
  }
}
