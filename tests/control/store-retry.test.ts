import { describe, expect, it } from 'vitest';
import { MeterlineError } from '../../src/errors.js';
import { writeWhenStoreTakesIt } from '../../src/control/store-retry.js';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined } as never;
const unavailable = (committed?: 'unknown') => new MeterlineError('E_STORE_UNAVAILABLE', 'the store cannot take writes', { store: 's', cause: 'c', ...(committed ? { committed } : {}) });
const refused = new Error('order ord_1 is done at attempt 1, not in flight at attempt 1');

describe('writeWhenStoreTakesIt', () => {
  it('retries while the store is unavailable, then returns what the write answered', async () => {
    const tries: unknown[] = [unavailable(), unavailable()];
    const value = await writeWhenStoreTakesIt(async () => {
      const e = tries.shift();
      if (e) throw e;
      return 'done';
    }, { logger: quiet, what: 'x', firstDelayMs: 1, maxDelayMs: 1 });
    expect(value).toBe('done');
  });

  it('a retry refused after a try whose outcome was unknown (the thread died after its commit) asks whether it landed: it did, so its value', async () => {
    const tries: unknown[] = [unavailable('unknown'), refused];
    let asked = 0;
    const value = await writeWhenStoreTakesIt(async () => {
      throw tries.shift();
    }, { logger: quiet, what: 'x', firstDelayMs: 1, landed: async () => (asked++, 'landed') });
    expect(value).toBe('landed');
    expect(asked).toBe(1);
  });

  it('the refusal stands when the earlier try did not land, when no outcome was unknown, or with no way to tell', async () => {
    await expect(writeWhenStoreTakesIt(async () => Promise.reject(refused), { logger: quiet, what: 'x', landed: async () => 'landed' })).rejects.toBe(refused);
    const known: unknown[] = [unavailable(), refused];
    await expect(writeWhenStoreTakesIt(async () => Promise.reject(known.shift()), { logger: quiet, what: 'x', firstDelayMs: 1, landed: async () => 'landed' })).rejects.toBe(refused);
    const notLanded: unknown[] = [unavailable('unknown'), refused];
    await expect(writeWhenStoreTakesIt(async () => Promise.reject(notLanded.shift()), { logger: quiet, what: 'x', firstDelayMs: 1, landed: async () => undefined })).rejects.toBe(refused);
    const noLanded: unknown[] = [unavailable('unknown'), refused];
    await expect(writeWhenStoreTakesIt(async () => Promise.reject(noLanded.shift()), { logger: quiet, what: 'x', firstDelayMs: 1 })).rejects.toBe(refused);
  });
});
