import { MeterRowCache } from './meter-row-cache.js';

/**
 * The SQLite store's open orders' rows (issue 19): an order's row was read twice on its way to verified (`SELECT *
 * FROM orders` before its lease and before its verdict), each costing about as much as a write. The store's file is
 * owned by one process (sqlite-file-owner.ts) and every write to it goes through the store's one connection, which
 * keeps this cache in step:
 * - the writes whose result the store knows (admission, a state change, a lease) put the row as written;
 * - every other UPDATE or DELETE of an order row, whichever statement makes it (a plan's cancel, a work order, a
 *   wake-up, a renewed or claimed lease, retention, a script), makes the cache forget the row: a TEMP trigger on the
 *   connection (never in the file's schema) calls back into the store for each row it touches, so no write path can
 *   be missed;
 * - a transaction that fails clears the cache (it may hold rows the rollback undid).
 *
 * Bounded as the meter rows are (least recently used leaving first). Rows are shared, never mutated.
 */
export class OrderRowCache extends MeterRowCache {}

/** Rows kept by default: every order on the wire, and the queue's rows up to this depth (~0.6 KB each). */
export const ORDER_ROW_CACHE_ROWS = 32_768;

/** The SQL function the TEMP triggers call with the id of every order row an UPDATE or DELETE touched. */
export const ORDER_WRITTEN_FUNCTION = 'ml_order_row_written';

/**
 * The TEMP triggers (this connection only: the file's schema is unchanged, other connections see nothing). An INSERT
 * as well: an INSERT OR REPLACE takes an existing id's place without firing the DELETE trigger.
 */
export const ORDER_ROW_TRIGGERS = `
  CREATE TEMP TRIGGER IF NOT EXISTS ml_order_row_updated AFTER UPDATE ON main.orders BEGIN SELECT ${ORDER_WRITTEN_FUNCTION}(OLD.id); END;
  CREATE TEMP TRIGGER IF NOT EXISTS ml_order_row_inserted AFTER INSERT ON main.orders BEGIN SELECT ${ORDER_WRITTEN_FUNCTION}(NEW.id); END;
  CREATE TEMP TRIGGER IF NOT EXISTS ml_order_row_deleted AFTER DELETE ON main.orders BEGIN SELECT ${ORDER_WRITTEN_FUNCTION}(OLD.id); END;
`;
