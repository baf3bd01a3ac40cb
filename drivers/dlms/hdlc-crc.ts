/**
 * The HDLC frame check sequence of IEC 62056-46 §6.4.3 (HCS and FCS): CRC-16/X.25, also known as
 * CRC-16/IBM-SDLC: polynomial x^16 + x^12 + x^5 + 1 (0x1021) processed bit-reflected (0x8408), initial
 * value 0xFFFF, final XOR 0xFFFF. It goes on the wire least significant byte first.
 *
 * @example crc16x25(Buffer.from('123456789')) === 0x906e // the catalogue check value
 */

const REFLECTED_POLY = 0x8408;
const INIT = 0xffff;
const XOR_OUT = 0xffff;

const TABLE: Uint16Array = (() => {
  const t = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ REFLECTED_POLY : c >>> 1;
    t[n] = c;
  }
  return t;
})();

export function crc16x25(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = INIT;
  for (let i = start; i < end; i++) crc = (crc >>> 8) ^ TABLE[(crc ^ bytes[i]!) & 0xff]!;
  return (crc ^ XOR_OUT) & 0xffff;
}

/** Write a check sequence at `offset`, least significant byte first (IEC 62056-46 §6.4.3). */
export function putCrc(out: Uint8Array, offset: number, crc: number): void {
  out[offset] = crc & 0xff;
  out[offset + 1] = crc >>> 8;
}

/** Read a check sequence written by `putCrc`. */
export function getCrc(bytes: Uint8Array, offset: number): number {
  return bytes[offset]! | (bytes[offset + 1]! << 8);
}
