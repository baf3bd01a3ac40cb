import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load-config.js';
import { SqliteStore } from '../store/sqlite-store.js';

/**
 * `npm run audit:verify [-- --db <file>]`: check the audit log's hash chain. Exit 0 when every entry verifies;
 * exit 3 naming the first entry that was changed, inserted or removed. The database defaults to the configured one.
 */
async function main(): Promise<void> {
  const { values } = parseArgs({ options: { db: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) {
    process.stdout.write('usage: audit-verify [--db <sqlite file>]\n');
    return;
  }
  const path = values.db ?? resolve(loadConfig().store.sqlite.path);
  const store = new SqliteStore(path);
  await store.migrate();
  const result = await store.verifyAudit();
  await store.close();
  if (result.ok) {
    process.stdout.write(`audit log ${path}: ${result.entries} entries, chain intact (last hash ${result.lastHash})\n`);
    return;
  }
  process.stdout.write(`audit log ${path}: TAMPERED at entry ${result.badSeq}: ${result.problem} (${result.entries} entries read)\n`);
  process.exitCode = 3;
}

main().catch((err: unknown) => {
  process.stderr.write(`audit-verify: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
