import { existsSync, readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import pg from 'pg';
import { GENESIS_HASH } from '../../src/store/audit-chain.js';
import { numbered } from '../../src/store/store-rows.js';

/**
 * Someone with write access to a gateway's database (but not to its audit key), with a database client of their
 * own: what the audit tests play, on the SQLite file or the PostgreSQL schema.
 */
export type DatabaseLocation = { sqlite: string } | { postgres: { url: string; schema: string } };

export interface DatabaseHands {
  /** Plain SQL (`?` placeholders) on a connection of their own; rows as the driver returns them. */
  sql(text: string, args?: readonly unknown[]): Promise<Record<string, unknown>[]>;
  /** Drop what keeps the audit tables append-only and their links required (triggers; NOT NULL columns). */
  dropAuditGuards(): Promise<void>;
  /** The audit entries, as the fields a link covers. */
  auditRows(): Promise<{ seq: number; at: number; actor: string; action: string; target: string; details: string | null }[]>;
  /** Rewrite every link from entry 1 with `link`: what someone without the key can compute. */
  relink(link: (prev: string, e: { seq: number; at: number; actor: string; action: string; target: string; details: string | null }) => string): Promise<void>;
  /** Everything the database holds, as text (SQLite: the file and its WAL; PostgreSQL: every row of the schema). */
  dump(): Promise<string>;
}

export function databaseHands(where: DatabaseLocation): DatabaseHands {
  const sql: DatabaseHands['sql'] =
    'sqlite' in where
      ? async (text, args = []) => {
          const db = new Database(where.sqlite);
          try {
            const stmt = db.prepare(text);
            if (stmt.reader) return stmt.all(...args) as Record<string, unknown>[];
            stmt.run(...args);
            return [];
          } finally {
            db.close();
          }
        }
      : async (text, args = []) => {
          const client = new pg.Client({ connectionString: where.postgres.url });
          await client.connect();
          try {
            await client.query(`SET search_path TO ${where.postgres.schema}`);
            return (await client.query(numbered(text), [...args])).rows as Record<string, unknown>[];
          } finally {
            await client.end();
          }
        };
  const hands: DatabaseHands = {
    sql,
    async dropAuditGuards() {
      if ('sqlite' in where) {
        const triggers = await sql(`SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ('audit', 'audit_keying')`);
        for (const t of triggers) await sql(`DROP TRIGGER ${String(t.name)}`);
        return;
      }
      for (const table of ['audit', 'audit_keying']) {
        const triggers = await sql(`SELECT tgname FROM pg_trigger WHERE tgrelid = '${table}'::regclass AND NOT tgisinternal`);
        for (const t of triggers) await sql(`DROP TRIGGER ${String(t.tgname)} ON ${table}`);
      }
      await sql('ALTER TABLE audit ALTER COLUMN hash DROP NOT NULL, ALTER COLUMN prev_hash DROP NOT NULL');
    },
    async auditRows() {
      return (await sql('SELECT * FROM audit ORDER BY seq')).map((r) => ({
        seq: Number(r.seq),
        at: Number(r.at),
        actor: String(r.actor),
        action: String(r.action),
        target: String(r.target),
        details: r.details === null ? null : String(r.details),
      }));
    },
    async relink(link) {
      let prev = GENESIS_HASH;
      for (const e of await hands.auditRows()) {
        const hash = link(prev, e);
        await sql('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?', [prev, hash, e.seq]);
        prev = hash;
      }
    },
    async dump() {
      if ('sqlite' in where) {
        return [where.sqlite, `${where.sqlite}-wal`].filter((f) => existsSync(f)).map((f) => readFileSync(f).toString('latin1')).join('');
      }
      const tables = await sql('SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()');
      const parts: string[] = [];
      for (const t of tables) for (const r of await sql(`SELECT t::text AS row FROM ${String(t.table_name)} t`)) parts.push(String(r.row));
      return parts.join('\n');
    },
  };
  return hands;
}
