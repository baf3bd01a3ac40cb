import type { DlmsData } from '../axdr.js';
import { data } from '../axdr.js';
import type { CosemMethod } from './attribute.js';
import type { LogicalName } from './obis.js';
import { unwrapKey, wrapKey } from '../security/key-wrap.js';

/**
 * COSEM interface class 64 "Security setup" (Blue Book, IEC 62056-6-2 §4.4.7), method 2 global_key_transfer:
 *   key_data ::= structure { key_id: enum, key_wrapped: octet-string }
 *   global_key_transfer data ::= array key_data
 * with key_id 0 = global unicast encryption key (GUEK), 1 = global broadcast encryption key, 2 = (global)
 * authentication key (GAK), 3 = master key (KEK); each key wrapped with the meter's master key (KEK) by the AES key
 * wrap of security suite 0 (RFC 3394, key-wrap.ts). The meter uses the new keys from the next association on.
 */

export const SECURITY_SETUP_CLASS_ID = 64;
export const SecuritySetupMethod = { securityActivate: 1, globalKeyTransfer: 2 } as const;
export const KeyId = { globalUnicastEncryption: 0, globalBroadcastEncryption: 1, authentication: 2, master: 3 } as const;

export function globalKeyTransferMethod(logicalName: LogicalName): CosemMethod {
  return { classId: SECURITY_SETUP_CLASS_ID, logicalName, method: SecuritySetupMethod.globalKeyTransfer, name: 'global_key_transfer' };
}

/** The parameter of global_key_transfer carrying a new GUEK and GAK, wrapped with the KEK. */
export function globalKeyTransferParameter(kek: Uint8Array, keys: { encryptionKey: Uint8Array; authenticationKey: Uint8Array }): DlmsData {
  return data.array(
    data.structure(data.enum(KeyId.globalUnicastEncryption), data.octetString(wrapKey(kek, keys.encryptionKey))),
    data.structure(data.enum(KeyId.authentication), data.octetString(wrapKey(kek, keys.authenticationKey))),
  );
}

/** A meter's reading of the parameter: the unwrapped keys by key_id, or why it is refused (no key bytes in the reason). */
export function readGlobalKeyTransfer(kek: Uint8Array, parameter: DlmsData | undefined): Map<number, Buffer> | { error: 'type' | 'wrap' } {
  if (parameter?.type !== 'array' || parameter.items.length === 0) return { error: 'type' };
  const out = new Map<number, Buffer>();
  for (const item of parameter.items) {
    if (item.type !== 'structure' || item.items.length !== 2) return { error: 'type' };
    const [id, wrapped] = item.items;
    if (id?.type !== 'enum' || wrapped?.type !== 'octet-string' || id.value > KeyId.master) return { error: 'type' };
    try {
      out.set(id.value, unwrapKey(kek, wrapped.value));
    } catch {
      return { error: 'wrap' };
    }
  }
  return out;
}
