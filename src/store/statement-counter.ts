import type Database from 'better-sqlite3';
import type pg from 'pg';

/**
 * An opt-in count of the statements a store runs (issue 19: statements per order in the bench). A store given one
 * wraps its connection once, at open; a store without one runs untouched, so counting costs nothing when off.
 * Statements are counted by a label, their text with whitespace collapsed and cut short, which is enough to tell
 * them apart. On SQLite each statement's time is measured too (statements run synchronously on the calling thread,
 * so that is the main thread's time in them). `roundTrips` counts PostgreSQL's network round trips: a query sent
 * while its connection has no other query waiting for an answer starts one; a query sent behind another (the store's
 * connections pipeline, e.g. BEGIN with a transaction's first statement) shares it. It stays 0 for SQLite, and
 * PostgreSQL's statements are not timed (their time is the server's, spent while the thread does other work).
 */
interface Cell {
  /** Runs. */
  n: number;
  /** µs spent in them (SQLite only). */
  us: number;
}

export class StatementCounter {
  private readonly cells = new Map<string, Cell>();
  /** Each statement text's cell, so that a text seen again is not labelled again. */
  private readonly byText = new Map<string, Cell>();
  roundTrips = 0;
  /**
   * Set by a store whose statements run on another thread (sqlite-worker-store.ts), where the counts live: reset()
   * is passed on to it, and pull() brings its counts here (call it before snapshot()).
   */
  remote: { reset(): void; pull(): Promise<void> } | undefined;

  /** The cell a statement's runs are counted in (one per label). */
  cell(sql: string): Cell {
    let cell = this.byText.get(sql);
    if (cell) return cell;
    const label = statementLabel(sql);
    cell = this.cells.get(label);
    if (!cell) {
      cell = { n: 0, us: 0 };
      this.cells.set(label, cell);
    }
    this.byText.set(sql, cell);
    return cell;
  }

  /** Forget what was counted so far (the bench counts from the first order on, not the start-up). */
  reset(): void {
    this.clear();
    this.remote?.reset();
  }

  /** Zero every count here (not the remote's). */
  clear(): void {
    for (const cell of this.cells.values()) {
      cell.n = 0;
      cell.us = 0;
    }
    this.roundTrips = 0;
  }

  /** The remote's counts, when the statements run on another thread; nothing to do otherwise. */
  async pull(): Promise<void> {
    await this.remote?.pull();
  }

  /** The statements run since the last reset: the total and each label's count, most run first. */
  snapshot(): { total: number; roundTrips: number; byStatement: { statement: string; count: number; us: number }[] } {
    const byStatement = [...this.cells]
      .filter(([, c]) => c.n > 0)
      .map(([statement, c]) => ({ statement, count: c.n, us: c.us }))
      .sort((a, b) => b.count - a.count || (a.statement < b.statement ? -1 : 1));
    return { total: byStatement.reduce((s, r) => s + r.count, 0), roundTrips: this.roundTrips, byStatement };
  }
}

const LABEL_CHARS = 80;

/** A statement's label: its text on one line, cut at LABEL_CHARS. */
export function statementLabel(sql: string): string {
  const line = sql.replace(/\s+/g, ' ').trim();
  return line.length > LABEL_CHARS ? `${line.slice(0, LABEL_CHARS - 1)}…` : line;
}

type Counted = 'run' | 'get' | 'all' | 'iterate';

/**
 * Count and time every statement run on `db` from now on: each run/get/all/iterate of a statement prepared after
 * this call (iterate: the call, not the iteration), each exec, and each transaction's BEGIN and COMMIT (or ROLLBACK;
 * SAVEPOINT and RELEASE when nested; the time of BEGIN and COMMIT together is COMMIT's). Pragmas are prepared
 * statements too. Call it right after opening, before anything is prepared.
 */
export function countSqliteStatements(db: Database.Database, counter: StatementCounter): void {
  const prepare = db.prepare.bind(db) as (sql: string) => Database.Statement;
  const exec = db.exec.bind(db);
  const transaction = db.transaction.bind(db) as (fn: (...args: unknown[]) => unknown) => Database.Transaction<(...args: unknown[]) => unknown>;
  const self = db as unknown as Record<string, unknown>;
  self.prepare = (sql: string): Database.Statement => {
    const stmt = prepare(sql);
    const cell = counter.cell(sql);
    const methods = stmt as unknown as Record<Counted, (...args: unknown[]) => unknown>;
    for (const name of ['run', 'get', 'all', 'iterate'] as const) {
      const original = methods[name].bind(stmt);
      // An own property over the prototype's method; pluck(), raw() and expand() return the same object, so it stays.
      methods[name] = (...args: unknown[]) => {
        const start = performance.now();
        try {
          return original(...args);
        } finally {
          cell.us += (performance.now() - start) * 1000;
          cell.n++;
        }
      };
    }
    return stmt;
  };
  self.exec = (sql: string): Database.Database => {
    const cell = counter.cell(sql);
    const start = performance.now();
    try {
      return exec(sql);
    } finally {
      cell.us += (performance.now() - start) * 1000;
      cell.n++;
    }
  };
  const begin = counter.cell('BEGIN');
  const commit = counter.cell('COMMIT');
  const rollback = counter.cell('ROLLBACK');
  const savepoint = counter.cell('SAVEPOINT');
  const release = counter.cell('RELEASE');
  const rollbackTo = counter.cell('ROLLBACK TO');
  let depth = 0;
  let innerUs = 0;
  self.transaction = (fn: (...args: unknown[]) => unknown) => {
    const inTransaction = transaction(function (this: unknown, ...args: unknown[]) {
      // better-sqlite3 has already begun (BEGIN, or SAVEPOINT inside another transaction) when fn runs.
      const outermost = depth === 0;
      (outermost ? begin : savepoint).n++;
      depth++;
      const start = performance.now();
      try {
        const value = fn.apply(this, args);
        (outermost ? commit : release).n++;
        return value;
      } catch (err) {
        (outermost ? rollback : rollbackTo).n++;
        throw err;
      } finally {
        depth--;
        if (depth === 0) innerUs = (performance.now() - start) * 1000;
      }
    });
    // The outermost transaction's own time (BEGIN and COMMIT) is its whole time less its body's.
    return Object.assign(function (this: unknown, ...args: unknown[]) {
      if (depth > 0) return inTransaction.apply(this, args);
      const start = performance.now();
      try {
        return inTransaction.apply(this, args);
      } finally {
        commit.us += (performance.now() - start) * 1000 - innerUs;
      }
    }, { deferred: inTransaction.deferred, immediate: inTransaction.immediate, exclusive: inTransaction.exclusive });
  };
}

/**
 * Count every query `pool` sends from now on, on every connection it opens (including the single-statement reads
 * pool.query runs on one of them): one statement per client.query call under its text's label (BEGIN, COMMIT and
 * ROLLBACK included), and a round trip for each call made while no earlier query of that connection is still
 * unanswered (pipelined ones travel together). Call it right after creating the pool, before its first connection.
 */
export function countPostgresQueries(pool: pg.Pool, counter: StatementCounter): void {
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    let unanswered = 0;
    const answered = (): void => {
      unanswered--;
    };
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const first = args[0] as string | { text: string };
      counter.cell(typeof first === 'string' ? first : first.text).n++;
      if (unanswered === 0) counter.roundTrips++;
      const result = query(...args);
      if (result instanceof Promise) {
        unanswered++;
        result.then(answered, answered);
      }
      return result;
    };
  });
}
