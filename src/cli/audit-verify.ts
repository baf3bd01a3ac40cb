import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load-config.js';
import { PostgresStore } from '../store/postgres-store.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { GatewayStore } from '../store/store.js';

/**
 * `npm run audit:verify [-- --db <sqlite file>]`: check the audit log's hash chain. Exit 0 when every entry
 * verifies; exit 3 naming the first entry that was changed, inserted or removed. Without --db the configured store
 * is checked (SQLite file, or PostgreSQL when DATABASE_URL / store.kind says so).
 */
async function main(): Promise<void> {
  const { values } = parseArgs({ options: { db: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) {
    process.stdout.write('usage: audit-verify [--db <sqlite file>]   (PostgreSQL: set DATABASE_URL)\n');
    return;
  }
  let store: GatewayStore;
  let where: string;
  const config = values.db ? undefined : loadConfig();
  if (config?.store.kind === 'postgres' && config.store.postgres) {
    const pg = config.store.postgres;
    store = new PostgresStore({ connectionString: pg.url, maxConnections: 2, ...(pg.schema ? { schema: pg.schema } : {}) });
    where = `PostgreSQL${pg.schema ? ` schema ${pg.schema}` : ''}`;
  } else {
    where = values.db ?? resolve(config!.store.sqlite.path);
    store = new SqliteStore(where);
  }
  await store.migrate();
  const result = await store.verifyAudit();
  await store.close();
  if (result.ok) {
    process.stdout.write(`audit log ${where}: ${result.entries} entries, chain intact (last hash ${result.lastHash})\n`);
    return;
  }
  process.stdout.write(`audit log ${where}: TAMPERED at entry ${result.badSeq}: ${result.problem} (${result.entries} entries read)\n`);
  process.exitCode = 3;
}

main().catch((err: unknown) => {
  process.stderr.write(`audit-verify: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
