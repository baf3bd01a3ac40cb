/**
 * The HDLC parameter negotiation carried in the information field of SNRM and UA (IEC 62056-46 §6.4.4.4.3.2,
 * after ISO/IEC 13239 §5.5.3.2): format identifier 0x81, group identifier 0x80, group length, then
 * parameters as (id, length, value): 0x05 maximum information field length transmit, 0x06 … receive,
 * 0x07 window size transmit, 0x08 … receive. Each side states them from its own point of view, so the
 * server's "transmit" is the client's "receive". Absent parameters take the defaults (128 bytes, window 1).
 */

const FORMAT_IDENTIFIER = 0x81;
const GROUP_IDENTIFIER = 0x80;
const PARAM = { maxInfoTx: 0x05, maxInfoRx: 0x06, windowTx: 0x07, windowRx: 0x08 } as const;

/** Defaults when a parameter is not negotiated (IEC 62056-46 §6.4.4.4.3.2). */
export const DEFAULT_MAX_INFO = 128;
export const DEFAULT_WINDOW = 1;
/** The window is 1..7 (modulo-8 sequence numbers). */
export const MAX_WINDOW = 7;
/** The largest information field an 11-bit frame length leaves room for. */
export const MAX_INFO_LIMIT = 2030;

export interface HdlcParameters {
  maxInfoTx: number;
  maxInfoRx: number;
  windowTx: number;
  windowRx: number;
}

export const DEFAULT_PARAMETERS: HdlcParameters = {
  maxInfoTx: DEFAULT_MAX_INFO,
  maxInfoRx: DEFAULT_MAX_INFO,
  windowTx: DEFAULT_WINDOW,
  windowRx: DEFAULT_WINDOW,
};

function uintBytes(value: number, width: number): number[] {
  const out: number[] = [];
  for (let i = width - 1; i >= 0; i--) out.push(Math.floor(value / 2 ** (8 * i)) & 0xff);
  return out;
}

/** Lengths take one byte when they fit (as most meters send them), windows four (as the standard's examples). */
export function encodeParameters(p: HdlcParameters): Uint8Array {
  const body: number[] = [];
  const lengthParam = (id: number, v: number) => {
    const w = v > 0xff ? 2 : 1;
    body.push(id, w, ...uintBytes(v, w));
  };
  lengthParam(PARAM.maxInfoTx, p.maxInfoTx);
  lengthParam(PARAM.maxInfoRx, p.maxInfoRx);
  body.push(PARAM.windowTx, 4, ...uintBytes(p.windowTx, 4));
  body.push(PARAM.windowRx, 4, ...uintBytes(p.windowRx, 4));
  return Uint8Array.from([FORMAT_IDENTIFIER, GROUP_IDENTIFIER, body.length, ...body]);
}

/** Decode a parameter field; an empty field means every default. Undefined when it is malformed. */
export function decodeParameters(info: Uint8Array): HdlcParameters | undefined {
  const p = { ...DEFAULT_PARAMETERS };
  if (info.length === 0) return p;
  if (info.length < 3 || info[0] !== FORMAT_IDENTIFIER || info[1] !== GROUP_IDENTIFIER || info[2] !== info.length - 3) return undefined;
  let i = 3;
  while (i < info.length) {
    const id = info[i];
    const len = info[i + 1];
    if (id === undefined || len === undefined || len < 1 || len > 4 || i + 2 + len > info.length) return undefined;
    let v = 0;
    for (let k = 0; k < len; k++) v = v * 256 + info[i + 2 + k]!;
    if (id === PARAM.maxInfoTx) p.maxInfoTx = v;
    else if (id === PARAM.maxInfoRx) p.maxInfoRx = v;
    else if (id === PARAM.windowTx) p.windowTx = v;
    else if (id === PARAM.windowRx) p.windowRx = v;
    i += 2 + len;
  }
  return p;
}

/**
 * What the server answers in UA to a client's SNRM proposal: each value the smaller of the client's
 * proposal and the server's own limit, stated from the server's side.
 */
export function negotiate(clientProposal: HdlcParameters, serverLimits: HdlcParameters): HdlcParameters {
  return {
    maxInfoTx: Math.min(clientProposal.maxInfoRx, serverLimits.maxInfoTx),
    maxInfoRx: Math.min(clientProposal.maxInfoTx, serverLimits.maxInfoRx),
    windowTx: Math.min(clientProposal.windowRx, serverLimits.windowTx),
    windowRx: Math.min(clientProposal.windowTx, serverLimits.windowRx),
  };
}
