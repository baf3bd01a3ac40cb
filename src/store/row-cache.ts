import type { Row } from './store-rows.js';

/**
 * Database rows kept in memory by key, bounded: at most `capacity` rows, the least recently used leaving first. The
 * SQLite store keeps its meter rows (meter-row-cache.ts) and its open orders' rows (order-row-cache.ts) in one each;
 * what keeps a cache in step with the database is its user's business. Rows are shared, never mutated: a caller must
 * not change one.
 */
export class RowCache {
  private readonly rows = new Map<string, Row>();

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.rows.size;
  }

  /** The row, if cached; marks it recently used. */
  get(key: string): Row | undefined {
    const row = this.rows.get(key);
    if (row !== undefined) {
      this.rows.delete(key);
      this.rows.set(key, row);
    }
    return row;
  }

  has(key: string): boolean {
    return this.rows.has(key);
  }

  /** Keep the row as it now is (read from the database, or returned by the write that made it). */
  put(key: string, row: Row): void {
    this.rows.delete(key);
    this.rows.set(key, row);
    if (this.rows.size > this.capacity) this.rows.delete(this.rows.keys().next().value as string);
  }

  /** The row was written in a way the cache cannot follow: read it again next time. */
  forget(key: string): void {
    this.rows.delete(key);
  }

  clear(): void {
    this.rows.clear();
  }
}
