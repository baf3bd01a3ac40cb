/**
 * Modbus TCP application data unit: MBAP header + PDU (Modbus Messaging on TCP/IP Implementation Guide
 * V1.0b §3.1.3): transaction id (2 bytes), protocol id (2, always 0), length (2: unit id + PDU bytes),
 * unit id (1), all big-endian. TCP is a byte stream, so `MbapReader` cuts it back into ADUs.
 */

export const MBAP_HEADER_LENGTH = 7;
export const MODBUS_PROTOCOL_ID = 0;
/** Largest PDU (MB AP §4.1: 253 bytes), so the length field is at most 254. */
export const MAX_PDU_LENGTH = 253;

export interface MbapAdu {
  transactionId: number;
  unitId: number;
  pdu: Buffer;
  /** The whole ADU as received (for evidence). */
  raw: Buffer;
}

export function encodeMbap(transactionId: number, unitId: number, pdu: Uint8Array): Buffer {
  const adu = Buffer.alloc(MBAP_HEADER_LENGTH + pdu.length);
  adu.writeUInt16BE(transactionId & 0xffff, 0);
  adu.writeUInt16BE(MODBUS_PROTOCOL_ID, 2);
  adu.writeUInt16BE(pdu.length + 1, 4);
  adu[6] = unitId;
  adu.set(pdu, MBAP_HEADER_LENGTH);
  return adu;
}

/** Accumulates stream bytes and yields complete ADUs; a header that cannot be Modbus breaks the stream. */
export class MbapReader {
  private buf: Buffer = Buffer.alloc(0);

  /** Feed bytes; returns complete ADUs, or an error when the stream is not Modbus TCP (the connection must be dropped). */
  push(chunk: Buffer): { adus: MbapAdu[]; error?: string } {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const adus: MbapAdu[] = [];
    while (this.buf.length >= MBAP_HEADER_LENGTH) {
      const protocol = this.buf.readUInt16BE(2);
      const length = this.buf.readUInt16BE(4);
      if (protocol !== MODBUS_PROTOCOL_ID || length < 2 || length > MAX_PDU_LENGTH + 1) {
        const error = `not an MBAP header: ${this.buf.subarray(0, MBAP_HEADER_LENGTH).toString('hex')} (protocol ${protocol}, length ${length})`;
        this.buf = Buffer.alloc(0);
        return { adus, error };
      }
      const total = MBAP_HEADER_LENGTH - 1 + length;
      if (this.buf.length < total) break;
      const raw = Buffer.from(this.buf.subarray(0, total));
      adus.push({ transactionId: raw.readUInt16BE(0), unitId: raw[6]!, pdu: raw.subarray(MBAP_HEADER_LENGTH), raw });
      this.buf = this.buf.subarray(total);
    }
    return { adus };
  }

  reset(): void {
    this.buf = Buffer.alloc(0);
  }
}
