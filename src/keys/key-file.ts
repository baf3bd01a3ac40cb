import { createDecipheriv } from 'node:crypto';
import { parseCsv } from '../csv-parse-lazy.js';
import { MeterlineError } from '../errors.js';
import { parseSecretKey, readSecretFile, type MeterKeyMaterial } from './key-envelope.js';

/**
 * A manufacturer's key file as utilities receive it (issue 15 item 3): CSV with a header row, or JSON (an array of
 * objects), one meter per row: meter id, system title, the global unicast encryption key (GUEK), the global
 * authentication key (GAK) and optionally the master key (KEK). Keys are plain hex (16 bytes), or all wrapped with
 * AES key wrap (RFC 3394, `id-aes128-wrap` / `id-aes256-wrap` from node:crypto; 24 bytes each) under a transport key
 * the manufacturer shared, which the gateway reads from its own environment (never from a request).
 *
 * Every row and field is checked before anything is stored; the errors name the row (1 = the first row after the
 * header, or the first array element) and the field, never a value from the file: a value may be a key.
 */

export type KeyFileFormat = 'csv' | 'json';

export interface KeyFileRow {
  /** 1-based: the first data row of the CSV (after the header), or the first element of the JSON array. */
  row: number;
  meterId: string;
  keys: MeterKeyMaterial;
}

export interface KeyFileProblem {
  row: number;
  field: string;
  problem: string;
}

/** The most rows one import takes (a key file per delivery batch is typically a few thousand meters). */
export const KEY_FILE_MAX_ROWS = 50_000;

const FIELDS = ['meterId', 'systemTitle', 'encryptionKey', 'authenticationKey', 'masterKey'] as const;
type Field = (typeof FIELDS)[number];

/** Column names as manufacturers write them, compared without case, spaces, "_" or "-". */
const ALIASES: Record<string, Field> = {
  meterid: 'meterId',
  meter: 'meterId',
  systemtitle: 'systemTitle',
  st: 'systemTitle',
  encryptionkey: 'encryptionKey',
  guek: 'encryptionKey',
  ek: 'encryptionKey',
  authenticationkey: 'authenticationKey',
  gak: 'authenticationKey',
  ak: 'authenticationKey',
  masterkey: 'masterKey',
  kek: 'masterKey',
};
const fieldOf = (name: string): Field | undefined => ALIASES[name.toLowerCase().replace(/[\s_-]/g, '')];

const METER_ID = /^[A-Za-z0-9._:-]{1,64}$/;
const KEY_FIELDS = ['encryptionKey', 'authenticationKey', 'masterKey'] as const;

/** The RFC 3394 default initial value (2.2.3.1). */
const KEY_WRAP_IV = Buffer.from('A6A6A6A6A6A6A6A6', 'hex');

/** Unwrap one RFC 3394 wrapped key; undefined when the integrity check fails (wrong transport key or altered). */
export function unwrapKey(wrapped: Buffer, transportKey: Buffer): Buffer | undefined {
  try {
    const d = createDecipheriv(transportKey.length === 32 ? 'id-aes256-wrap' : 'id-aes128-wrap', transportKey, KEY_WRAP_IV);
    return Buffer.concat([d.update(wrapped), d.final()]);
  } catch {
    return undefined;
  }
}

const TRANSPORT_KEY_NAME = /^METERLINE_TRANSPORT_KEY(_[A-Z0-9]+)*$/;

/**
 * The transport key named `name`: the environment variable of that name (hex or base64, 16 or 32 bytes), else the
 * file named by `<name>_FILE` (mode 0600). Only names starting METERLINE_TRANSPORT_KEY are looked up, so a request
 * cannot turn another of the gateway's secrets into a transport key.
 */
export function transportKeyFromEnv(name: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  if (!TRANSPORT_KEY_NAME.test(name)) {
    throw new MeterlineError('E_TRANSPORT_KEY_MISSING', `a transport key is named METERLINE_TRANSPORT_KEY or METERLINE_TRANSPORT_KEY_<NAME> (capitals, digits, "_"); "${name.slice(0, 80)}" is not such a name`);
  }
  const inline = env[name];
  if (inline) return parseSecretKey(inline, `the transport key ${name}`, 'E_TRANSPORT_KEY_MISSING');
  const file = env[`${name}_FILE`];
  if (file) return parseSecretKey(readSecretFile(file, `the transport key file (${name}_FILE)`, 'E_TRANSPORT_KEY_MISSING'), `the transport key file ${file}`, 'E_TRANSPORT_KEY_MISSING');
  throw new MeterlineError('E_TRANSPORT_KEY_MISSING', `the transport key ${name} is not configured on the gateway: set ${name} (hex or base64) or ${name}_FILE (a file, mode 0600) in the gateway's environment and restart it`);
}

