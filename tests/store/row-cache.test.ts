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
});
