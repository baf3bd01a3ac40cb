import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { PlannedMeter } from '../../simulators/fleet-plan.js';
import type { Clock } from '../control/clock.js';
import type { GatewayConfig } from '../config/config-schema.js';
import { auditAnchorFile, gatewayAuditKeySource } from '../config/audit-files.js';
import { AuditAnchors } from '../integrations/audit-anchors.js';
import { SqliteFileOwnership } from '../store/sqlite-file-owner.js';
import { SqliteStore } from '../store/sqlite-store.js';
import { SqliteWorkerStore } from '../store/sqlite-worker-store.js';
import type { StatementCounter } from '../store/statement-counter.js';
import type { GatewayStore } from '../store/store.js';
import type { StopList } from './stop-list.js';
import { auditKeyMade, type EarlyJournal } from './own-store-early.js';

export type { EarlyJournal } from './own-store-early.js';

/**
 * Open the store and own it before anything else: a SQLite file is this gateway's alone (a second gateway on it
 * refuses to start, E_STORE_IN_USE, before migrating or writing anything); PostgreSQL is shared by design (orders
 * are leased row by row). Then migrate and register the seeded fleet. `anchors` anchors the audit chain outside it.
 * `countStatements`: count the store's statements into it (the bench); off by default.
 */
export async function ownStore(
  config: GatewayConfig,
  planned: readonly PlannedMeter[],
  clock: Clock,
  stops: StopList,
  logger: Logger,
  countStatements?: StatementCounter,
  early?: EarlyJournal,
): Promise<{ store: GatewayStore; anchors: AuditAnchors }> {
  const pg = config.store.postgres;
  if (config.store.kind === 'postgres' && !pg) throw new Error('store.kind is postgres but store.postgres is not set (set DATABASE_URL or store.postgres.url)');
  // For a store opened here: the journal started early (own-store-early.ts) came with its own key source.
  const storeOptions = () => ({
    auditKey: gatewayAuditKeySource(config, process.env, (file, keyId) => auditKeyMade(logger, file, keyId)),
    ...(countStatements ? { countStatements } : {}),
  });
  let store: GatewayStore;
  if (config.store.kind === 'postgres' && pg) {
    // Loaded only for a PostgreSQL store (pg and its store, ~3 MiB of the main thread's heap otherwise; issue 19).
    const { PostgresStore } = await import('../store/postgres-store.js');
    store = new PostgresStore({ connectionString: pg.url, maxConnections: pg.maxConnections, ...(pg.schema ? { schema: pg.schema } : {}), ...storeOptions() });
    stops.add(() => store.close());
  } else {
    const path = resolve(config.store.sqlite.path);
    // Opening says why it cannot (E_STORE_OPEN: a directory, permission denied, a read-only file system). By default
    // the journal runs on a thread of its own (store.sqlite.thread); the file's ownership is claimed here, on the main thread.
    let sqlite: GatewayStore;
    if ((config.store.sqlite.thread ?? 'worker') === 'worker') {
      // The worker main.ts started early for this file (it only opened it), else one started now.
      const onWorker = early?.path === path ? early.store : new SqliteWorkerStore(path, storeOptions());
      if (onWorker === early?.store) early.useLogger(logger);
      // Its thread's deaths and restarts (it is started again on the file; this thread keeps owning the file meanwhile).
      onWorker.setLogger(logger.child({ component: 'store' }));
      try {
        await onWorker.ready();
      } catch (err) {
        await onWorker.close().catch(() => undefined);
        throw err;
      }
      sqlite = onWorker;
    } else sqlite = new SqliteStore(path, storeOptions());
    let owner: SqliteFileOwnership;
    try {
      owner = SqliteFileOwnership.claim(path, config.instanceId);
    } catch (err) {
      await sqlite.close();
      throw err;
    }
    logger.info({ path, lock: owner.lockPath }, 'this gateway owns the SQLite file');
    stops.add(() => owner.release());
    stops.add(() => sqlite.close());
    store = sqlite;
  }
  await store.migrate();
  const anchors = await startAuditAnchors(config, store, clock, logger);
  stops.add(() => anchors.stop());
  if (planned.length > 0) await store.upsertMeters(planned, clock.now());
  return { store, anchors };
}

/** Anchor the audit chain outside the database now, every `audit.anchorEveryMs`, and at stop (just before the store closes). */
async function startAuditAnchors(config: GatewayConfig, store: GatewayStore, clock: Clock, logger: Logger): Promise<AuditAnchors> {
  const head = await store.auditHead();
  const file = auditAnchorFile(config);
  logger.info({ auditKeyId: head.keyId, entries: head.entries, anchorFile: file }, 'audit chain keyed; anchoring its head outside the database');
  const anchors = new AuditAnchors({
    head: () => store.auditHead(),
    file,
    logger: config.audit.anchorLog ? logger.child({ component: 'audit' }) : null,
    errors: logger.child({ component: 'audit' }),
    everyMs: config.audit.anchorEveryMs,
    instance: config.instanceId,
    clock,
  });
  await anchors.start();
  return anchors;
}
