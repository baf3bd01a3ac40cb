import { crc16x25, getCrc, putCrc } from './hdlc-crc.js';
import { decodeControl, encodeControl, type Control } from './hdlc-control.js';
import { readAddressField, serverAddressFromGroups, type ServerAddress, encodeClientAddress, encodeServerAddress } from './hdlc-address.js';

/**
 * One HDLC frame of IEC 62056-46 §6.4 (frame format type 3):
 *
 *   7E | A? S L L (format, 2 bytes) | dest addr | src addr | control | HCS (2) | information | FCS (2) | 7E
 *
 * The format field is 0xA (type 3) in its top four bits, the segmentation bit S, then the 11-bit frame
 * length: every byte between the flags. The HCS (over format, addresses and control) is present only when
 * the frame has an information field; the FCS covers everything from the format field to the end of the
 * information. No byte stuffing: the length field delimits the frame.
 */

export const FLAG = 0x7e;
const FORMAT_TYPE_3 = 0xa0;
const FORMAT_TYPE_MASK = 0xf0;
const SEGMENTATION_BIT = 0x08;
const LENGTH_HIGH_MASK = 0x07;
export const MAX_FRAME_LENGTH = 0x7ff;
const CRC_LEN = 2;

/** Which way a frame travels decides which address is the client's (one byte) and which the server's. */
export type Direction = 'toServer' | 'toClient';

export interface HdlcFrame {
  direction: Direction;
  server: ServerAddress;
  clientSap: number;
  control: Control;
  /** Segmentation bit: more segments of this information follow (IEC 62056-46 §6.4.2.1). */
  segmented: boolean;
  information: Uint8Array;
}

/** The bytes of a frame, flags included. */
export function encodeFrame(f: HdlcFrame): Uint8Array {
  const server = encodeServerAddress(f.server);
  const client = encodeClientAddress(f.clientSap);
  const [dest, src] = f.direction === 'toServer' ? [server, client] : [client, server];
  const headerLen = 2 + dest.length + src.length + 1;
  const hasInfo = f.information.length > 0;
  const length = headerLen + (hasInfo ? CRC_LEN + f.information.length : 0) + CRC_LEN;
  if (length > MAX_FRAME_LENGTH) throw new RangeError(`HDLC frame of ${length} bytes exceeds the 11-bit length field`);
  const out = new Uint8Array(length + 2);
  out[0] = FLAG;
  out[1] = FORMAT_TYPE_3 | (f.segmented ? SEGMENTATION_BIT : 0) | ((length >> 8) & LENGTH_HIGH_MASK);
  out[2] = length & 0xff;
  out.set(dest, 3);
  out.set(src, 3 + dest.length);
  out[headerLen] = encodeControl(f.control);
  let p = headerLen + 1;
  if (hasInfo) {
    putCrc(out, p, crc16x25(out, 1, p));
    p += CRC_LEN;
    out.set(f.information, p);
    p += f.information.length;
  }
  putCrc(out, p, crc16x25(out, 1, p));
  out[p + 2] = FLAG;
  return out;
}

export type FrameDecodeError = 'format' | 'address' | 'control' | 'hcs' | 'fcs' | 'length';

/**
 * Decode one frame, flags included, as seen by a receiver expecting frames going `direction`.
 * Returns the reason when it is not a valid frame; a receiver discards such frames (§6.4.4.2).
 */
export function decodeFrame(bytes: Uint8Array, direction: Direction): HdlcFrame | { error: FrameDecodeError } {
  if (bytes.length < 9 || bytes[0] !== FLAG || bytes[bytes.length - 1] !== FLAG) return { error: 'length' };
  const b1 = bytes[1]!;
  if ((b1 & FORMAT_TYPE_MASK) !== FORMAT_TYPE_3) return { error: 'format' };
  const length = ((b1 & LENGTH_HIGH_MASK) << 8) | bytes[2]!;
  if (length !== bytes.length - 2) return { error: 'length' };
  const end = length + 1; // index just after the FCS
  if (crc16x25(bytes, 1, end - CRC_LEN) !== getCrc(bytes, end - CRC_LEN)) return { error: 'fcs' };
  const dest = readAddressField(bytes, 3);
  if (!dest) return { error: 'address' };
  const src = readAddressField(bytes, 3 + dest.length);
  if (!src) return { error: 'address' };
  const [serverField, clientField] = direction === 'toServer' ? [dest, src] : [src, dest];
  if (clientField.length !== 1) return { error: 'address' };
  const controlAt = 3 + dest.length + src.length;
  const control = decodeControl(bytes[controlAt]!);
  if (!control) return { error: 'control' };
  let information: Uint8Array = new Uint8Array(0);
  const infoStart = controlAt + 1 + CRC_LEN;
  if (end - CRC_LEN > controlAt + 1) {
    if (end - CRC_LEN < infoStart) return { error: 'length' };
    if (crc16x25(bytes, 1, controlAt + 1) !== getCrc(bytes, controlAt + 1)) return { error: 'hcs' };
    information = bytes.slice(infoStart, end - CRC_LEN);
  }
  return {
    direction,
    server: serverAddressFromGroups(serverField.groups),
    clientSap: clientField.groups[0]!,
    control,
    segmented: (b1 & SEGMENTATION_BIT) !== 0,
    information,
  };
}

export function isFrame(x: HdlcFrame | { error: FrameDecodeError }): x is HdlcFrame {
  return !('error' in x);
}

/** Frame length from the format field at `bytes[offset..offset+1]`, or undefined if it is not a type-3 format field. */
export function frameLengthAt(bytes: Uint8Array, offset: number): number | undefined {
  const b1 = bytes[offset];
  const b2 = bytes[offset + 1];
  if (b1 === undefined || b2 === undefined || (b1 & FORMAT_TYPE_MASK) !== FORMAT_TYPE_3) return undefined;
  return ((b1 & LENGTH_HIGH_MASK) << 8) | b2;
}
