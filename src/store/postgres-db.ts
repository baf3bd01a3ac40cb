import { createHash } from 'node:crypto';
import type pg from 'pg';

/**
 * The PostgreSQL store's plumbing: a small query helper bound to one client (a transaction) or to the pool
 * (single-statement reads), and the row mappers not shared with the SQLite store.
 */
export type { Row } from './store-rows.js';
export { attemptFromRow, breakerFromRow, meterFromRow, notificationFromRow } from './store-rows.js';
import type { Row } from './store-rows.js';
import type { AuditKey } from './audit-chain.js';
import { withArrayLiterals } from './postgres-arrays.js';

interface Queryable {
  query(text: string | pg.QueryConfig, values?: unknown[]): Promise<pg.QueryResult>;
}

/**
 * Whether a store's statements go as named prepared statements. Shared by all of a store's connections; turned off
 * for good when PostgreSQL reports that a prepared statement's row type changed under it (another instance migrated
 * the schema: a newer release added a column), after which every statement is parsed afresh, as before preparing.
 */
export class StatementMode {
  prepared = true;
}

/** PostgreSQL's answer to a prepared statement whose result row type changed (a column added under it). */
export function isCachedPlanChange(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  return e.code === '0A000' && /cached plan must not change result type/.test(e.message ?? '');
}

/** Rows read as arrays (Q.allArrays): the values in column order, and the columns. */
export interface ArrayRows {
  rows: unknown[][];
  fields: readonly { name: string }[];
}

/** A statement and its arguments. */
export type FinalStatement = readonly [sql: string, args: readonly unknown[]];

export class Q {
  /** Whether this transaction already holds the audit lock (taken once, held to commit). */
  auditLocked = false;
  /** The key audit entries are linked with (the store's, once migrate() has loaded it). */
  auditKey: AuditKey | undefined;
  /** Statements this transaction sends last, just before COMMIT (see `atCommit`). */
  private readonly finalStatements: (() => FinalStatement)[] = [];

  /**
   * `autocommit`: each statement is its own transaction (the pool), so a failed one can simply run again.
   * `availability` (autocommit only; a transaction reports through the store's `tx`): statements that fail because
   * the server cannot take them turn into E_STORE_UNAVAILABLE, and changes that commit say the server takes writes.
   */
  constructor(
    private readonly c: Queryable,
    private readonly mode: StatementMode = new StatementMode(),
    private readonly autocommit = false,
    private readonly availability?: { failed(err: unknown): unknown; succeeded(): void },
  ) {}

  async all(sql: string, args: readonly unknown[] = []): Promise<Row[]> {
    return (await this.query(sql, args)).rows as Row[];
  }

  /**
   * A read planned afresh each time (an unnamed statement, never a cached generic plan): for a statement whose best
   * plan depends on how many rows the tables hold right now. A generic plan made while the tables were nearly empty
   * (a fresh schema) can stay in use as they fill, e.g. a nested loop that reads a whole table per row.
   */
  async allPlanned(sql: string, args: readonly unknown[]): Promise<Row[]> {
    const values = withArrayLiterals(args) as unknown[];
    const run = (): Promise<pg.QueryResult> => this.c.query(sql, values);
    if (!this.availability) return (await run()).rows as Row[];
    try {
      return (await run()).rows as Row[];
    } catch (error) {
      throw this.availability.failed(error);
    }
  }

  /**
   * Rows as arrays of values in the statement's column order, with the columns' names: for wide rows read often,
   * which pg builds as objects at several times the cost (a keyed store per column); see postgres-order-rows.ts.
   */
  async allArrays(sql: string, args: readonly unknown[]): Promise<ArrayRows> {
    const r = await this.query(sql, args, 'array');
    return { rows: r.rows as unknown as unknown[][], fields: r.fields };
  }

  async get(sql: string, args: readonly unknown[] = []): Promise<Row | undefined> {
    return (await this.all(sql, args))[0];
  }

