import { SqliteStore } from '../../src/store/sqlite-store.js';
import { StoreKeyring } from '../../src/keys/store-keyring.js';

/**
 * A process that hands out invocation counters from a SQLite store as fast as it can, printing each one, until it
 * is killed (tests/keys/store-keyring.test.ts kills it with SIGKILL). Run from the build: node dist/tests/keys/keyring-child.js <db> <block>.
 */
const [path, block] = process.argv.slice(2);
const store = new SqliteStore(path!);
await store.migrate();
const keyring = new StoreKeyring({ store, master: undefined, blockSize: Number(block) });
for (;;) {
  const n = await keyring.nextInvocationCounter('M-KILL', 'ks_1');
  process.stdout.write(`${n}\n`);
}
