import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MasterKey, keySetIdFor, masterKeyFromEnv, openKeySet, sealKeySet, type MeterKeyMaterial } from '../../src/keys/key-envelope.js';

/** Envelope encryption of meter keys: what an operator configures, and what a wrong master or an altered row gives. */
const keys: MeterKeyMaterial = {
  encryptionKey: Buffer.from('000102030405060708090A0B0C0D0E0F', 'hex'),
  authenticationKey: Buffer.from('D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF', 'hex'),
  masterKey: Buffer.from('00112233445566778899AABBCCDDEEFF', 'hex'),
  serverSystemTitle: Buffer.from('4D4D4D0000BC614E', 'hex'),
};
const hex32 = 'a'.repeat(64);

describe('the key master', () => {
  it('is read from METERLINE_KEY_MASTER as hex or base64, 16 or 32 bytes; its id is a fingerprint, and it never prints its bytes', () => {
    const a = masterKeyFromEnv({ METERLINE_KEY_MASTER: hex32 })!;
    const b = masterKeyFromEnv({ METERLINE_KEY_MASTER: Buffer.from(hex32, 'hex').toString('base64') })!;
    expect(a.id).toMatch(/^mk_[0-9a-f]{16}$/);
    expect(b.id).toBe(a.id);
    expect(masterKeyFromEnv({ METERLINE_KEY_MASTER: '0f'.repeat(16) })!.id).not.toBe(a.id);
    expect(masterKeyFromEnv({})).toBeUndefined();
    for (const shown of [JSON.stringify(a), String(a), inspect(a), inspect({ a })]) {
      expect(shown).toContain(a.id);
      expect(shown.toLowerCase()).not.toContain('aaaaaaaa');
    }
  });

  it('refuses what is not a key, without repeating it', () => {
    for (const bad of ['not-a-key', 'ab'.repeat(20), 'zz'.repeat(16)]) {
      expect(() => masterKeyFromEnv({ METERLINE_KEY_MASTER: bad })).toThrow(expect.objectContaining({ code: 'E_KEY_MASTER_INVALID', message: expect.not.stringContaining(bad) }));
    }
  });

  it('is read from METERLINE_KEY_MASTER_FILE only when the file is its owner\'s alone (mode 0600)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-master-'));
    const file = join(dir, 'master.key');
    writeFileSync(file, `${hex32}\n`, { mode: 0o600 });
    expect(masterKeyFromEnv({ METERLINE_KEY_MASTER_FILE: file })!.id).toBe(masterKeyFromEnv({ METERLINE_KEY_MASTER: hex32 })!.id);
    chmodSync(file, 0o644);
    expect(() => masterKeyFromEnv({ METERLINE_KEY_MASTER_FILE: file })).toThrow(expect.objectContaining({ code: 'E_KEY_MASTER_INVALID', message: expect.stringMatching(/mode 0644.*chmod 600/) }));
    expect(() => masterKeyFromEnv({ METERLINE_KEY_MASTER_FILE: join(dir, 'absent') })).toThrow(expect.objectContaining({ code: 'E_KEY_MASTER_INVALID', message: expect.stringContaining('ENOENT') }));
  });
});

describe('sealing a key set', () => {
  const master = MasterKey.random();

  it('opens under the same master to the same keys; the sealed text holds none of them', () => {
    const id = keySetIdFor(master, 'M-1', keys);
    const sealed = sealKeySet(master, 'M-1', id, keys);
    expect(openKeySet(master, 'M-1', id, sealed)).toEqual({ keySetId: id, ...keys });
    const text = JSON.stringify(sealed);
    for (const k of [keys.encryptionKey, keys.authenticationKey, keys.masterKey!]) {
      expect(text.toLowerCase()).not.toContain(k.toString('hex'));
      expect(text).not.toContain(k.toString('base64'));
    }
    // A fresh data key and IV each time: the same keys never seal to the same text.
    expect(sealKeySet(master, 'M-1', id, keys).sealedKeys).not.toBe(sealed.sealedKeys);
    // A 16-byte master works the same way (AES-128-GCM).
    const small = MasterKey.random(16);
    expect(openKeySet(small, 'M-1', id, sealKeySet(small, 'M-1', id, keys)).authenticationKey).toEqual(keys.authenticationKey);
  });

  it('the key set id is the same for the same keys and meter, another for other keys or another meter, and tells nothing about the keys', () => {
    const id = keySetIdFor(master, 'M-1', keys);
    expect(id).toMatch(/^ks_[0-9a-f]{20}$/);
    expect(keySetIdFor(master, 'M-1', { ...keys })).toBe(id);
    expect(keySetIdFor(master, 'M-2', keys)).not.toBe(id);
    expect(keySetIdFor(master, 'M-1', { ...keys, encryptionKey: Buffer.alloc(16, 1) })).not.toBe(id);
    expect(keySetIdFor(MasterKey.random(), 'M-1', keys)).not.toBe(id);
  });

  it('a wrong master is named (E_KEY_MASTER_MISMATCH with both key ids), not answered with garbage', () => {
    const sealed = sealKeySet(master, 'M-1', 'ks_1', keys);
    const other = MasterKey.random();
    expect(() => openKeySet(other, 'M-1', 'ks_1', sealed)).toThrow(expect.objectContaining({ code: 'E_KEY_MASTER_MISMATCH', details: expect.objectContaining({ rowMasterKeyId: master.id, masterKeyId: other.id }) }));
    // A row that claims the configured master's id but was sealed under another does not open either.
    expect(() => openKeySet(other, 'M-1', 'ks_1', { ...sealed, masterKeyId: other.id })).toThrow(expect.objectContaining({ code: 'E_KEY_ENVELOPE_INVALID' }));
  });

  it('a row altered, or copied onto another meter or key set, does not open (E_KEY_ENVELOPE_INVALID)', () => {
    const sealed = sealKeySet(master, 'M-1', 'ks_1', keys);
    const flip = (b64: string) => {
      const b = Buffer.from(b64, 'base64');
      b[b.length - 1]! ^= 1;
      return b.toString('base64');
    };
    expect(() => openKeySet(master, 'M-2', 'ks_1', sealed)).toThrow(expect.objectContaining({ code: 'E_KEY_ENVELOPE_INVALID' }));
    expect(() => openKeySet(master, 'M-1', 'ks_2', sealed)).toThrow(expect.objectContaining({ code: 'E_KEY_ENVELOPE_INVALID' }));
    expect(() => openKeySet(master, 'M-1', 'ks_1', { ...sealed, sealedKeys: flip(sealed.sealedKeys) })).toThrow(expect.objectContaining({ code: 'E_KEY_ENVELOPE_INVALID' }));
    expect(() => openKeySet(master, 'M-1', 'ks_1', { ...sealed, wrappedDataKey: flip(sealed.wrappedDataKey) })).toThrow(expect.objectContaining({ code: 'E_KEY_ENVELOPE_INVALID' }));
  });
});
