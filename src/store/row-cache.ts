import type { Row } from './store-rows.js';

/** A cached row in the recency list (most recent at the head). */
interface Entry {
  key: string;
  row: Row;
  newer: Entry | null;
  older: Entry | null;
}

/**
 * Database rows kept in memory by key, bounded: at most `capacity` rows, the least recently used leaving first. The
 * SQLite store keeps its meter rows (meter-row-cache.ts) and its open orders' rows (order-row-cache.ts) in one each;
 * what keeps a cache in step with the database is its user's business. Rows are shared, never mutated: a caller must
 * not change one.
 *
 * The recency order is a linked list beside the Map (issue 19): a hit moves its entry to the head by relinking it,
 * where it was a Map delete and set (a deleted Map entry stays as a hole until the Map is rebuilt, which at 32,768
 * rows the journal worker paid for again and again).
 */
export class RowCache {
  private readonly rows = new Map<string, Entry>();
  private newest: Entry | null = null;
  private oldest: Entry | null = null;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.rows.size;
  }

  /** The row, if cached; marks it recently used. */
  get(key: string): Row | undefined {
    const entry = this.rows.get(key);
    if (entry === undefined) return undefined;
    this.toFront(entry);
    return entry.row;
  }

  has(key: string): boolean {
    return this.rows.has(key);
  }

  /** Keep the row as it now is (read from the database, or returned by the write that made it). */
  put(key: string, row: Row): void {
    const entry = this.rows.get(key);
    if (entry !== undefined) {
      entry.row = row;
      this.toFront(entry);
      return;
    }
    const added: Entry = { key, row, newer: null, older: this.newest };
    if (this.newest !== null) this.newest.newer = added;
    this.newest = added;
    this.oldest ??= added;
    this.rows.set(key, added);
    if (this.rows.size > this.capacity) this.unlink(this.oldest);
  }

  /** The row was written in a way the cache cannot follow: read it again next time. */
  forget(key: string): void {
    const entry = this.rows.get(key);
    if (entry !== undefined) this.unlink(entry);
  }

  clear(): void {
    this.rows.clear();
    this.newest = null;
    this.oldest = null;
  }

  private toFront(entry: Entry): void {
    if (entry === this.newest) return;
    // Out of its place (it has a newer one: it is not the head)...
    entry.newer!.older = entry.older;
    if (entry.older !== null) entry.older.newer = entry.newer;
    else this.oldest = entry.newer;
    // ...and in at the head.
    entry.newer = null;
    entry.older = this.newest;
    this.newest!.newer = entry;
    this.newest = entry;
  }

  private unlink(entry: Entry): void {
    this.rows.delete(entry.key);
    if (entry.newer !== null) entry.newer.older = entry.older;
    else this.newest = entry.older;
    if (entry.older !== null) entry.older.newer = entry.newer;
    else this.oldest = entry.newer;
    entry.newer = null;
    entry.older = null;
  }
}
