/**
 * The security control byte (SC) of a ciphered xDLMS APDU (DLMS UA 1000-2 Green Book §9.2.7.2.3, IEC 62056-5-3
 * §5.3): bits 0–3 security suite id, bit 4 A (authenticated), bit 5 E (encrypted), bit 6 key set (0 = unicast,
 * 1 = broadcast), bit 7 compression. Meterline speaks security suite 0 (AES-GCM-128) only.
 */

export interface SecurityControl {
  suite: number;
  authenticated: boolean;
  encrypted: boolean;
  broadcastKey: boolean;
  compressed: boolean;
}

/** What a profile asks of every service APDU after the association (Green Book "security policy"). */
export type CipheringPolicy = 'none' | 'authenticated' | 'encrypted' | 'authenticated-encrypted';

export const SUITE_0 = 0;
const SUITE_MASK = 0x0f;
const AUTHENTICATED = 0x10;
const ENCRYPTED = 0x20;
const BROADCAST_KEY = 0x40;
const COMPRESSED = 0x80;

export function encodeSecurityControl(sc: SecurityControl): number {
  return (sc.suite & SUITE_MASK) | (sc.authenticated ? AUTHENTICATED : 0) | (sc.encrypted ? ENCRYPTED : 0) | (sc.broadcastKey ? BROADCAST_KEY : 0) | (sc.compressed ? COMPRESSED : 0);
}

export function decodeSecurityControl(byte: number): SecurityControl {
  return { suite: byte & SUITE_MASK, authenticated: (byte & AUTHENTICATED) !== 0, encrypted: (byte & ENCRYPTED) !== 0, broadcastKey: (byte & BROADCAST_KEY) !== 0, compressed: (byte & COMPRESSED) !== 0 };
}

/** The SC of suite 0, unicast key, no compression, for a policy (undefined for 'none'). */
export function securityControlFor(policy: CipheringPolicy): SecurityControl | undefined {
  if (policy === 'none') return undefined;
  return { suite: SUITE_0, authenticated: policy !== 'encrypted', encrypted: policy !== 'authenticated', broadcastKey: false, compressed: false };
}

export function policyOf(sc: SecurityControl): CipheringPolicy {
  if (sc.authenticated && sc.encrypted) return 'authenticated-encrypted';
  if (sc.authenticated) return 'authenticated';
  if (sc.encrypted) return 'encrypted';
  return 'none';
}
