import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { MeterlineError } from '../errors.js';

/**
 * Open the SQLite file for the store. SQLite says "unable to open database file" for every reason it cannot (the
 * path is a directory, permission denied, a read-only file system, a full disk); the operator needs the path and
 * the cause. So the path is looked at first with the file system's own calls, whose errors say why, and any
 * failure is an `E_STORE_OPEN` naming the path, the cause and what to do.
 */
export function openSqliteFile(path: string, configure: (db: Database.Database) => void): Database.Database {
  if (path === ':memory:') {
    const db = new Database(path);
    configure(db);
    return db;
  }
  const problem = whyNotWritable(path);
  if (problem) throw openError(path, problem);
  let db: Database.Database | undefined;
  try {
    db = new Database(path);
    configure(db);
    return db;
  } catch (err) {
    db?.close();
    const e = err as { message?: string; code?: string };
    // The file system allowed everything above; say what SQLite said, and look once more (the state may have changed).
    throw openError(path, whyNotWritable(path) ?? `${e.message ?? String(err)}${e.code ? ` (${e.code})` : ''}`);
  }
}

function openError(path: string, cause: string): MeterlineError {
  return new MeterlineError('E_STORE_OPEN', `cannot open the SQLite file ${path} (store.sqlite.path): ${cause}`, { path });
}

/**
 * Why the gateway could not keep a SQLite database at `path`, or null when it can: the directory must exist (it is
 * created) and take new files (SQLite writes `<file>-wal` and `<file>-shm` beside the file), and the file, if it
 * exists, must be a file the gateway can read and write.
 */
export function whyNotWritable(path: string): string | null {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    return `its directory ${dir} cannot be created: ${because(err as NodeJS.ErrnoException, path)}`;
  }
  let exists = true;
  try {
    if (statSync(path).isDirectory()) return `it is a directory, not a file (EISDIR): set store.sqlite.path to a file, e.g. ${join(path, 'meterline.db')}`;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return because(err as NodeJS.ErrnoException, path);
    exists = false;
  }
  if (exists) {
    try {
      closeSync(openSync(path, 'r+'));
    } catch (err) {
      return because(err as NodeJS.ErrnoException, path);
    }
  }
  const probe = join(dir, `.${basename(path)}.probe-${process.pid}`);
  try {
    closeSync(openSync(probe, 'wx'));
    unlinkSync(probe);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EEXIST') return null; // a probe left by a process that died: creating files works
    return `new files cannot be created in ${dir} (SQLite keeps ${basename(path)}-wal and ${basename(path)}-shm there): ${because(e, path)}`;
  }
  return null;
}

/** The cause behind a file-system error, in words, with its code and what to do. */
function because(err: NodeJS.ErrnoException, path: string): string {
  const user = typeof process.getuid === 'function' ? ` for uid ${process.getuid()}` : '';
  switch (err.code) {
    case 'EACCES':
    case 'EPERM':
      return `permission denied${user} (${err.code}): the gateway's user must be able to read and write ${path} and create files in ${dirname(path)}; change their owner or mode, or choose another store.sqlite.path`;
    case 'EROFS':
      return `the file system is read-only (EROFS): mount it read-write, or set store.sqlite.path to a writable place`;
    case 'ENOSPC':
      return `no space left on the file system (ENOSPC): free some space`;
    case 'ENOTDIR':
      return `a part of the path is a file, not a directory (ENOTDIR)`;
    case 'EISDIR':
      return `it is a directory, not a file (EISDIR)`;
    default:
      return `${err.message}${err.code ? ` (${err.code})` : ''}`;
  }
}