/** Raw rows (field → text) from the file, or the problems that make it unreadable as a whole. */
function rawRows(text: string, format: KeyFileFormat): Record<string, unknown>[] {
  if (format === 'json') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      // JSON.parse's message quotes the text around the error, which may be a key: say where only.
      throw new MeterlineError('E_KEY_FILE_INVALID', 'the key file is not valid JSON (an array of objects, one per meter); nothing was imported', { errors: [{ row: 0, field: '(file)', problem: 'not valid JSON' }] });
    }
    const list = Array.isArray(parsed) ? parsed : parsed !== null && typeof parsed === 'object' && Array.isArray((parsed as { keys?: unknown }).keys) ? (parsed as { keys: unknown[] }).keys : undefined;
    if (!list) throw new MeterlineError('E_KEY_FILE_INVALID', 'the JSON key file must be an array of objects (or {"keys": [...]}); nothing was imported', { errors: [{ row: 0, field: '(file)', problem: 'not an array' }] });
    return list.map((r) => (r !== null && typeof r === 'object' && !Array.isArray(r) ? (r as Record<string, unknown>) : { '(row)': r }));
  }
  try {
    return parseCsv(text, { columns: true, skip_empty_lines: true, trim: true, bom: true }) as Record<string, string>[];
  } catch (e) {
    // csv-parse's messages can quote a field's value: give its code and line only.
    const err = e as { code?: string; lines?: number };
    throw new MeterlineError('E_KEY_FILE_INVALID', `the CSV key file cannot be read (${err.code ?? 'CSV_INVALID'}${err.lines ? ` near line ${err.lines}` : ''}); nothing was imported`, {
      errors: [{ row: 0, field: '(file)', problem: err.code ?? 'CSV_INVALID' }],
    });
  }
}

/**
 * Parse and check a key file: every row valid (and unwrapped, with `transportKey`), one row per meter; or
 * E_KEY_FILE_INVALID naming the first bad row and field (all of them, up to 500, in `details.errors`).
 */
export function parseKeyFile(text: string, format: KeyFileFormat, transportKey?: Buffer): KeyFileRow[] {
  const raw = rawRows(text, format);
  if (raw.length === 0) throw new MeterlineError('E_KEY_FILE_INVALID', 'the key file has no rows; nothing was imported', { errors: [{ row: 0, field: '(file)', problem: 'no rows' }] });
  if (raw.length > KEY_FILE_MAX_ROWS) {
    throw new MeterlineError('E_KEY_FILE_INVALID', `the key file has ${raw.length} rows; import at most ${KEY_FILE_MAX_ROWS} at a time; nothing was imported`, { errors: [{ row: 0, field: '(file)', problem: 'too many rows' }] });
  }
  const problems: KeyFileProblem[] = [];
  const rows: KeyFileRow[] = [];
  const firstRowOf = new Map<string, number>();
  raw.forEach((rec, i) => {
    const row = i + 1;
    const bad = (field: string, problem: string) => problems.push({ row, field, problem });
    const cells: Partial<Record<Field, string>> = {};
    for (const [name, value] of Object.entries(rec)) {
      const field = fieldOf(name);
      if (!field) {
        bad(name.slice(0, 64), `unknown column; the columns are meter id, system title, GUEK (encryption key), GAK (authentication key) and optionally KEK (master key)`);
        continue;
      }
      if (value === undefined || value === null || value === '') continue;
      if (typeof value !== 'string') {
        bad(field, 'must be text');
        continue;
      }
      cells[field] = value.trim();
    }
    const before = problems.length;
    const meterId = cells.meterId;
    if (meterId === undefined) bad('meterId', 'missing');
    else if (!METER_ID.test(meterId)) bad('meterId', 'letters, digits, ".", "_", ":" and "-", at most 64');
    else if (firstRowOf.has(meterId)) bad('meterId', `meter ${meterId} is already in row ${firstRowOf.get(meterId)}; give one key set per meter`);
    else firstRowOf.set(meterId, row);

    const st = cells.systemTitle;
    let systemTitle: Buffer | undefined;
    if (st === undefined) bad('systemTitle', 'missing');
    else if (!/^[0-9a-fA-F]{16}$/.test(st)) bad('systemTitle', 'must be 8 bytes as 16 hex digits');
    else systemTitle = Buffer.from(st, 'hex');

    const keys: Partial<Record<(typeof KEY_FIELDS)[number], Buffer>> = {};
    for (const field of KEY_FIELDS) {
      const text = cells[field];
      if (text === undefined) {
        if (field !== 'masterKey') bad(field, 'missing');
        continue;
      }
      if (!transportKey) {
        if (!/^[0-9a-fA-F]{32}$/.test(text)) bad(field, /^[0-9a-fA-F]{48}$/.test(text) ? 'looks wrapped (24 bytes): name the transport key it is wrapped with' : 'must be 16 bytes as 32 hex digits');
        else keys[field] = Buffer.from(text, 'hex');
        continue;
      }
      if (!/^[0-9a-fA-F]{48}$/.test(text)) {
        bad(field, /^[0-9a-fA-F]{32}$/.test(text) ? 'is a plain key, but the file is imported as wrapped: a wrapped key is 24 bytes (48 hex digits)' : 'must be a wrapped key: 24 bytes as 48 hex digits (RFC 3394)');
        continue;
      }
      const key = unwrapKey(Buffer.from(text, 'hex'), transportKey);
      if (!key || key.length !== 16) bad(field, 'does not unwrap under the transport key (a wrong transport key, or the value was altered)');
      else keys[field] = key;
    }
    if (problems.length === before && meterId !== undefined && systemTitle && keys.encryptionKey && keys.authenticationKey) {
      rows.push({
        row,
        meterId,
        keys: { encryptionKey: keys.encryptionKey, authenticationKey: keys.authenticationKey, serverSystemTitle: systemTitle, ...(keys.masterKey ? { masterKey: keys.masterKey } : {}) },
      });
    }
  });
  if (problems.length > 0) {
    for (const r of rows) for (const k of [r.keys.encryptionKey, r.keys.authenticationKey, r.keys.masterKey]) k?.fill(0);
    const first = problems[0]!;
    throw new MeterlineError(
      'E_KEY_FILE_INVALID',
      `${new Set(problems.map((p) => p.row)).size} row(s) of the key file are invalid; nothing was imported. First: row ${first.row}, ${first.field}: ${first.problem}`,
      { errors: problems.slice(0, 500) },
    );
  }
  return rows;
}
