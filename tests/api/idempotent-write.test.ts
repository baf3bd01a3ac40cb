import { describe, expect, it } from 'vitest';
import { idempotentWrite } from '../../src/api/idempotent-write.js';
import { MeterlineError } from '../../src/errors.js';
import type { GatewayStore } from '../../src/store/store.js';

/** A store that only keeps Idempotency-Key reservations, and says which it gave back. */
function keyStore(): { store: GatewayStore; released: string[] } {
  const released: string[] = [];
  const store = {
    reserveIdempotentWrite: async () => ({ reserved: true }),
    saveIdempotentResponse: async () => undefined,
    releaseIdempotentWrite: async (_p: string, key: string) => void released.push(key),
  } as unknown as GatewayStore;
  return { store, released };
}

const request = (key: string) => ({ headers: { 'idempotency-key': key }, principal: { clientId: 'c1' }, method: 'POST', url: '/v1/x', body: {}, log: { error: () => undefined } }) as never;
const reply = { header: () => reply, code: () => reply, send: () => reply } as never;
const unavailable = (committed?: 'unknown') => new MeterlineError('E_STORE_UNAVAILABLE', 'cannot take writes', { store: 's', cause: 'c', ...(committed ? { committed } : {}) });

describe('idempotentWrite when the store fails the write', () => {
  it('gives the key back when nothing was written (E_STORE_UNAVAILABLE), so a retry acts', async () => {
    const { store, released } = keyStore();
    await expect(idempotentWrite(store, request('k-1'), reply, 0, () => Promise.reject(unavailable()))).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' });
    expect(released).toEqual(['k-1']);
  });

  it('keeps the key when the write may have committed (the store thread died before answering): a retry must not apply it twice', async () => {
    const { store, released } = keyStore();
    await expect(idempotentWrite(store, request('k-2'), reply, 0, () => Promise.reject(unavailable('unknown')))).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' });
    expect(released).toEqual([]);
  });
});
