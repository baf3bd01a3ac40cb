import { describe, expect, it } from 'vitest';
import { RowCache } from '../../src/store/row-cache.js';

describe('RowCache', () => {
  it('holds at most its capacity, the least recently used leaving first', () => {
    const cache = new RowCache(2);
    cache.put('a', { meter_id: 'a' });
    cache.put('b', { meter_id: 'b' });
    expect(cache.get('a')).toEqual({ meter_id: 'a' }); // a is now the most recent
    cache.put('c', { meter_id: 'c' });
    expect([cache.has('a'), cache.has('b'), cache.has('c'), cache.size]).toEqual([true, false, true, 2]);
    cache.forget('a');
    expect(cache.get('a')).toBeUndefined();
  });

  it('keeps exactly the rows a strict LRU keeps, through a long walk of puts, hits, forgets and clears', () => {
    /** The reference: recency as a Map's insertion order (a hit deletes and sets again), as RowCache did before. */
    class MapLru {
      readonly rows = new Map<string, Record<string, unknown>>();
      constructor(readonly capacity: number) {}
      get(k: string) {
        const r = this.rows.get(k);
        if (r !== undefined) (this.rows.delete(k), this.rows.set(k, r));
        return r;
      }
      put(k: string, r: Record<string, unknown>) {
        this.rows.delete(k);
        this.rows.set(k, r);
        if (this.rows.size > this.capacity) this.rows.delete(this.rows.keys().next().value as string);
      }
    }
    for (const capacity of [1, 2, 5, 16]) {
      const cache = new RowCache(capacity);
      const model = new MapLru(capacity);
      let seed = 11 + capacity;
      const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
      for (let step = 0; step < 4000; step++) {
        const k = `k${rnd(24)}`;
        const op = rnd(20);
        if (op < 8) {
          const row = { k, step };
          cache.put(k, row);
          model.put(k, row);
        } else if (op < 17) {
          expect(cache.get(k)).toBe(model.get(k));
        } else if (op < 19) {
          cache.forget(k);
          model.rows.delete(k);
        } else if (rnd(10) === 0) {
          cache.clear();
          model.rows.clear();
        }
        expect(cache.size).toBe(model.rows.size);
        expect(cache.has(k)).toBe(model.rows.has(k));
      }
      for (const k of model.rows.keys()) expect(cache.has(k)).toBe(true);
    }
  });
});
