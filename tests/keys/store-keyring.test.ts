import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MasterKey, keySetIdFor, sealKeySet, type MeterKeyMaterial } from '../../src/keys/key-envelope.js';
import { importKeyFile } from '../../src/keys/key-import.js';
import { StoreKeyring } from '../../src/keys/store-keyring.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';

/** The gateway's keyring over a real SQLite store: keys opened on demand, counters reserved ahead in blocks. */
const keys: MeterKeyMaterial = {
  encryptionKey: Buffer.from('000102030405060708090A0B0C0D0E0F', 'hex'),
  authenticationKey: Buffer.from('D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF', 'hex'),
  serverSystemTitle: Buffer.from('4D4D4D0000BC614E', 'hex'),
};
const stores: SqliteStore[] = [];
const newPath = () => join(mkdtempSync(join(tmpdir(), 'ml-keyring-')), 'gw.db');
const open = async (path: string) => {
  const s = new SqliteStore(path);
  await s.migrate();
  stores.push(s);
  return s;
};
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close().catch(() => undefined);
});

describe('StoreKeyring', () => {
  it('gives a meter its current keys, opened from the store; pending keys once staged; the renewal confirmed makes them current', async () => {
    const store = await open(newPath());
    const master = MasterKey.random();
    const id = keySetIdFor(master, 'M-1', keys);
    await store.putMeterKeySets([{ meterId: 'M-1', keySetId: id, sealed: sealKeySet(master, 'M-1', id, keys) }], { replace: false }, 'admin', 1);
    let t = 1000;
    const keyring = new StoreKeyring({ store, master, cacheMs: 60_000, now: () => t });
    expect(await keyring.keysFor('M-1')).toEqual({ keySetId: id, ...keys });
    expect(await keyring.keysFor('M-2')).toBeUndefined();
    expect(await keyring.pendingKeysFor('M-1')).toBeUndefined();
    // A renewal the meter refused: the staged set is retired, the current one untouched.
    const refusedId = await keyring.stagePendingKeys('M-1', { ...keys, encryptionKey: Buffer.alloc(16, 0x43) });
    await keyring.dropPendingKeys('M-1', refusedId);
    expect(await keyring.pendingKeysFor('M-1')).toBeUndefined();
    expect((await store.meterKeySets('M-1')).find((s) => s.keySetId === refusedId)?.state).toBe('retired');
    expect((await keyring.keysFor('M-1'))!.keySetId).toBe(id);
    const renewed = { ...keys, encryptionKey: Buffer.alloc(16, 0x42) };
    const pendingId = await keyring.stagePendingKeys('M-1', renewed);
    expect(await keyring.pendingKeysFor('M-1')).toMatchObject({ keySetId: pendingId, encryptionKey: renewed.encryptionKey });
    expect((await keyring.keysFor('M-1'))!.keySetId).toBe(id); // the old keys stay in use until the new ones are proven
    await keyring.confirmPendingKeys('M-1', pendingId);
    expect((await keyring.keysFor('M-1'))!.keySetId).toBe(pendingId);
    t += 1;
    // Without a key master no meter has keys (the gateway runs; HLS meters get none).
    expect(await new StoreKeyring({ store, master: undefined }).keysFor('M-1')).toBeUndefined();
    // Under another master: named, not garbage.
    await expect(new StoreKeyring({ store, master: MasterKey.random() }).keysFor('M-1')).rejects.toMatchObject({ code: 'E_KEY_MASTER_MISMATCH' });
  });

  it('finds a pushing meter and its keys by the system title of its key set, as imported from the key file; a renewal\'s new title once staged', async () => {
    const store = await open(newPath());
    const master = MasterKey.random();
    await importKeyFile(store, master, { text: `meter id,system title,GUEK,GAK\nM-1,4D4D4D0000BC614E,${keys.encryptionKey.toString('hex')},${keys.authenticationKey.toString('hex')}\nM-2,4D4D4D0000000001,${'11'.repeat(16)},${'22'.repeat(16)}\n`, format: 'csv', replace: false, actor: 'admin', now: 1 });
    const keyring = new StoreKeyring({ store, master, cacheMs: 0 });
    expect(await keyring.keysForSystemTitle(Buffer.from('4D4D4D0000BC614E', 'hex'))).toEqual({ meterId: 'M-1', keys: { keySetId: expect.any(String), ...keys } });
    expect((await keyring.keysForSystemTitle(Buffer.from('4d4d4d0000000001', 'hex')))?.meterId).toBe('M-2');
    expect(await keyring.keysForSystemTitle(Buffer.from('4D4D4D0000000002', 'hex'))).toBeUndefined();
    const staged = await keyring.stagePendingKeys('M-2', { encryptionKey: Buffer.alloc(16, 3), authenticationKey: Buffer.alloc(16, 4), serverSystemTitle: Buffer.from('4D4D4D0000000002', 'hex') });
    expect(await keyring.keysForSystemTitle(Buffer.from('4D4D4D0000000002', 'hex'))).toMatchObject({ meterId: 'M-2', keys: { keySetId: staged } });
    // Without a key master nothing is found (no meter has keys).
    expect(await new StoreKeyring({ store, master: undefined }).keysForSystemTitle(Buffer.from('4D4D4D0000BC614E', 'hex'))).toBeUndefined();
  });

  it('records the system title of key sets stored without one (before titles were kept), from their sealed material', async () => {
    const store = await open(newPath());
    const master = MasterKey.random();
    const sets = ['M-1', 'M-2', 'M-3'].map((meterId, i) => {
      const material = i === 2 ? { encryptionKey: keys.encryptionKey, authenticationKey: keys.authenticationKey } : { ...keys, serverSystemTitle: Buffer.from(`4D4D4D000000000${i}`, 'hex') };
      const keySetId = keySetIdFor(master, meterId, material);
      return { meterId, keySetId, sealed: sealKeySet(master, meterId, keySetId, material) };
    });
    await store.putMeterKeySets(sets, { replace: false }, 'admin', 1);
    const keyring = new StoreKeyring({ store, master, cacheMs: 0 });
    expect(await keyring.keysForSystemTitle(Buffer.from('4D4D4D0000000001', 'hex'))).toBeUndefined();
    expect(await keyring.backfillSystemTitles(1)).toEqual({ recorded: 2, unreadable: 0, withoutTitle: 1 });
    expect((await keyring.keysForSystemTitle(Buffer.from('4D4D4D0000000001', 'hex')))?.meterId).toBe('M-2');
    expect((await keyring.keysForSystemTitle(Buffer.from('4D4D4D0000000000', 'hex')))?.meterId).toBe('M-1');
    expect(await keyring.backfillSystemTitles()).toEqual({ recorded: 0, unreadable: 0, withoutTitle: 1 });
    // Under another master nothing opens: counted, nothing recorded.
    expect(await new StoreKeyring({ store, master: MasterKey.random() }).backfillSystemTitles()).toEqual({ recorded: 0, unreadable: 1, withoutTitle: 0 });
  });

  it('hands out strictly increasing counters, reserving one block per blockSize values, even when asked concurrently', async () => {
    const store = await open(newPath());
    let reservations = 0;
    const counting = new Proxy(store, {
      get: (target, prop, receiver) => (prop === 'reserveInvocationCounters' ? (...a: [string, string, number]) => (reservations++, target.reserveInvocationCounters(...a)) : Reflect.get(target, prop, receiver)),
    });
    const keyring = new StoreKeyring({ store: counting, master: undefined, blockSize: 10 });
    const got = await Promise.all(Array.from({ length: 35 }, () => keyring.nextInvocationCounter('M-1', 'ks_1')));
    expect(got).toEqual(Array.from({ length: 35 }, (_, i) => i + 1));
    expect(reservations).toBe(4);
    // The meter says it expects at least 1,000: nothing below is handed out, and the next block starts there.
    await keyring.raiseInvocationCounter('M-1', 'ks_1', 1000);
    expect(await keyring.nextInvocationCounter('M-1', 'ks_1')).toBe(1000);
    // A raise inside the block in hand moves within it; one below what was handed out changes nothing.
    await keyring.raiseInvocationCounter('M-1', 'ks_1', 1005);
    expect(await keyring.nextInvocationCounter('M-1', 'ks_1')).toBe(1005);
    await keyring.raiseInvocationCounter('M-1', 'ks_1', 3);
    expect(await keyring.nextInvocationCounter('M-1', 'ks_1')).toBe(1006);
    // Another key set of the same meter counts on its own.
    expect(await keyring.nextInvocationCounter('M-1', 'ks_2')).toBe(1);
    // A second keyring (a restart, or another instance) starts past every block reserved.
    expect(await new StoreKeyring({ store, master: undefined, blockSize: 10 }).nextInvocationCounter('M-1', 'ks_1')).toBe(1010);
  });

  const CHILD = join(process.cwd(), 'dist/tests/keys/keyring-child.js');
  it('kill -9 three times while counters are handed out: no value is ever handed out twice; the rest of a block is skipped', async () => {
    // The child runs from the build, as the gateway does (`npm test` builds first).
    if (!existsSync(CHILD)) throw new Error(`${CHILD} is missing: run \`npm run build\` first`);
    const path = newPath();
    const seen: number[] = [];
    for (let run = 0; run < 3; run++) {
      const child = spawn(process.execPath, [CHILD, path, '100'], { stdio: ['ignore', 'pipe', 'inherit'] });
      const printed: number[] = [];
      let partial = '';
      await new Promise<void>((resolve, reject) => {
        child.on('error', reject);
        child.stdout!.on('data', (chunk: Buffer) => {
          const lines = (partial + chunk.toString()).split('\n');
          partial = lines.pop()!;
          for (const l of lines) printed.push(Number(l));
          // Killed mid-block, after a few blocks.
          if (printed.length >= 250 + run * 37 && child.exitCode === null && !child.killed) {
            child.kill('SIGKILL');
            resolve();
          }
        });
      });
      await new Promise((r) => child.once('close', r));
      expect(printed.length).toBeGreaterThan(0);
      // Each run starts past everything an earlier run handed out (printed or not).
      if (seen.length > 0) expect(printed[0]).toBeGreaterThan(Math.max(...seen));
      seen.push(...printed);
    }
    expect(new Set(seen).size).toBe(seen.length);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]!);
    // The next value, after the last kill, is the start of a block past every block the killed processes reserved.
    const next = await new StoreKeyring({ store: await open(path), master: undefined, blockSize: 100 }).nextInvocationCounter('M-KILL', 'ks_1');
    expect(next).toBeGreaterThan(Math.max(...seen));
    expect((next - 1) % 100).toBe(0);
  }, 60_000);
});
