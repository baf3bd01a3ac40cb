import type { FirmwareProfile } from '../domain/firmware-profile.js';
import { MeterlineError } from '../errors.js';
import type { GatewayStore, KeySetPutOutcome } from '../store/store.js';
import { keySetIdFor, noMasterKey, sealKeySet, type MasterKey } from './key-envelope.js';
import { parseKeyFile, transportKeyFromEnv, type KeyFileFormat, type KeyFileProblem, type KeyFileRow } from './key-file.js';

/**
 * Importing a manufacturer's key file (issue 15 item 3), for the API and so the CLI: refused without a key master
 * (E_NO_MASTER_KEY); the file checked whole (key-file.ts); each meter's keys sealed under the master with a fresh
 * data key (key-envelope.ts); then all stored in one transaction, or none. A row for a registered meter must hold every
 * key its DLMS profile names (`dlms.keys`: GUEK, GAK, KEK) or the file is refused (E_KEY_FILE_INVALID naming the row
 * and the field); rows for meters not registered yet are taken as they are. The answer and the audit name meters and
 * key set ids only.
 */

export interface KeyImportRequest {
  text: string;
  format: KeyFileFormat;
  /** The environment variable (or `<name>_FILE`) holding the transport key the keys are wrapped with; absent: plain keys. */
  wrappedWithEnv?: string | undefined;
  /** Replace the keys of meters that have other keys (their current and pending key sets are retired). */
  replace: boolean;
  actor: string;
  now: number;
}

/** What the import needs to check rows against the registered meters' profiles. */
export interface KeyImportProfiles {
  store: Pick<GatewayStore, 'existingMeterIds' | 'getMeter'>;
  profiles: ReadonlyMap<string, FirmwareProfile>;
}

const COLUMN = {
  GUEK: { field: 'encryptionKey', column: 'GUEK (encryption key)' },
  GAK: { field: 'authenticationKey', column: 'GAK (authentication key)' },
  KEK: { field: 'masterKey', column: 'KEK (master key)' },
} as const;

/** Rows lacking a key the registered meter's profile names; unknown meters and profiles without `keys` pass. */
export async function rowsMissingProfileKeys(rows: readonly KeyFileRow[], check: KeyImportProfiles): Promise<KeyFileProblem[]> {
  const registered = await check.store.existingMeterIds(rows.map((r) => r.meterId));
  const problems: KeyFileProblem[] = [];
  for (const r of rows) {
    if (!registered.has(r.meterId)) continue;
    const meter = await check.store.getMeter(r.meterId);
    const profile = meter ? check.profiles.get(meter.profileId) : undefined;
    if (profile?.protocol !== 'dlms') continue;
    for (const name of profile.dlms.keys ?? []) {
      const { field, column } = COLUMN[name];
      if (!r.keys[field]?.length) problems.push({ row: r.row, field, problem: `missing: meter ${r.meterId} is registered with profile ${profile.id}, which needs ${column}` });
    }
  }
  return problems;
}

export interface KeyImportResult {
  imported: number;
  created: number;
  unchanged: number;
  replaced: number;
  keySets: KeySetPutOutcome[];
}

export async function importKeyFile(
  store: Pick<GatewayStore, 'putMeterKeySets'>,
  master: MasterKey | undefined,
  req: KeyImportRequest,
  env: NodeJS.ProcessEnv = process.env,
  profileCheck?: KeyImportProfiles,
): Promise<KeyImportResult> {
  if (!master) throw noMasterKey();
  const transportKey = req.wrappedWithEnv === undefined ? undefined : transportKeyFromEnv(req.wrappedWithEnv, env);
  const rows = parseKeyFile(req.text, req.format, transportKey);
  transportKey?.fill(0);
  const problems = profileCheck ? await rowsMissingProfileKeys(rows, profileCheck) : [];
  if (problems.length > 0) {
    for (const r of rows) for (const k of [r.keys.encryptionKey, r.keys.authenticationKey, r.keys.masterKey]) k?.fill(0);
    const first = problems[0]!;
    throw new MeterlineError(
      'E_KEY_FILE_INVALID',
      `${new Set(problems.map((p) => p.row)).size} row(s) of the key file lack a key their meter's profile needs; nothing was imported. First: row ${first.row}, ${first.field}: ${first.problem}`,
      { errors: problems.slice(0, 500) },
    );
  }
  const sets = rows.map((r) => {
    const keySetId = keySetIdFor(master, r.meterId, r.keys);
    const sealed = sealKeySet(master, r.meterId, keySetId, r.keys);
    for (const k of [r.keys.encryptionKey, r.keys.authenticationKey, r.keys.masterKey]) k?.fill(0);
    return { meterId: r.meterId, keySetId, sealed, systemTitle: r.keys.serverSystemTitle ? r.keys.serverSystemTitle.toString('hex') : null };
  });
  const keySets = await store.putMeterKeySets(sets, { replace: req.replace }, req.actor, req.now);
  const count = (result: KeySetPutOutcome['result']) => keySets.filter((k) => k.result === result).length;
  return { imported: keySets.length, created: count('created'), unchanged: count('unchanged'), replaced: count('replaced'), keySets };
}
