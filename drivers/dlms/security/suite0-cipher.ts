import { createCipheriv, createDecipheriv } from 'node:crypto';
import { decodeSecurityControl, SUITE_0, type SecurityControl, encodeSecurityControl } from './security-control.js';

/**
 * Security suite 0 (AES-GCM-128) applied to an xDLMS APDU (DLMS UA 1000-2 Green Book §9.2.7.2.4, NIST SP 800-38D),
 * through node:crypto's aes-128-gcm with a 12-byte tag:
 *   IV  = system title of the sender (8) ‖ invocation counter (4, big-endian)
 *   authenticated only:        AAD = SC ‖ AK ‖ plaintext, nothing encrypted, tag 12 bytes, plaintext sent in clear
 *   encrypted only:            AAD empty, ciphertext, no tag
 *   authenticated and encrypted: AAD = SC ‖ AK, ciphertext, tag 12 bytes
 * The protected content on the wire is SC ‖ IC ‖ (plaintext | ciphertext) ‖ [tag]. Deciphering checks the tag
 * (GCM compares it in constant time) and fails with `DecipherError`; keys never appear in its message.
 */

export const TAG_LENGTH = 12;
export const SYSTEM_TITLE_LENGTH = 8;
export const KEY_LENGTH = 16;
const IC_LENGTH = 4;

export class DecipherError extends Error {
  override readonly name = 'DecipherError';
}

export interface CipherKeys {
  /** Block cipher key: the global unicast encryption key or the dedicated key. */
  encryptionKey: Uint8Array;
  authenticationKey: Uint8Array;
}

export function initializationVector(systemTitle: Uint8Array, invocationCounter: number): Buffer {
  if (systemTitle.length !== SYSTEM_TITLE_LENGTH) throw new RangeError(`a system title is ${SYSTEM_TITLE_LENGTH} bytes, got ${systemTitle.length}`);
  if (!Number.isInteger(invocationCounter) || invocationCounter < 0 || invocationCounter > 0xffffffff) throw new RangeError(`invocation counter ${invocationCounter} is not a 32-bit unsigned integer`);
  const iv = Buffer.alloc(SYSTEM_TITLE_LENGTH + IC_LENGTH);
  iv.set(systemTitle, 0);
  iv.writeUInt32BE(invocationCounter, SYSTEM_TITLE_LENGTH);
  return iv;
}

function checkKey(key: Uint8Array, what: string): void {
  if (key.length !== KEY_LENGTH) throw new RangeError(`${what} must be ${KEY_LENGTH} bytes, got ${key.length}`);
}

/** Plain AES-GCM-128 with a `tagLength`-byte tag (NIST SP 800-38D), as node:crypto does it. */
export function gcmEncrypt(key: Uint8Array, iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, tagLength = TAG_LENGTH): { ciphertext: Buffer; tag: Buffer } {
  const c = createCipheriv('aes-128-gcm', key, iv, { authTagLength: tagLength });
  c.setAAD(aad);
  const ciphertext = Buffer.concat([c.update(plaintext), c.final()]);
  return { ciphertext, tag: c.getAuthTag() };
}

/** AES-GCM-128 decryption; throws DecipherError when the tag does not verify. */
export function gcmDecrypt(key: Uint8Array, iv: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array): Buffer {
  const d = createDecipheriv('aes-128-gcm', key, iv, { authTagLength: tag.length });
  d.setAAD(aad);
  d.setAuthTag(tag);
  try {
    return Buffer.concat([d.update(ciphertext), d.final()]);
  } catch {
    throw new DecipherError('authentication tag does not verify (wrong key, wrong system title or altered APDU)');
  }
}

