import type Database from 'better-sqlite3';
import type { RowCache } from './row-cache.js';

/**
 * The SQLite store's open orders' rows (issue 19), a RowCache (row-cache.ts): an order's row was read twice on its
 * way to verified (`SELECT * FROM orders` before its lease and before its verdict), each about as costly as a write.
 * The store's file is owned by one process (sqlite-file-owner.ts) and every write to it goes through the store's one
 * connection, which keeps this cache in step:
 * - the writes whose result the store knows (admission, a state change, a lease) put the row as written; the other
 *   writes the store makes to one order by its id forget that row (`followed` statements, see below);
 * - any other statement that writes `orders`, prepared or run anywhere on the connection (a plan's cancel, a work
 *   order, a wake-up of many orders, a script, a statement added later), empties the cache when it has run:
 *   `guardOrderWrites` wraps the connection's prepare() and exec() so that none can be missed;
 * - a transaction that fails empties it too (it may hold rows the rollback undid).
 * (A TEMP trigger calling back into the store would also catch every write, but it gives each UPDATE of an order a
 * statement journal, which costs what the reads it saves did.)
 *
 * Rows kept by default: every order on the wire (the verdict's read always finds its row), and the lease's read finds
 * the admission's row while fewer orders than this wait in between. A row is ~1.8 KB of heap (measured: 57 MiB for
 * 32,768 admitted reconnects), so the bound keeps the cache near 7 MiB; a deeper queue reads the row at its lease.
 */
export const ORDER_ROW_CACHE_ROWS = 4_096;

/** SQL that writes the orders table (an UPDATE, INSERT, REPLACE or DELETE of it). */
const WRITES_ORDERS = /\b(?:UPDATE(?:\s+OR\s+\w+)?|INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|DELETE\s+FROM)\s+(?:main\s*\.\s*)?["'`[]?orders\b/i;

export function writesOrders(sql: string): boolean {
  return WRITES_ORDERS.test(sql);
}

type Run = (...args: unknown[]) => unknown;

/**
 * Wrap `db` so that every statement that writes `orders` empties `cache` when it has run (or failed), except those
 * prepared with the returned `followed` prepare, whose callers keep the cache in step themselves.
 */
export function guardOrderWrites(db: Database.Database, cache: RowCache): { followed: (sql: string) => Database.Statement } {
  const prepare = db.prepare.bind(db) as (sql: string) => Database.Statement;
  const exec = db.exec.bind(db);
  const self = db as unknown as Record<string, unknown>;
  self.prepare = (sql: string): Database.Statement => {
    const stmt = prepare(sql);
    if (!writesOrders(sql)) return stmt;
    const methods = stmt as unknown as Record<'run' | 'get' | 'all' | 'iterate', Run>;
    for (const name of ['run', 'get', 'all', 'iterate'] as const) {
      const original = methods[name].bind(stmt);
      // An own property over the prototype's method; pluck(), raw() and expand() return the same object, so it stays.
      methods[name] = (...args: unknown[]) => {
        try {
          return original(...args);
        } finally {
          cache.clear();
        }
      };
    }
    return stmt;
  };
  self.exec = (sql: string): Database.Database => {
    try {
      return exec(sql);
    } finally {
      if (writesOrders(sql)) cache.clear();
    }
  };
  return { followed: prepare };
}
