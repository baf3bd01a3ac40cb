import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../config/config-schema.js';
import { gatewayAuditKeySource } from '../config/audit-files.js';
import { SqliteWorkerStore } from '../store/sqlite-worker-store.js';
import type { StatementCounter } from '../store/statement-counter.js';

/**
 * The SQLite journal's worker thread started ahead of the gateway (main.ts starts it before loading the rest of the
 * program, so the thread loads its modules and opens the file on the second core meanwhile: issue 19, recovery time).
 * It only opens the file, as ownStore() would first: ownership is claimed, and the file migrated, in ownStore(), which
 * takes it over. The audit key's "made" warning waits for the gateway's logger.
 */
export interface EarlyJournal {
  readonly path: string;
  readonly store: SqliteWorkerStore;
  /** The gateway's logger, for the warnings held until now (and from now on). */
  useLogger(logger: Logger): void;
}

/** Start the journal's worker now, if the configuration runs one (SQLite on its thread); else undefined. */
export function startJournalEarly(config: GatewayConfig, countStatements?: StatementCounter): EarlyJournal | undefined {
  if (config.store.kind === 'postgres' || (config.store.sqlite.thread ?? 'worker') !== 'worker') return undefined;
  let logger: Logger | undefined;
  const held: [string, string][] = [];
  const auditKey = gatewayAuditKeySource(config, process.env, (file, keyId) => (logger ? auditKeyMade(logger, file, keyId) : held.push([file, keyId])));
  const path = resolve(config.store.sqlite.path);
  const store = new SqliteWorkerStore(path, { auditKey, ...(countStatements ? { countStatements } : {}) });
  // A start that fails before ownStore() takes it over sees the failure there; until then it must not be unhandled.
  store.ready().catch(() => undefined);
  return {
    path,
    store,
    useLogger(l) {
      logger = l;
      for (const [file, keyId] of held.splice(0)) auditKeyMade(l, file, keyId);
    },
  };
}

export function auditKeyMade(logger: Logger, file: string, keyId: string): void {
  logger.warn({ file, keyId }, 'audit key made (the audit log is keyed with it from now on): keep a copy away from the database and its backups; without it the log cannot be verified');
}
