/**
 * The SQLite store's recently used meter rows (issue 19), a RowCache (row-cache.ts): an order reads its meter three
 * times (admission, the attempt's address, the verdict's flags), each a `SELECT * FROM meters` that cost about as much
 * as a write. The store's file is owned by one process (sqlite-file-owner.ts) and every write to `meters` goes through
 * the store, which keeps this cache in step: a write whose new values it knows (observations, desired states) updates
 * the entry, any other write forgets it, and a transaction that fails clears the cache (it may hold rows the rollback
 * undid).
 *
 * Bounded so that a fleet of a million meters is never held in memory (a row is about 0.4-0.5 KB of heap: the default
 * bound keeps the cache under ~16 MiB).
 *
 * Rows kept by default. The attempt's read and the verdict's always find their row (seconds apart, a few thousand
 * meters between them); the admission's row is still there at the attempt while fewer orders than this are waiting
 * in between (a queue of 30,000 reconnects, as the 100k bench's 30,000 run, is; a deeper one reads it again).
 */
export const METER_ROW_CACHE_ROWS = 32_768;