  /**
   * Send a statement last, after the rest of the transaction, in one message with its COMMIT (the store's `tx`
   * does): for writes that take a lock others wait on until COMMIT, so it is held as briefly as possible (one round
   * trip, no turn of the event loop in between). `build` runs at commit time, so it can gather what the
   * transaction collected. Only in a transaction.
   */
  atCommit(build: () => FinalStatement): void {
    if (this.autocommit) throw new Error('Q.atCommit: not in a transaction (each statement on the pool commits alone)');
    this.finalStatements.push(build);
  }

  /**
   * Send the statements `atCommit` deferred, in the order they were given, without waiting for their answers; the
   * store's `tx` sends COMMIT right behind them. Each answer settles its promise (a failed one aborts the
   * transaction, so the COMMIT behind it rolls back).
   */
  sendFinalStatements(): Promise<number>[] {
    const sent: Promise<number>[] = [];
    for (let build = this.finalStatements.shift(); build; build = this.finalStatements.shift()) {
      const [sql, args] = build();
      sent.push(this.run(sql, args));
    }
    return sent;
  }

  /** Run a change; returns the number of rows it touched. */
  async run(sql: string, args: readonly unknown[] = []): Promise<number> {
    const changed = (await this.query(sql, args)).rowCount ?? 0;
    this.availability?.succeeded();
    return changed;
  }

  /**
   * A statement with parameters goes as a named prepared statement: each connection parses and plans it once and
   * then only binds and executes it (the server's CPU per statement roughly halves). Statements without
   * parameters (migrations: several statements in one text) go as plain queries.
   */
  private async query(sql: string, args: readonly unknown[], rowMode?: 'array'): Promise<pg.QueryResult> {
    if (!this.availability) return this.send(sql, args, rowMode);
    try {
      return await this.send(sql, args, rowMode);
    } catch (error) {
      throw this.availability.failed(error);
    }
  }

  private async send(sql: string, given: readonly unknown[], rowMode?: 'array'): Promise<pg.QueryResult> {
    const asArrays = rowMode ? { rowMode } : {};
    if (given.length === 0) return rowMode ? this.c.query({ text: sql, ...asArrays }) : this.c.query(sql);
    // Array parameters as literals written here, the same text pg would write, for less of the main thread (postgres-arrays.ts).
    const args = withArrayLiterals(given) as unknown[];
    if (!this.mode.prepared) return this.c.query({ text: sql, values: args, ...asArrays });
    try {
      return await this.c.query({ name: statementName(sql), text: sql, values: args, ...asArrays });
    } catch (error) {
      if (!isCachedPlanChange(error)) throw error;
      this.mode.prepared = false;
      // A transaction is aborted by the error: the store runs it again (see retryable); a lone statement runs again here.
      if (!this.autocommit) throw error;
      return this.c.query({ text: sql, values: args, ...asArrays });
    }
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






type Waiter<V> = { resolve: (value: V) => void; reject: (error: unknown) => void };

/**
 * Reads by key asked for in one turn of the event loop, answered by one statement for all of them (the control
 * loop asks for many meters at once: one round trip instead of one each). Each waiter gets its own view of the row
 * (`view` runs per waiter, so no two callers share a mutable object). A read asked after a write the caller awaited
 * still runs after that write, so it sees it. Keys go at most 1,000 per statement.
 */
export class TurnBatch<R, V> {
  private waiting = new Map<string, Waiter<V>[]>();
  private scheduled = false;

  constructor(
    private readonly run: (keys: string[]) => Promise<Map<string, R>>,
    private readonly view: (row: R | undefined) => V,
  ) {}

  get(key: string): Promise<V> {
    return new Promise<V>((resolve, reject) => {
      const list = this.waiting.get(key);
      if (list) list.push({ resolve, reject });
      else this.waiting.set(key, [{ resolve, reject }]);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const waiting = this.waiting;
    this.waiting = new Map();
    const keys = [...waiting.keys()];
    for (let i = 0; i < keys.length; i += 1000) {
      const chunk = keys.slice(i, i + 1000);
      this.run(chunk).then(
        (found) => {
          for (const key of chunk) {
            for (const w of waiting.get(key)!) {
              try {
                w.resolve(this.view(found.get(key)));
              } catch (error) {
                w.reject(error);
              }
            }
          }
        },
        (error: unknown) => {
          for (const key of chunk) for (const w of waiting.get(key)!) w.reject(error);
        },
      );
    }
  }
}
