import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { MeterlineError } from '../errors.js';
import { AuditKey, type AuditKeying } from './audit-chain.js';

/**
 * Where the audit chain's key comes from. The key is never in the database (that is the point: whoever can write
 * the database must not be able to recompute the chain), so a store is given a source, not a key.
 */
export interface AuditKeySource {
  /** Where the key is looked for, for messages (never the key). */
  readonly where: string;
  /** The key, when there is one; throws E_AUDIT_KEY_INVALID when what is there is not a key. */
  load(): AuditKey | undefined;
  /** Make and keep a new key; only when a log is keyed for the first time, and absent where a key must be given. */
  readonly create?: () => AuditKey;
  /** The same source as plain data, for a store on another thread (sqlite-worker-store.ts); absent for a source of code's own. */
  readonly portable?: PortableAuditKeySource;
  /** Told when `create` made a key (the worker store calls it on the main thread for a key made on the worker). */
  readonly onCreate?: (file: string, keyId: string) => void;
}

/** An audit key source as data that can cross to a worker thread: the options of auditKeySource(), or a key in memory. */
export type PortableAuditKeySource =
  | { kind: 'options'; envKey?: string | undefined; file?: string | null | undefined; mayCreate: boolean }
  | { kind: 'fixed'; keyHex: string };

/** The source a portable description stands for, on this thread (`onCreate`: told of a key made here). */
export function auditKeySourceFrom(p: PortableAuditKeySource, onCreate?: (file: string, keyId: string) => void): AuditKeySource {
  if (p.kind === 'fixed') return fixedAuditKey(new AuditKey(Buffer.from(p.keyHex, 'hex')));
  return auditKeySource({ envKey: p.envKey, file: p.file, mayCreate: p.mayCreate, ...(onCreate ? { onCreate } : {}) });
}

export const AUDIT_KEY_ENV = 'METERLINE_AUDIT_KEY';
const KEY_FORMAT = '64 to 128 hex digits (32 to 64 random bytes), e.g. from `openssl rand -hex 32`';

/** A key written as hex; the message never repeats what was given, only where and what is wrong with it. */
export function parseAuditKey(text: string, where: string): AuditKey {
  const hex = text.trim();
  if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length % 2 !== 0 || hex.length < 64 || hex.length > 128) {
    throw new MeterlineError('E_AUDIT_KEY_INVALID', `${where} does not hold an audit key: it must be ${KEY_FORMAT} (it has ${hex.length} characters)`);
  }
  return new AuditKey(Buffer.from(hex, 'hex'));
}

/**
 * The key from METERLINE_AUDIT_KEY when set (never made), else from `file` (made there, mode 0600, when `mayCreate`
 * and the log has never been keyed). With neither, there is no key: the store refuses to start.
 */
export function auditKeySource(o: { envKey?: string | undefined; file?: string | null | undefined; mayCreate: boolean; onCreate?: (file: string, keyId: string) => void }): AuditKeySource {
  if (o.envKey) {
    const envKey = o.envKey;
    return { where: AUDIT_KEY_ENV, load: () => parseAuditKey(envKey, AUDIT_KEY_ENV), portable: { kind: 'options', envKey, mayCreate: false } };
  }
  const file = o.file;
  if (!file) return { where: `${AUDIT_KEY_ENV} (not set) or audit.keyFile (not set)`, load: () => undefined, portable: { kind: 'options', mayCreate: false } };
  const load = (): AuditKey | undefined => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new MeterlineError('E_AUDIT_KEY_INVALID', `the audit key file ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    return parseAuditKey(text, `the audit key file ${file}`);
  };
  const create = (): AuditKey => {
    mkdirSync(dirname(file), { recursive: true });
    const bytes = randomBytes(32);
    try {
      // 'wx': never over an existing key (another instance may have just made it: then that one is the key).
      writeFileSync(file, bytes.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return load()!;
      throw e;
    }
    const key = new AuditKey(bytes);
    o.onCreate?.(file, key.id);
    return key;
  };
  return {
    where: `${AUDIT_KEY_ENV} (not set) or the key file ${file}`,
    load,
    ...(o.mayCreate ? { create } : {}),
    portable: { kind: 'options', file, mayCreate: o.mayCreate },
    ...(o.onCreate ? { onCreate: o.onCreate } : {}),
  };
}

/** A key held in memory (tests; a `:memory:` database, whose log lives no longer than the process). */
export function fixedAuditKey(key: AuditKey = AuditKey.random()): AuditKeySource {
  return { where: `a key in memory (id ${key.id})`, load: () => key, portable: { kind: 'fixed', keyHex: key.exportHex() } };
}

/** The key for a log: the one it was keyed with, or a refusal that says which key is needed. */
export function keyForLog(source: AuditKeySource, keying: AuditKeying | undefined): AuditKey {
  const key = source.load();
  const keyedWith = keying ? `the audit log was keyed with key id ${keying.keyId} on ${new Date(keying.at).toISOString()}` : 'the audit log is keyed';
  if (!key) {
    throw new MeterlineError(
      'E_AUDIT_KEY_MISSING',
      `${keyedWith}, but there is no key in ${source.where}: give the key it was written with (kept outside the database: restore it from where you keep it)`,
    );
  }
  if (keying && keying.keyId !== key.id) {
    throw new MeterlineError(
      'E_AUDIT_KEY_MISMATCH',
      `${keyedWith}, but the key in ${source.where} has id ${key.id}: give the key the log was written with. If this is that key, the database's keying record, or the whole chain, was rewritten under another key (check against an anchor)`,
      { logKeyId: keying.keyId, keyId: key.id },
    );
  }
  return key;
}

/** The key to key a log with for the first time: the one given, else a new one where the source keeps keys. */
export function keyForFirstKeying(source: AuditKeySource): AuditKey {
  const key = source.load() ?? source.create?.();
  if (!key) throw new MeterlineError('E_AUDIT_KEY_MISSING', `the audit log is to be keyed now, but there is no key in ${source.where}: set ${AUDIT_KEY_ENV} (${KEY_FORMAT}) or audit.keyFile`);
  return key;
}
