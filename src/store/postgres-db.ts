import type pg from 'pg';

/**
 * The PostgreSQL store's plumbing: a small query helper bound to one client (a transaction) or to the pool
 * (single-statement reads), and the row mappers not shared with the SQLite store.
 */
export type { Row } from './store-rows.js';
export { attemptFromRow, breakerFromRow, meterFromRow, notificationFromRow } from './store-rows.js';
import type { Row } from './store-rows.js';

interface Queryable {
  query(text: string, values?: unknown[]): Promise<pg.QueryResult>;
}

export class Q {
  /** Whether this transaction already holds the audit lock (taken once, held to commit). */
  auditLocked = false;

  constructor(private readonly c: Queryable) {}

  async all(sql: string, args: readonly unknown[] = []): Promise<Row[]> {
    return (await this.c.query(sql, args as unknown[])).rows as Row[];
  }

  async get(sql: string, args: readonly unknown[] = []): Promise<Row | undefined> {
    return (await this.all(sql, args))[0];
  }

  /** Run a change; returns the number of rows it touched. */
  async run(sql: string, args: readonly unknown[] = []): Promise<number> {
    return (await this.c.query(sql, args as unknown[])).rowCount ?? 0;
  }
}





