/**
 * The DLMS/COSEM TCP-UDP wrapper (IEC 62056-47 §5.3; Green Book 8 §7.3.3.2, "The wrapper protocol data unit"):
 * each APDU on a TCP connection is preceded by an 8-byte header of four big-endian 16-bit fields:
 *
 *   version (0x0001) | source wPort | destination wPort | length (of the APDU that follows)
 *
 * The wPorts play the part of the HDLC SAPs: the client's wPort is its client SAP (0x10 public, 0x01
 * management), the server's is the logical device (0x0001 the management logical device). TCP is a byte
 * stream, so `WrapperFrameReader` reassembles frames from whatever chunks arrive; it holds at most one
 * frame and refuses (reports fatal) a bad version or a length over its limit: the connection must then be
 * dropped, since nothing after a bad header can be trusted to start on a frame boundary.
 *
 * @example
 *   const reader = new WrapperFrameReader({ maxApduBytes: 2048 });
 *   for (const item of reader.push(chunk)) if (item.kind === 'frame') handle(item.frame.apdu);
 *   else { socket.destroy(); break; }   // item.kind === 'fatal'
 */

export const WRAPPER_VERSION = 0x0001;
export const WRAPPER_HEADER_BYTES = 8;
/** The IANA-registered DLMS/COSEM port for the wrapper over TCP and UDP. */
export const DLMS_WRAPPER_PORT = 4059;
/** The length field is 16 bits: no wrapped APDU is longer than this. */
export const WRAPPER_MAX_APDU = 0xffff;

export interface WrapperFrame {
  source: number;
  destination: number;
  apdu: Uint8Array;
}

/** Why a reader gave up on a stream. */
export type WrapperFatal = 'bad-version' | 'oversize';

export type WrapperReaderItem = { kind: 'frame'; frame: WrapperFrame } | { kind: 'fatal'; reason: WrapperFatal; detail: string };

const checkPort = (name: string, v: number): void => {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`wrapper ${name} wPort ${v} out of range 0..65535`);
};

/** Header and APDU as they go on the wire. */
export function encodeWrapperFrame(f: WrapperFrame): Uint8Array {
  checkPort('source', f.source);
  checkPort('destination', f.destination);
  if (f.apdu.length > WRAPPER_MAX_APDU) throw new RangeError(`APDU of ${f.apdu.length} bytes does not fit the wrapper's 16-bit length`);
  const out = new Uint8Array(WRAPPER_HEADER_BYTES + f.apdu.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, WRAPPER_VERSION);
  view.setUint16(2, f.source);
  view.setUint16(4, f.destination);
  view.setUint16(6, f.apdu.length);
  out.set(f.apdu, WRAPPER_HEADER_BYTES);
  return out;
}

export interface WrapperHeader {
  version: number;
  source: number;
  destination: number;
  length: number;
}

export function decodeWrapperHeader(bytes: Uint8Array, offset = 0): WrapperHeader {
  if (bytes.length - offset < WRAPPER_HEADER_BYTES) throw new RangeError(`a wrapper header is ${WRAPPER_HEADER_BYTES} bytes, got ${bytes.length - offset}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, WRAPPER_HEADER_BYTES);
  return { version: view.getUint16(0), source: view.getUint16(2), destination: view.getUint16(4), length: view.getUint16(6) };
}

/** One complete frame (header and exactly `length` bytes); throws on anything else. */
export function decodeWrapperFrame(bytes: Uint8Array): WrapperFrame {
  const h = decodeWrapperHeader(bytes);
  if (h.version !== WRAPPER_VERSION) throw new RangeError(`wrapper version ${h.version}, expected ${WRAPPER_VERSION}`);
  if (bytes.length !== WRAPPER_HEADER_BYTES + h.length) throw new RangeError(`wrapper length field says ${h.length} bytes, ${bytes.length - WRAPPER_HEADER_BYTES} follow`);
  return { source: h.source, destination: h.destination, apdu: bytes.slice(WRAPPER_HEADER_BYTES) };
}

export interface WrapperFrameReaderOptions {
  /** Largest APDU accepted; a header announcing more is fatal. Default and ceiling 65535. */
  maxApduBytes?: number;
}

/** Reassembles wrapper frames from TCP chunks. Holds at most one header plus one APDU of `maxApduBytes`. */
export class WrapperFrameReader {
  private buf: Uint8Array = new Uint8Array(0);
  private failed: WrapperReaderItem | undefined;
  private readonly max: number;

  constructor(options: WrapperFrameReaderOptions = {}) {
    this.max = Math.min(options.maxApduBytes ?? WRAPPER_MAX_APDU, WRAPPER_MAX_APDU);
  }

  /** Bytes held back waiting for the rest of a frame. */
  get pending(): number {
    return this.buf.length;
  }

  /** The frames completed by this chunk; after a fatal item the reader yields nothing more. */
  push(chunk: Uint8Array): WrapperReaderItem[] {
    if (this.failed) return [];
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf, 0);
    joined.set(chunk, this.buf.length);
    const out: WrapperReaderItem[] = [];
    let at = 0;
    while (joined.length - at >= WRAPPER_HEADER_BYTES) {
      const h = decodeWrapperHeader(joined, at);
      if (h.version !== WRAPPER_VERSION) return this.fail(out, { kind: 'fatal', reason: 'bad-version', detail: `wrapper version 0x${h.version.toString(16).padStart(4, '0')}, expected 0x0001` });
      if (h.length > this.max) return this.fail(out, { kind: 'fatal', reason: 'oversize', detail: `wrapper frame announces ${h.length} bytes, more than the ${this.max} accepted` });
      if (joined.length - at < WRAPPER_HEADER_BYTES + h.length) break;
      const start = at + WRAPPER_HEADER_BYTES;
      out.push({ kind: 'frame', frame: { source: h.source, destination: h.destination, apdu: joined.slice(start, start + h.length) } });
      at = start + h.length;
    }
    this.buf = joined.slice(at);
    return out;
  }

  private fail(out: WrapperReaderItem[], item: WrapperReaderItem): WrapperReaderItem[] {
    this.failed = item;
    this.buf = new Uint8Array(0);
    out.push(item);
    return out;
  }
}
