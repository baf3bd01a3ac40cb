import { createHash } from 'node:crypto';
import type pg from 'pg';

/**
 * The PostgreSQL store's plumbing: a small query helper bound to one client (a transaction) or to the pool
 * (single-statement reads), and the row mappers not shared with the SQLite store.
 */
export type { Row } from './store-rows.js';
export { attemptFromRow, breakerFromRow, meterFromRow, notificationFromRow } from './store-rows.js';
import type { Row } from './store-rows.js';

interface Queryable {
  query(text: string | pg.QueryConfig, values?: unknown[]): Promise<pg.QueryResult>;
}

export class Q {
  /** Whether this transaction already holds the audit lock (taken once, held to commit). */
  auditLocked = false;

  constructor(private readonly c: Queryable) {}

  async all(sql: string, args: readonly unknown[] = []): Promise<Row[]> {
    return (await this.query(sql, args)).rows as Row[];
  }

  async get(sql: string, args: readonly unknown[] = []): Promise<Row | undefined> {
    return (await this.all(sql, args))[0];
  }

  /** Run a change; returns the number of rows it touched. */
  async run(sql: string, args: readonly unknown[] = []): Promise<number> {
    return (await this.query(sql, args)).rowCount ?? 0;
  }

  /**
   * A statement with parameters goes as a named prepared statement: each connection parses and plans it once and
   * then only binds and executes it (the server's CPU per statement roughly halves). Statements without
   * parameters (migrations: several statements in one text) go as plain queries.
   */
  private query(sql: string, args: readonly unknown[]): Promise<pg.QueryResult> {
    if (args.length === 0) return this.c.query(sql);
    return this.c.query({ name: statementName(sql), text: sql, values: args as unknown[] });
  }
}

const names = new Map<string, string>();

/** A stable name per statement text (the same on every connection). */
function statementName(sql: string): string {
  let name = names.get(sql);
  if (name === undefined) {
    name = `ml_${createHash('sha1').update(sql).digest('hex').slice(0, 20)}`;
    names.set(sql, name);
  }
  return name;
}





