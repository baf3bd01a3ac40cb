import { createCipheriv, createDecipheriv } from 'node:crypto';

/**
 * AES key wrap (RFC 3394, default IV A6A6A6A6A6A6A6A6) with a 128-bit KEK through node:crypto's
 * id-aes128-wrap: how global_key_transfer (class 64 Security setup, method 2) carries new keys to a meter
 * (Green Book, key transport with AES key wrap).
 */

const DEFAULT_IV = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');

export class KeyWrapError extends Error {
  override readonly name = 'KeyWrapError';
}

export function wrapKey(kek: Uint8Array, key: Uint8Array): Buffer {
  if (kek.length !== 16) throw new RangeError(`the key encryption key must be 16 bytes, got ${kek.length}`);
  if (key.length < 16 || key.length % 8 !== 0) throw new RangeError(`a key to wrap is a multiple of 8 bytes, at least 16, got ${key.length}`);
  const c = createCipheriv('id-aes128-wrap', kek, DEFAULT_IV);
  return Buffer.concat([c.update(key), c.final()]);
}

export function unwrapKey(kek: Uint8Array, wrapped: Uint8Array): Buffer {
  if (kek.length !== 16) throw new RangeError(`the key encryption key must be 16 bytes, got ${kek.length}`);
  const d = createDecipheriv('id-aes128-wrap', kek, DEFAULT_IV);
  try {
    return Buffer.concat([d.update(wrapped), d.final()]);
  } catch {
    throw new KeyWrapError('wrapped key does not unwrap with this key encryption key (integrity check failed)');
  }
}
