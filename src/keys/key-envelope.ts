import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { inspect } from 'node:util';
import type { MeterKeys } from '../../drivers/dlms/security/keyring.js';
import { MeterlineError, type ErrorCode } from '../errors.js';

/**
 * Envelope encryption of per-meter DLMS keys at rest (DESIGN.md §8, issue 15 item 3). Each key set is sealed with
 * a fresh 256-bit data key (AES-256-GCM, node:crypto); the data key is sealed under the key master (AES-256-GCM for
 * a 32-byte master, AES-128-GCM for a 16-byte one). The key master comes from METERLINE_KEY_MASTER or a file named by
 * METERLINE_KEY_MASTER_FILE (readable by its owner only), never from the database. A row records the master's key id
 * (a truncated SHA-256 of it, not reversible), so a wrong master is named as such (E_KEY_MASTER_MISMATCH), and the
 * GCM associated data binds a sealed set to its meter and key set id, so a row copied onto another meter does not
 * open (E_KEY_ENVELOPE_INVALID). The clear material is a byte string, never a JS string: buffers can be zeroed.
 */

export const KEY_MASTER_ENV = 'METERLINE_KEY_MASTER';
export const KEY_MASTER_FILE_ENV = 'METERLINE_KEY_MASTER_FILE';

/** The keys of one key set, without its id: what a key file gives for a meter. */
export type MeterKeyMaterial = Omit<MeterKeys, 'keySetId'>;

/** A sealed key set as the store keeps it: text columns, nothing in clear. */
export interface SealedKeySet {
  masterKeyId: string;
  /** base64(iv 12 | tag 16 | the data key, encrypted under the master). */
  wrappedDataKey: string;
  /** base64(iv 12 | tag 16 | the key material, encrypted under the data key). */
  sealedKeys: string;
}

/** The key master. Its bytes never leave this module; printing or serialising it shows its id only. */
export class MasterKey {
  readonly id: string;
  readonly #bytes: Buffer;
  constructor(bytes: Buffer) {
    if (bytes.length !== 16 && bytes.length !== 32) throw new MeterlineError('E_KEY_MASTER_INVALID', `a key master is 16 or 32 bytes (it has ${bytes.length})`);
    this.#bytes = Buffer.from(bytes);
    this.id = `mk_${createHash('sha256').update('meterline key master id\u0000').update(this.#bytes).digest('hex').slice(0, 16)}`;
  }
  static random(length: 16 | 32 = 32): MasterKey {
    return new MasterKey(randomBytes(length));
  }
  /** @internal seal/open under this master; the cipher follows the key's length. */
  seal(plain: Buffer, aad: Buffer): Buffer {
    return gcmSeal(this.#bytes.length === 32 ? 'aes-256-gcm' : 'aes-128-gcm', this.#bytes, plain, aad);
  }
  /** @internal */
  open(sealed: Buffer, aad: Buffer): Buffer | undefined {
    return gcmOpen(this.#bytes.length === 32 ? 'aes-256-gcm' : 'aes-128-gcm', this.#bytes, sealed, aad);
  }
  /** @internal a key derived for one purpose (key set ids), so the master itself is used for one thing only. */
  derive(purpose: string): Buffer {
    return Buffer.from(hkdfSync('sha256', this.#bytes, Buffer.alloc(0), `meterline ${purpose}`, 32));
  }
  toJSON(): { keyId: string } {
    return { keyId: this.id };
  }
  toString(): string {
    return `MasterKey(${this.id})`;
  }
  [inspect.custom](): string {
    return this.toString();
  }
}

type Gcm = 'aes-256-gcm' | 'aes-128-gcm';

function gcmSeal(cipher: Gcm, key: Buffer, plain: Buffer, aad: Buffer): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv(cipher, key, iv);
  c.setAAD(aad);
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), body]);
}

function gcmOpen(cipher: Gcm, key: Buffer, sealed: Buffer, aad: Buffer): Buffer | undefined {
  if (sealed.length < 28) return undefined;
  try {
    const d = createDecipheriv(cipher, key, sealed.subarray(0, 12));
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(12, 28));
    return Buffer.concat([d.update(sealed.subarray(28)), d.final()]);
  } catch {
    return undefined;
  }
}

