import type { HdlcClient } from './hdlc-client.js';
import { LLC_REQUEST, LLC_RESPONSE, stripLlc, withLlc } from './llc.js';
import { DlmsWireFailure, hex } from './wire-failure.js';

/**
 * How one association sends a complete APDU and receives the complete answer, whatever carries it: HDLC
 * I-frames with the LLC header (IEC 62056-46), or the TCP/UDP wrapper (IEC 62056-47). The COSEM client and
 * the security layer above see only APDUs.
 */
export interface ApduChannel {
  request(apdu: Uint8Array): Promise<Uint8Array>;
}

/** APDUs over an HDLC connection: the LLC header added to each request and checked on each answer. */
export function hdlcApduChannel(hdlc: HdlcClient, where: string): ApduChannel {
  return {
    async request(apdu) {
      const info = await hdlc.request(withLlc(LLC_REQUEST, apdu));
      const body = stripLlc(LLC_RESPONSE, info);
      if (!body) throw new DlmsWireFailure('garbled', `meter ${where}: answer does not start with the LLC response header E6 E7 00`, hex(info));
      return body;
    },
  };
}
