import type { GatewayStore, KeySetPutOutcome } from '../store/store.js';
import { keySetIdFor, noMasterKey, sealKeySet, type MasterKey } from './key-envelope.js';
import { parseKeyFile, transportKeyFromEnv, type KeyFileFormat } from './key-file.js';

/**
 * Importing a manufacturer's key file (issue 15 item 3), for the API and so the CLI: refused without a key master
 * (E_NO_MASTER_KEY); the file checked whole (key-file.ts); each meter's keys sealed under the master with a fresh
 * data key (key-envelope.ts); then all stored in one transaction, or none. The answer and the audit name meters and
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

export interface KeyImportResult {
  imported: number;
  created: number;
  unchanged: number;
  replaced: number;
  keySets: KeySetPutOutcome[];
}

export async function importKeyFile(store: Pick<GatewayStore, 'putMeterKeySets'>, master: MasterKey | undefined, req: KeyImportRequest, env: NodeJS.ProcessEnv = process.env): Promise<KeyImportResult> {
  if (!master) throw noMasterKey();
  const transportKey = req.wrappedWithEnv === undefined ? undefined : transportKeyFromEnv(req.wrappedWithEnv, env);
  const rows = parseKeyFile(req.text, req.format, transportKey);
  transportKey?.fill(0);
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
