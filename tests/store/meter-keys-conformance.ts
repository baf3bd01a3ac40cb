import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MasterKey, keySetIdFor, openKeySet, sealKeySet, type MeterKeyMaterial } from '../../src/keys/key-envelope.js';
import type { GatewayStore, NewMeterKeySet } from '../../src/store/store.js';
import type { StoreTamperKit } from './store-conformance.js';

/**
 * The per-meter key sets and invocation counters of the shared store suite (issue 15 items 3 and 4), run by
 * describeStoreConformance against every store: import all or none, idempotent per meter and key set; stage,
 * confirm and retire for a renewal; counters reserved in blocks that a reopened store never hands out again.
 */
export function describeMeterKeysConformance(name: string, makeStore: () => Promise<GatewayStore>, tamper: StoreTamperKit): void {
  describe(`GatewayStore conformance: ${name}: meter keys and invocation counters`, () => {
    let store: GatewayStore;
    const now = 1_764_000_000_000;
    const master = MasterKey.random();
    const material = (n: number): MeterKeyMaterial => ({
      encryptionKey: Buffer.alloc(16, n),
      authenticationKey: Buffer.alloc(16, n + 100),
      serverSystemTitle: Buffer.from(`4D4D4D00000000${n.toString(16).padStart(2, '0')}`, 'hex'),
    });
    const newSet = (meterId: string, n: number): NewMeterKeySet => {
      const keySetId = keySetIdFor(master, meterId, material(n));
      return { meterId, keySetId, sealed: sealKeySet(master, meterId, keySetId, material(n)), systemTitle: material(n).serverSystemTitle!.toString('hex') };
    };

    beforeEach(async () => {
      store = await makeStore();
      await store.migrate();
    });
    afterEach(async () => {
      await store.close();
    });

    it('imports key sets as current, sealed: the material opens under the master and the row holds no key in clear', async () => {
      const a = newSet('M-K1', 1);
      const b = newSet('M-K2', 2);
      const out = await store.putMeterKeySets([a, b], { replace: false }, 'admin-1', now);
      expect(out).toEqual([
        { meterId: 'M-K1', keySetId: a.keySetId, result: 'created', replaced: [] },
        { meterId: 'M-K2', keySetId: b.keySetId, result: 'created', replaced: [] },
      ]);
      const [stored] = await store.meterKeySets('M-K1');
      expect(stored).toMatchObject({ meterId: 'M-K1', keySetId: a.keySetId, state: 'current', createdBy: 'admin-1', createdAt: now, confirmedAt: now, retiredAt: null });
      expect(openKeySet(master, 'M-K1', a.keySetId, stored!.sealed).encryptionKey.equals(material(1).encryptionKey)).toBe(true);
      const text = JSON.stringify(stored);
      for (const k of [material(1).encryptionKey, material(1).authenticationKey]) {
        expect(text).not.toContain(k.toString('hex'));
        expect(text).not.toContain(k.toString('base64'));
      }
      const audit = await store.listAudit({ target: 'M-K1', limit: 10 });
      expect(audit.map((e) => [e.action, e.actor])).toEqual([['meter_keys.import', 'admin-1']]);
      expect(JSON.stringify(audit[0]!.details)).toContain(a.keySetId);
    });

    it('finds the meter by the system title of its current or pending key set, never of a retired one', async () => {
      const a = newSet('M-K1', 1);
      const b = newSet('M-K2', 2);
      await store.putMeterKeySets([a, b, { ...newSet('M-K3', 3), systemTitle: null }], { replace: false }, 'admin-1', now);
      expect(await store.meterKeySetBySystemTitle('4d4d4d0000000002')).toEqual({ meterId: 'M-K2', keySetId: b.keySetId });
      expect(await store.meterKeySetBySystemTitle('4D4D4D0000000001')).toEqual({ meterId: 'M-K1', keySetId: a.keySetId });
      expect(await store.meterKeySetBySystemTitle('4d4d4d0000000003')).toBeUndefined();
      const staged = newSet('M-K1', 7);
      await store.stageMeterKeySet(staged, 'gateway', now + 1);
      expect(await store.meterKeySetBySystemTitle('4d4d4d0000000007')).toEqual({ meterId: 'M-K1', keySetId: staged.keySetId });
      await store.retireMeterKeySet('M-K2', b.keySetId, 'admin-1', now + 2);
      expect(await store.meterKeySetBySystemTitle('4d4d4d0000000002')).toBeUndefined();
    });

    it('lists current and pending key sets without a system title, and records one once (a recorded title is kept)', async () => {
      const a = { ...newSet('M-K1', 1), systemTitle: null };
      const b = { ...newSet('M-K2', 2), systemTitle: null };
      const c = newSet('M-K3', 3);
      await store.putMeterKeySets([a, b, c], { replace: false }, 'admin-1', now);
      await store.retireMeterKeySet('M-K2', b.keySetId, 'admin-1', now + 1);
      const missing = await store.meterKeySetsWithoutSystemTitle(10);
      expect(missing.map((s) => [s.meterId, s.keySetId])).toEqual([['M-K1', a.keySetId]]);
      expect(missing[0]!.sealed).toEqual(a.sealed);
      await store.recordMeterKeySetSystemTitle('M-K1', a.keySetId, '4D4D4D00000000AA');
      expect(await store.meterKeySetsWithoutSystemTitle(10)).toEqual([]);
      expect(await store.meterKeySetBySystemTitle('4d4d4d00000000aa')).toEqual({ meterId: 'M-K1', keySetId: a.keySetId });
      await store.recordMeterKeySetSystemTitle('M-K3', c.keySetId, '4D4D4D00000000BB');
      expect(await store.meterKeySetBySystemTitle('4d4d4d0000000003')).toEqual({ meterId: 'M-K3', keySetId: c.keySetId });
      await expect(store.recordMeterKeySetSystemTitle('M-K1', a.keySetId, 'not-a-title')).rejects.toThrow(/16 hex digits/);
    });

    it('importing the same keys again changes nothing; other keys for a meter with keys are refused, all or none, unless replace', async () => {
      const a = newSet('M-K1', 1);
      await store.putMeterKeySets([a], { replace: false }, 'admin-1', now);
      expect(await store.putMeterKeySets([newSet('M-K1', 1)], { replace: false }, 'admin-1', now + 1)).toEqual([{ meterId: 'M-K1', keySetId: a.keySetId, result: 'unchanged', replaced: [] }]);

      const other = newSet('M-K1', 9);
      await expect(store.putMeterKeySets([newSet('M-K3', 3), other], { replace: false }, 'admin-1', now + 2)).rejects.toMatchObject({
        code: 'E_KEY_SET_CONFLICT',
        details: { meterId: 'M-K1', currentKeySetId: a.keySetId },
      });
      expect(await store.meterKeySets('M-K3')).toEqual([]); // nothing of the import was kept

      const out = await store.putMeterKeySets([other], { replace: true }, 'admin-2', now + 3);
      expect(out).toEqual([{ meterId: 'M-K1', keySetId: other.keySetId, result: 'replaced', replaced: [a.keySetId] }]);
      expect((await store.meterKeySets('M-K1')).map((s) => [s.keySetId, s.state])).toEqual([
        [other.keySetId, 'current'],
        [a.keySetId, 'retired'],
      ]);
      // A retired key set comes back only with replace.
      await expect(store.putMeterKeySets([newSet('M-K1', 1)], { replace: false }, 'admin-1', now + 4)).rejects.toMatchObject({ code: 'E_KEY_SET_CONFLICT' });
    });

    it('a renewal stages a pending key set, the old keys stay current until it is confirmed, then they are retired', async () => {
      const a = newSet('M-K1', 1);
      await store.putMeterKeySets([a], { replace: false }, 'admin-1', now);
      const b = newSet('M-K1', 2);
      expect(await store.stageMeterKeySet(b, 'gateway', now + 1)).toMatchObject({ keySetId: b.keySetId, state: 'pending', confirmedAt: null });
      expect((await store.meterKeySets('M-K1')).map((s) => [s.keySetId, s.state])).toEqual([
        [a.keySetId, 'current'],
        [b.keySetId, 'pending'],
      ]);
      // A second staging replaces the first pending set (a renewal that was never proven).
      const c = newSet('M-K1', 3);
      await store.stageMeterKeySet(c, 'gateway', now + 2);
      await expect(store.confirmMeterKeySet('M-K1', b.keySetId, 'gateway', now + 3)).rejects.toMatchObject({ code: 'E_KEY_SET_CONFLICT' });
      expect(await store.confirmMeterKeySet('M-K1', c.keySetId, 'gateway', now + 4)).toMatchObject({ state: 'current', confirmedAt: now + 4 });
      expect((await store.meterKeySets('M-K1')).map((s) => [s.keySetId, s.state])).toEqual([
        [c.keySetId, 'current'],
        [b.keySetId, 'retired'],
        [a.keySetId, 'retired'],
      ]);
      expect(await store.confirmMeterKeySet('M-K1', c.keySetId, 'gateway', now + 5)).toMatchObject({ state: 'current', confirmedAt: now + 4 });
      expect(await store.retireMeterKeySet('M-K1', c.keySetId, 'admin-1', now + 6)).toMatchObject({ state: 'retired', retiredAt: now + 6 });
      await expect(store.confirmMeterKeySet('M-K1', 'ks_nope', 'gateway', now)).rejects.toMatchObject({ code: 'E_KEY_SET_NOT_FOUND' });
      expect((await store.listAudit({ target: 'M-K1', limit: 20 })).map((e) => e.action)).toEqual([
        'meter_keys.import',
        'meter_keys.stage',
        'meter_keys.stage',
        'meter_keys.confirm',
        'meter_keys.retire',
      ]);
    });

    it('invocation counters: blocks start at 1, never overlap, are kept per meter and key set, and a raise moves the next block up', async () => {
      expect(await store.reserveInvocationCounters('M-K1', 'ks_a', 1000)).toBe(1);
      expect(await store.reserveInvocationCounters('M-K1', 'ks_a', 1000)).toBe(1001);
      expect(await store.reserveInvocationCounters('M-K1', 'ks_a', 10)).toBe(2001);
      expect(await store.reserveInvocationCounters('M-K1', 'ks_b', 1000)).toBe(1);
      expect(await store.reserveInvocationCounters('M-K2', 'ks_a', 5)).toBe(1);
      await store.raiseInvocationCounter('M-K1', 'ks_a', 50_000);
      expect(await store.reserveInvocationCounters('M-K1', 'ks_a', 10)).toBe(50_000);
      await store.raiseInvocationCounter('M-K1', 'ks_a', 7); // never down
      expect(await store.reserveInvocationCounters('M-K1', 'ks_a', 10)).toBe(50_010);
      await store.raiseInvocationCounter('M-K3', 'ks_c', 123); // a meter seen first by its frame counter
      expect(await store.reserveInvocationCounters('M-K3', 'ks_c', 1)).toBe(123);
    });

    it('invocation counters stop before 2^32: the last block is refused with E_INVOCATION_COUNTER_EXHAUSTED and nothing is reserved', async () => {
      await store.raiseInvocationCounter('M-K1', 'ks_a', 0xffff_ffff - 9);
      await expect(store.reserveInvocationCounters('M-K1', 'ks_a', 11)).rejects.toMatchObject({ code: 'E_INVOCATION_COUNTER_EXHAUSTED' });
      expect(await store.reserveInvocationCounters('M-K1', 'ks_a', 10)).toBe(0xffff_ffff - 9);
      await expect(store.reserveInvocationCounters('M-K1', 'ks_a', 1)).rejects.toMatchObject({ code: 'E_INVOCATION_COUNTER_EXHAUSTED' });
    });

    it('a reopened store (a restart, or a kill -9 after the reservation returned) never hands out a reserved value again', async () => {
      const first = await store.reserveInvocationCounters('M-K1', 'ks_a', 1000);
      const again = await tamper.reopen(store);
      try {
        expect(await again.reserveInvocationCounters('M-K1', 'ks_a', 1000)).toBe(first + 1000);
      } finally {
        await again.close();
      }
    });
  });
}
