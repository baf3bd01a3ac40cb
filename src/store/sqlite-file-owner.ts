import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { MeterlineError } from '../errors.js';

/**
 * One SQLite file serves one gateway. Two gateways on one file both lease, send and write: their writes collide
 * ("database is locked"), completions fail and orders wait out their leases. So a gateway owns its SQLite file
 * before it does anything with it, and a second one refuses to start, saying who owns it.
 *
 * Ownership is a lock the operating system holds for the owning process, not a lease row: it holds while the owner
 * is idle (no renewals to miss), and the kernel drops it the moment the owner exits or crashes, so a stale lock
 * never blocks a restart, not even for a lease's length, and no clocks are compared. The lock is SQLite's own
 * file lock on a small companion database (`<file>-owner`): the owner keeps a read transaction open on it (a
 * shared lock), and taking ownership needs an exclusive lock, which nobody gets while an owner lives. The
 * companion holds the owner's description, which a refused gateway can still read. The companion file stays
 * after a stop (removing it could let two starts lock two different files).
 *
 * Limit: the lock is as good as the file system's POSIX locks. On one host (also containers sharing a volume) it
 * holds; on a network file system (NFS, SMB) it may not: keep the SQLite file on a local disk.
 */
export interface SqliteFileOwner {
  instanceId: string;
  pid: number;
  host: string;
  startedAt: number;
}

export class SqliteFileOwnership {
  private constructor(
    private readonly db: Database.Database,
    readonly lockPath: string,
    readonly owner: SqliteFileOwner,
  ) {}

  /** The companion lock file for a store file: beside it, named after its real path (a symlink leads to the same lock). */
  static lockPathFor(storePath: string): string {
    const real = existsSync(storePath) ? realpathSync(storePath) : join(realpathSync(dirname(storePath)), basename(storePath));
    return `${real}-owner`;
  }

  /** Take ownership of the SQLite file at `storePath` for this process, or fail with E_STORE_IN_USE naming the owner. */
  static claim(storePath: string, instanceId: string, now: number = Date.now()): SqliteFileOwnership {
    const lockPath = SqliteFileOwnership.lockPathFor(storePath);
    // No waiting: a live owner keeps its lock for as long as it runs.
    const db = new Database(lockPath, { timeout: 0 });
    try {
      db.pragma('journal_mode = DELETE'); // readers hold a shared lock on the file itself only outside WAL mode
      const me: SqliteFileOwner = { instanceId, pid: process.pid, host: hostname(), startedAt: now };
      const token = `${instanceId}:${process.pid}:${randomBytes(8).toString('hex')}`;
      try {
        db.exec('BEGIN EXCLUSIVE');
      } catch (err) {
        if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err;
        throw inUse(storePath, readOwner(db));
      }
      db.exec('CREATE TABLE IF NOT EXISTS owner (token TEXT NOT NULL, instance_id TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL, started_at INTEGER NOT NULL)');
      db.prepare('DELETE FROM owner').run();
      db.prepare('INSERT INTO owner (token, instance_id, pid, host, started_at) VALUES (?, ?, ?, ?, ?)').run(token, me.instanceId, me.pid, me.host, me.startedAt);
      db.exec('COMMIT');
      // Hold a shared lock from now on. Another start may have slipped in between COMMIT and here and written
      // itself down: whoever's token is on file owns it, the other gives up.
      db.exec('BEGIN');
      const row = db.prepare('SELECT token FROM owner').get() as { token: string } | undefined;
      if (row?.token !== token) throw inUse(storePath, readOwner(db));
      return new SqliteFileOwnership(db, lockPath, me);
    } catch (err) {
      if (db.inTransaction) db.exec('ROLLBACK');
      db.close();
      throw err;
    }
  }

  /** Give ownership up (the kernel does the same if the process dies). */
  release(): void {
    if (!this.db.open) return;
    if (this.db.inTransaction) this.db.exec('ROLLBACK');
    this.db.close();
  }
}

function readOwner(db: Database.Database): SqliteFileOwner | 'starting' | undefined {
  try {
    const row = db.prepare('SELECT instance_id, pid, host, started_at FROM owner').get() as { instance_id: string; pid: number; host: string; started_at: number } | undefined;
    return row ? { instanceId: row.instance_id, pid: row.pid, host: row.host, startedAt: row.started_at } : undefined;
  } catch (err) {
    // The owner is between taking its lock and writing itself down (the table may not even exist yet).
    return (err as { code?: string }).code === 'SQLITE_BUSY' ? 'starting' : undefined;
  }
}

function inUse(storePath: string, owner: SqliteFileOwner | 'starting' | undefined): MeterlineError {
  const who =
    owner === 'starting'
      ? 'a gateway that is starting right now'
      : owner
        ? `gateway instance "${owner.instanceId}" (pid ${owner.pid} on host ${owner.host}, running since ${new Date(owner.startedAt).toISOString()})`
        : 'another gateway process';
  return new MeterlineError(
    'E_STORE_IN_USE',
    `the SQLite file ${storePath} is in use by ${who}. One SQLite file serves one gateway at a time: stop that one first, or give this one its own store.sqlite.path; to run several instances on one store, use PostgreSQL (store.kind "postgres", see "PostgreSQL and several instances" in the README)`,
    { path: storePath, owner: owner === 'starting' ? null : (owner ?? null) },
  );
}
