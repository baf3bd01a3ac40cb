/**
 * The HDLC control field (IEC 62056-46 §6.4.3.4, after ISO/IEC 13239): one byte saying what a frame is.
 * I-frames carry N(S) in bits 1–3 and N(R) in bits 5–7; supervisory frames (RR, RNR) carry N(R); the P/F bit
 * (bit 4) is the poll bit from the client and the final bit from the server. Sequence numbers are modulo 8.
 */

export const POLL_FINAL = 0x10;
const SEQ_MOD = 8;

/** Unnumbered commands and responses, with the P/F bit clear. */
export const UNNUMBERED = {
  SNRM: 0x83,
  DISC: 0x43,
  UA: 0x63,
  DM: 0x0f,
  FRMR: 0x87,
  UI: 0x03,
} as const;
export type UnnumberedKind = keyof typeof UNNUMBERED;

/** Supervisory frames (bits 0–3), N(R) in bits 5–7. */
const SUPERVISORY = { RR: 0x01, RNR: 0x05 } as const;
export type SupervisoryKind = keyof typeof SUPERVISORY;

export type Control =
  | { kind: 'I'; ns: number; nr: number; pf: boolean }
  | { kind: SupervisoryKind; nr: number; pf: boolean }
  | { kind: UnnumberedKind; pf: boolean };

export const nextSeq = (n: number): number => (n + 1) % SEQ_MOD;

export function encodeControl(c: Control): number {
  const pf = c.pf ? POLL_FINAL : 0;
  if (c.kind === 'I') return ((c.nr & 7) << 5) | pf | ((c.ns & 7) << 1);
  if (c.kind === 'RR' || c.kind === 'RNR') return ((c.nr & 7) << 5) | pf | SUPERVISORY[c.kind];
  return UNNUMBERED[c.kind] | pf;
}

export function decodeControl(byte: number): Control | undefined {
  const pf = (byte & POLL_FINAL) !== 0;
  if ((byte & 0x01) === 0) return { kind: 'I', ns: (byte >> 1) & 7, nr: (byte >> 5) & 7, pf };
  if ((byte & 0x03) === 0x01) {
    const low = byte & 0x0f;
    if (low === SUPERVISORY.RR) return { kind: 'RR', nr: byte >> 5, pf };
    if (low === SUPERVISORY.RNR) return { kind: 'RNR', nr: byte >> 5, pf };
    return undefined; // REJ and SREJ are not used by IEC 62056-46
  }
  const bare = byte & ~POLL_FINAL & 0xff;
  for (const [kind, value] of Object.entries(UNNUMBERED) as Array<[UnnumberedKind, number]>) if (value === bare) return { kind, pf };
  return undefined;
}

export function describeControl(c: Control): string {
  if (c.kind === 'I') return `I(ns=${c.ns},nr=${c.nr}${c.pf ? ',P/F' : ''})`;
  if (c.kind === 'RR' || c.kind === 'RNR') return `${c.kind}(nr=${c.nr}${c.pf ? ',P/F' : ''})`;
  return `${c.kind}${c.pf ? '(P/F)' : ''}`;
}