/** CTR-only part of GCM for the encrypted-only policy (no tag is sent, so none is checked). */
function gcmKeystreamXor(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Buffer {
  return gcmEncrypt(key, iv, new Uint8Array(0), data, 16).ciphertext;
}

export interface ProtectInput extends CipherKeys {
  securityControl: SecurityControl;
  /** The sender's system title. */
  systemTitle: Uint8Array;
  invocationCounter: number;
  plaintext: Uint8Array;
}

/** SC ‖ IC ‖ (ciphertext or plaintext) ‖ [tag]: the content of a ciphered APDU. */
export function protect(p: ProtectInput): Buffer {
  const sc = p.securityControl;
  if (sc.suite !== SUITE_0) throw new RangeError(`security suite ${sc.suite} is not supported (suite 0 only)`);
  if (!sc.authenticated && !sc.encrypted) throw new RangeError('security control asks for neither authentication nor encryption');
  checkKey(p.encryptionKey, 'the encryption key');
  checkKey(p.authenticationKey, 'the authentication key');
  const scByte = encodeSecurityControl(sc);
  const iv = initializationVector(p.systemTitle, p.invocationCounter);
  const header = Buffer.alloc(1 + IC_LENGTH);
  header[0] = scByte;
  header.writeUInt32BE(p.invocationCounter, 1);
  if (sc.authenticated && !sc.encrypted) {
    const { tag } = gcmEncrypt(p.encryptionKey, iv, Buffer.concat([Buffer.of(scByte), p.authenticationKey, p.plaintext]), new Uint8Array(0));
    return Buffer.concat([header, p.plaintext, tag]);
  }
  if (!sc.authenticated) return Buffer.concat([header, gcmKeystreamXor(p.encryptionKey, iv, p.plaintext)]);
  const { ciphertext, tag } = gcmEncrypt(p.encryptionKey, iv, Buffer.concat([Buffer.of(scByte), p.authenticationKey]), p.plaintext);
  return Buffer.concat([header, ciphertext, tag]);
}

export interface Unprotected {
  securityControl: SecurityControl;
  invocationCounter: number;
  plaintext: Buffer;
}

/** Split SC ‖ IC ‖ … and check/decrypt it; `systemTitle` is the sender's. Throws DecipherError. */
export function unprotect(content: Uint8Array, systemTitle: Uint8Array, keys: CipherKeys): Unprotected {
  if (content.length < 1 + IC_LENGTH) throw new DecipherError(`ciphered content of ${content.length} bytes is shorter than SC and invocation counter`);
  const buf = Buffer.from(content);
  const securityControl = decodeSecurityControl(buf[0]!);
  if (securityControl.suite !== SUITE_0) throw new DecipherError(`security suite ${securityControl.suite} is not supported (suite 0 only)`);
  if (securityControl.compressed) throw new DecipherError('compressed APDUs are not supported');
  if (!securityControl.authenticated && !securityControl.encrypted) throw new DecipherError('security control asks for neither authentication nor encryption');
  const invocationCounter = buf.readUInt32BE(1);
  const iv = initializationVector(systemTitle, invocationCounter);
  const body = buf.subarray(1 + IC_LENGTH);
  if (!securityControl.authenticated) return { securityControl, invocationCounter, plaintext: gcmKeystreamXor(keys.encryptionKey, iv, body) };
  if (body.length < TAG_LENGTH) throw new DecipherError('ciphered content is shorter than its authentication tag');
  const data = body.subarray(0, body.length - TAG_LENGTH);
  const tag = body.subarray(body.length - TAG_LENGTH);
  const scByte = Buffer.of(buf[0]!);
  if (!securityControl.encrypted) {
    gcmDecrypt(keys.encryptionKey, iv, Buffer.concat([scByte, keys.authenticationKey, data]), new Uint8Array(0), tag);
    return { securityControl, invocationCounter, plaintext: Buffer.from(data) };
  }
  const plaintext = gcmDecrypt(keys.encryptionKey, iv, Buffer.concat([scByte, keys.authenticationKey]), data, tag);
  return { securityControl, invocationCounter, plaintext };
}
