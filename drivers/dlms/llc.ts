/**
 * The LLC header that precedes every APDU carried in an HDLC I-frame (IEC 62056-46 §6.2, after
 * ISO/IEC 8802-2): destination LSAP 0xE6, source LSAP 0xE6 (command, client → server) or 0xE7 (response,
 * server → client), LLC quality 0x00.
 */

export const LLC_REQUEST = Uint8Array.of(0xe6, 0xe6, 0x00);
export const LLC_RESPONSE = Uint8Array.of(0xe6, 0xe7, 0x00);

export function withLlc(header: Uint8Array, apdu: Uint8Array): Uint8Array {
  const out = new Uint8Array(header.length + apdu.length);
  out.set(header, 0);
  out.set(apdu, header.length);
  return out;
}

/** The APDU after `header`, or undefined when the bytes do not start with it. */
export function stripLlc(header: Uint8Array, bytes: Uint8Array): Uint8Array | undefined {
  if (bytes.length < header.length) return undefined;
  for (let i = 0; i < header.length; i++) if (bytes[i] !== header[i]) return undefined;
  return bytes.subarray(header.length);
}