/**
 * A secret key written as hex (32 or 64 digits) or base64 (of 16 or 32 bytes). The message names where it came
 * from and what is wrong, never what was given.
 */
export function parseSecretKey(text: string, where: string, code: ErrorCode, lengths: readonly number[] = [16, 32]): Buffer {
  const t = text.trim();
  let bytes: Buffer | undefined;
  if (/^[0-9a-fA-F]+$/.test(t) && t.length % 2 === 0) bytes = Buffer.from(t, 'hex');
  else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) bytes = Buffer.from(t, t.includes('-') || t.includes('_') ? 'base64url' : 'base64');
  if (!bytes || !lengths.includes(bytes.length)) {
    throw new MeterlineError(code, `${where} does not hold a key: it must be ${lengths.map((n) => `${n} bytes`).join(' or ')}, as hex (${lengths.map((n) => n * 2).join(' or ')} digits) or base64, e.g. from \`openssl rand -hex 32\``);
  }
  return bytes;
}

/**
 * A secret file's text, refused unless it is a regular file that only its owner can read or write (mode 0600 or
 * 0400): a key readable by the group or the world is a key already given away.
 */
export function readSecretFile(file: string, where: string, code: ErrorCode): string {
  let mode: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new MeterlineError(code, `${where} ${file} is not a regular file`);
    mode = st.mode & 0o777;
  } catch (e) {
    if (e instanceof MeterlineError) throw e;
    throw new MeterlineError(code, `${where} ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if ((mode & 0o077) !== 0) {
    throw new MeterlineError(code, `${where} ${file} can be read or written by others (mode ${mode.toString(8).padStart(4, '0')}): run \`chmod 600 ${file}\``);
  }
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new MeterlineError(code, `${where} ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/**
 * The key master from the environment: METERLINE_KEY_MASTER (the key itself) or METERLINE_KEY_MASTER_FILE (a file
 * holding it, mode 0600). Neither set: undefined (the gateway runs; importing keys is refused with E_NO_MASTER_KEY and
 * no meter gets keys). Set but not a key, or a file others can read: E_KEY_MASTER_INVALID.
 */
export function masterKeyFromEnv(env: NodeJS.ProcessEnv = process.env): MasterKey | undefined {
  const inline = env[KEY_MASTER_ENV];
  if (inline) return new MasterKey(parseSecretKey(inline, KEY_MASTER_ENV, 'E_KEY_MASTER_INVALID'));
  const file = env[KEY_MASTER_FILE_ENV];
  if (file) return new MasterKey(parseSecretKey(readSecretFile(file, 'the key master file', 'E_KEY_MASTER_INVALID'), `the key master file ${file}`, 'E_KEY_MASTER_INVALID'));
  return undefined;
}

export const noMasterKey = (): MeterlineError =>
  new MeterlineError('E_NO_MASTER_KEY', `no key master is configured: set ${KEY_MASTER_ENV} (32 bytes as hex, e.g. \`openssl rand -hex 32\`) or ${KEY_MASTER_FILE_ENV} (a file holding it, mode 0600) and restart the gateway`);

// The clear material: version 1, flags (bit 0: a KEK follows, bit 1: a system title follows), GUEK 16, GAK 16,
// [KEK 16], [system title 8].
const MATERIAL_V1 = 1;

function encodeMaterial(k: MeterKeyMaterial): Buffer {
  const flags = (k.masterKey ? 1 : 0) | (k.serverSystemTitle ? 2 : 0);
  return Buffer.concat([Buffer.from([MATERIAL_V1, flags]), k.encryptionKey, k.authenticationKey, k.masterKey ?? Buffer.alloc(0), k.serverSystemTitle ?? Buffer.alloc(0)]);
}

function decodeMaterial(b: Buffer): MeterKeyMaterial | undefined {
  if (b.length < 34 || b[0] !== MATERIAL_V1) return undefined;
  const flags = b[1]!;
  const want = 34 + (flags & 1 ? 16 : 0) + (flags & 2 ? 8 : 0);
  if (b.length !== want) return undefined;
  // Copies: the decrypted buffer is zeroed by the caller.
  const m: MeterKeyMaterial = { encryptionKey: Buffer.from(b.subarray(2, 18)), authenticationKey: Buffer.from(b.subarray(18, 34)) };
  let at = 34;
  if (flags & 1) (m.masterKey = Buffer.from(b.subarray(at, at + 16))), (at += 16);
  if (flags & 2) m.serverSystemTitle = Buffer.from(b.subarray(at, at + 8));
  return m;
}

const dataKeyAad = (masterKeyId: string, meterId: string, keySetId: string): Buffer => Buffer.from(`meterline data key v1\u0000${masterKeyId}\u0000${meterId}\u0000${keySetId}`);
const keySetAad = (meterId: string, keySetId: string): Buffer => Buffer.from(`meterline key set v1\u0000${meterId}\u0000${keySetId}`);

/**
 * The id of a meter's key set: the same keys for the same meter give the same id under the same master (so
 * importing a file twice changes nothing), and the id tells nothing about the keys (an HMAC under a key derived
 * from the master).
 */
export function keySetIdFor(master: MasterKey, meterId: string, keys: MeterKeyMaterial): string {
  const plain = encodeMaterial(keys);
  try {
    return `ks_${createHmac('sha256', master.derive('key set id')).update(`${meterId}\u0000`).update(plain).digest('hex').slice(0, 20)}`;
  } finally {
    plain.fill(0);
  }
}

/** Seal one key set for the store: a fresh data key for it, that key sealed under the master. */
export function sealKeySet(master: MasterKey, meterId: string, keySetId: string, keys: MeterKeyMaterial): SealedKeySet {
  const dataKey = randomBytes(32);
  const plain = encodeMaterial(keys);
  try {
    return {
      masterKeyId: master.id,
      wrappedDataKey: master.seal(dataKey, dataKeyAad(master.id, meterId, keySetId)).toString('base64'),
      sealedKeys: gcmSeal('aes-256-gcm', dataKey, plain, keySetAad(meterId, keySetId)).toString('base64'),
    };
  } finally {
    dataKey.fill(0);
    plain.fill(0);
  }
}

/** Open a sealed key set: E_KEY_MASTER_MISMATCH under another master, E_KEY_ENVELOPE_INVALID when the row was altered or moved. */
export function openKeySet(master: MasterKey, meterId: string, keySetId: string, sealed: SealedKeySet): MeterKeys {
  if (sealed.masterKeyId !== master.id) {
    throw new MeterlineError(
      'E_KEY_MASTER_MISMATCH',
      `key set ${keySetId} of meter ${meterId} was sealed under key master ${sealed.masterKeyId}, but the configured key master is ${master.id}: configure the key master the keys were imported under`,
      { meterId, keySetId, rowMasterKeyId: sealed.masterKeyId, masterKeyId: master.id },
    );
  }
  const invalid = (): MeterlineError =>
    new MeterlineError('E_KEY_ENVELOPE_INVALID', `key set ${keySetId} of meter ${meterId} does not open under key master ${master.id}: its row in the store was altered or belongs to another meter; import the meter's keys again`, {
      meterId,
      keySetId,
    });
  const dataKey = master.open(Buffer.from(sealed.wrappedDataKey, 'base64'), dataKeyAad(master.id, meterId, keySetId));
  if (!dataKey || dataKey.length !== 32) throw invalid();
  const plain = gcmOpen('aes-256-gcm', dataKey, Buffer.from(sealed.sealedKeys, 'base64'), keySetAad(meterId, keySetId));
  dataKey.fill(0);
  if (!plain) throw invalid();
  try {
    const m = decodeMaterial(plain);
    if (!m) throw invalid();
    return { keySetId, ...m };
  } finally {
    plain.fill(0);
  }
}
