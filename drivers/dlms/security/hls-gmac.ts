import { timingSafeEqual } from 'node:crypto';
import { gcmEncrypt, initializationVector, TAG_LENGTH, type CipherKeys } from './suite0-cipher.js';
import { encodeSecurityControl, SUITE_0 } from './security-control.js';

/**
 * HLS authentication mechanism 5, HLS-GMAC (DLMS UA 1000-2 Green Book §9.2.7.4, Table 43 "HLS example using
 * authentication-mechanism 5 with GMAC"): the answer to a challenge is
 *   f(challenge) = SC ‖ IC ‖ GMAC(SC ‖ AK ‖ challenge)   with SC = 0x10 (suite 0, authentication only),
 * the GMAC taken with the global unicast encryption key and IV = own system title ‖ IC, truncated to 12 bytes.
 * The client answers StoC in pass 3 (reply_to_HLS_authentication), the server answers CtoS in pass 4.
 */

const SC_AUTHENTICATION_ONLY = encodeSecurityControl({ suite: SUITE_0, authenticated: true, encrypted: false, broadcastKey: false, compressed: false });
export const HLS_GMAC_RESPONSE_LENGTH = 1 + 4 + TAG_LENGTH;
/** The challenge lengths the standard allows (IEC 62056-5-3 §5.2.2.3: 8 to 64 octets). */
export const CHALLENGE_MIN = 8;
export const CHALLENGE_MAX = 64;

export function hlsGmacResponse(keys: CipherKeys, systemTitle: Uint8Array, invocationCounter: number, challenge: Uint8Array): Buffer {
  const iv = initializationVector(systemTitle, invocationCounter);
  const { tag } = gcmEncrypt(keys.encryptionKey, iv, Buffer.concat([Buffer.of(SC_AUTHENTICATION_ONLY), keys.authenticationKey, challenge]), new Uint8Array(0));
  const out = Buffer.alloc(HLS_GMAC_RESPONSE_LENGTH);
  out[0] = SC_AUTHENTICATION_ONLY;
  out.writeUInt32BE(invocationCounter, 1);
  tag.copy(out, 5);
  return out;
}

/**
 * Whether `response` is f(challenge) by the holder of `keys` with system title `systemTitle`; the IC is the one
 * the response carries. Returns that IC when it verifies, undefined otherwise (constant-time comparison).
 */
export function verifyHlsGmac(keys: CipherKeys, systemTitle: Uint8Array, challenge: Uint8Array, response: Uint8Array): number | undefined {
  if (response.length !== HLS_GMAC_RESPONSE_LENGTH || response[0] !== SC_AUTHENTICATION_ONLY) return undefined;
  const ic = Buffer.from(response).readUInt32BE(1);
  const expected = hlsGmacResponse(keys, systemTitle, ic, challenge);
  return timingSafeEqual(expected, Buffer.from(response)) ? ic : undefined;
}
