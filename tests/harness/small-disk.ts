import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { GatewayStore } from '../../src/store/store.js';
import type { StoreOutage, StoreTamperKit } from '../store/store-conformance.js';
import { databaseHands } from './audit-tamper.js';
import type { AuditKeySource } from '../../src/store/audit-key-source.js';

/**
 * A small file system of the test's own (a tmpfs; mounting needs root, as CI runs the tests), to fill to the last
 * byte under a SQLite store and free again: a full disk, for real, without filling the machine's.
 */
export interface SmallDisk {
  dir: string;
  /** Fill it: a plain file written until the kernel answers ENOSPC. */
  fill(): void;
  /** Remove the filler. */
  free(): void;
  unmount(): void;
}

export function mountSmallDisk(sizeMiB: number): SmallDisk {
  if (process.getuid?.() !== 0) throw new Error('a full-disk test mounts a small tmpfs and needs root (CI runs the tests as root)');
  const dir = mkdtempSync(join(tmpdir(), 'ml-small-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', dir]);
  const filler = join(dir, 'filler');
  let mounted = true;
  return {
    dir,
    fill() {
      const fd = openSync(filler, 'w');
      try {
        for (const size of [1 << 20, 1 << 16, 4096, 1]) {
          const chunk = Buffer.alloc(size, 0x55);
          try {
            for (;;) writeSync(fd, chunk);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
          }
        }
      } finally {
        closeSync(fd);
      }
    },
    free() {
      unlinkSync(filler);
    },
    unmount() {
      if (!mounted) return;
      mounted = false;
      try {
        execFileSync('umount', [dir]);
      } catch {
        execFileSync('umount', ['-l', dir]);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Empty a SQLite file's WAL (a checkpoint from a second connection, as a backup tool does), so that its owner's next
 * write has to grow a file; on a full disk, that write fails. Retried while the owner is mid-transaction.
 */
export async function emptyWal(sqlitePath: string): Promise<void> {
  const side = new Database(sqlitePath);
  try {
    const until = Date.now() + 5000;
    while ((side.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[])[0]!.busy !== 0) {
      if (Date.now() > until) throw new Error(`could not empty the WAL of ${sqlitePath}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    side.close();
  }
}

/**
 * The store conformance suite's outage for a SQLite store (SqliteStore, or the same on its worker thread): the file on
 * a small disk of its own, the WAL emptied so the next write must grow the file, then the disk filled (ENOSPC) and freed.
 */
export function sqliteDiskOutage(openStore: (path: string) => GatewayStore): StoreOutage {
  let outagePath = '';
  return {
    storeName: () => outagePath,
    cause: /disk is full/,
    async open() {
      const disk = mountSmallDisk(8);
      outagePath = join(disk.dir, 'gw.db');
      const store = openStore(outagePath);
      await store.migrate();
      return {
        store,
        breakWrites: async () => {
          await emptyWal(outagePath);
          disk.fill();
        },
        mendWrites: async () => disk.free(),
        cleanup: async () => {
          await store.close().catch(() => undefined);
          disk.unmount();
        },
      };
    },
  };
}

/** A reopened store, migrated; closed again if its migration fails (the tamper kits' reopen). */
export async function migratedOrClosed<S extends GatewayStore>(store: S): Promise<S> {
  try {
    await store.migrate();
    return store;
  } catch (e) {
    await store.close();
    throw e;
  }
}

/** The conformance suite's tamper kit for a SQLite store (on the main thread or its worker): reopen the same file, and hands on it. */
export function sqliteTamperKit<S extends GatewayStore & { readonly path: string }>(openStore: (path: string, options: { auditKey?: AuditKeySource }) => S): StoreTamperKit {
  return {
    async reopen(store, auditKey) {
      return migratedOrClosed(openStore((store as S).path, auditKey ? { auditKey } : {}));
    },
    hands: (store) => databaseHands({ sqlite: (store as S).path }),
  };
}
