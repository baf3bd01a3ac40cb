import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { auditKeyFile } from '../config/audit-files.js';
import { ConfigError, loadConfig } from '../config/load-config.js';
import { MeterlineError } from '../errors.js';
import { readAuditAnchors } from '../integrations/audit-anchors.js';
import type { AuditAnchor } from '../store/audit-chain.js';
import { AUDIT_KEY_ENV, auditKeySource } from '../store/audit-key-source.js';
import { PostgresStore } from '../store/postgres-store.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { GatewayStore } from '../store/store.js';

const USAGE = `usage: audit-verify [--db <sqlite file>] [--key-file <file>] [--anchor <anchor file>]...

Checks the audit log's chain: every entry's link under the audit key (an entry changed, inserted, removed or
recomputed is named), and with --anchor, that the log still reaches every anchor in the file with the anchor's
head (a cut-off tail is named; without an anchor it cannot be seen).

  --db <file>        the SQLite database (default: the configured store; PostgreSQL: set DATABASE_URL and,
                     for a schema, METERLINE__STORE__POSTGRES__SCHEMA)
  --key-file <file>  the audit key (default: ${AUDIT_KEY_ENV} when set, else audit.keyFile, else audit.key
                     beside the SQLite file); never in the database, never made by this command
  --anchor <file>    anchors the gateway wrote (audit.anchorFile, or "audit anchor" log lines' auditAnchor
                     objects, one JSON object a line); may be given more than once

exit codes: 0 intact, 3 tampered, 4 audit key missing, malformed or not this log's, 2 usage or an anchor file
that cannot be read, 1 anything else (database unreachable)
`;

/** Exit codes: what a script around the command branches on. */
const EXIT = { intact: 0, other: 1, usage: 2, tampered: 3, key: 4 } as const;

class Usage extends Error {}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ options: { db: { type: 'string' }, 'key-file': { type: 'string' }, anchor: { type: 'string', multiple: true }, help: { type: 'boolean' } } }));
  } catch (e) {
    throw new Usage((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.intact;
  }
  const anchors: AuditAnchor[] = (values.anchor ?? []).flatMap((file) => readAuditAnchors(resolve(file)));

  let store: GatewayStore;
  let where: string;
  const config = values.db ? undefined : loadConfig();
  // --key-file, else METERLINE_AUDIT_KEY, else the configured key file, else audit.key beside the SQLite file. Never
  // makes a key: a log is keyed by the gateway's first start, and a missing key is an answer in itself.
  const keyFile = values['key-file'] ? resolve(values['key-file']) : config ? auditKeyFile(config) : join(dirname(resolve(values.db!)), 'audit.key');
  const auditKey = auditKeySource({ envKey: values['key-file'] ? undefined : process.env[AUDIT_KEY_ENV], file: keyFile, mayCreate: false });
  if (config?.store.kind === 'postgres' && config.store.postgres) {
    const pg = config.store.postgres;
    store = new PostgresStore({ connectionString: pg.url, maxConnections: 2, auditKey, ...(pg.schema ? { schema: pg.schema } : {}) });
    where = `PostgreSQL${pg.schema ? ` schema ${pg.schema}` : ''}`;
  } else {
    where = values.db ? resolve(values.db) : resolve(config!.store.sqlite.path);
    if (!existsSync(where)) throw new Usage(`no SQLite database at ${where}`);
    store = new SqliteStore(where, { auditKey });
  }
  try {
    await store.migrate();
    const result = await store.verifyAudit({ anchors });
    if (result.ok) {
      const anchored = anchors.length > 0 ? `, reaches all ${anchors.length} anchors` : ' (no anchors given: a cut-off tail would not show)';
      process.stdout.write(`audit log ${where}: ${result.entries} entries, chain intact${anchored} (key id ${result.keyId}, keyed from entry ${result.keyedFrom}, last hash ${result.lastHash})\n`);
      return EXIT.intact;
    }
    process.stdout.write(`audit log ${where}: TAMPERED${result.badSeq !== undefined ? ` at entry ${result.badSeq}` : ''}: ${result.problem} (${result.entries} entries read)\n`);
    return EXIT.tampered;
  } catch (err) {
    // The log names another key than the one given. Anchors taken under the key given settle which is wrong.
    if (err instanceof MeterlineError && err.code === 'E_AUDIT_KEY_MISMATCH') {
      const { keyId } = err.details as { logKeyId: string; keyId: string };
      const mine = anchors.find((a) => a.keyId === keyId);
      if (mine) {
        process.stdout.write(`audit log ${where}: TAMPERED: the database says the chain is keyed with another key, but the anchor taken at ${mine.at} was taken under this key (id ${keyId}): the chain was recomputed under another key\n`);
        return EXIT.tampered;
      }
    }
    throw err;
  } finally {
    await store.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const keyProblem = err instanceof MeterlineError && (err.code === 'E_AUDIT_KEY_MISSING' || err.code === 'E_AUDIT_KEY_INVALID' || err.code === 'E_AUDIT_KEY_MISMATCH');
    const usage = err instanceof Usage || err instanceof ConfigError || (err instanceof MeterlineError && err.code === 'E_AUDIT_ANCHORS_INVALID');
    const code = err instanceof MeterlineError ? `${err.code}: ` : '';
    process.stderr.write(`audit-verify: ${code}${err instanceof Error ? err.message : String(err)}\n`);
    if (err instanceof Usage) process.stderr.write('(audit-verify --help for usage)\n');
    process.exitCode = keyProblem ? EXIT.key : usage ? EXIT.usage : EXIT.other;
  },
);
