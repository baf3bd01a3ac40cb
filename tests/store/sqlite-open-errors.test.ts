import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MeterlineError } from '../../src/errors.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';

/**
 * SQLite says "unable to open database file" whatever the reason. The gateway must say which file and why, one
 * cause at a time, on real files: a directory where the file should be, a directory the gateway's user may not
 * write, a file system mounted read-only. (Permission is tested as an unprivileged user, uid 65534, since root may
 * write anywhere; the read-only file system is a tmpfs mounted for the test, which needs root, as CI runs.)
 */
const mounts: string[] = [];
const dirs: string[] = [];
/** Folders above the checkout whose mode was widened for uid 65534 to reach the built store, and their modes. */
const widened: Array<[string, number]> = [];

afterAll(() => {
  for (const [dir, mode] of widened.reverse()) chmodSync(dir, mode);
  for (const m of mounts) {
    try {
      execFileSync('umount', [m]);
    } catch {
      execFileSync('umount', ['-l', m]);
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ml-open-'));
  dirs.push(d);
  return d;
}

/**
 * The checkout may sit in a folder others may not enter (`mktemp -d` makes it 0700), and then uid 65534 cannot load
 * the built store at all. Give "others" the search bit (enter, not list) on each folder above the checkout that
 * lacks it, for the length of this file; afterAll puts the modes back.
 */
function letNobodyReach(dir: string): void {
  for (let d = dir; ; d = dirname(d)) {
    const mode = statSync(d).mode & 0o7777;
    if ((mode & 0o001) === 0 && !widened.some(([w]) => w === d)) {
      widened.push([d, mode]);
      chmodSync(d, mode | 0o001);
    }
    if (dirname(d) === d) break;
  }
}

/** Open a store at `path` and return the error it fails with. */
async function openFailure(path: string): Promise<{ code: string; message: string }> {
  try {
    const store = new SqliteStore(path);
    await store.migrate();
    await store.close();
  } catch (err) {
    return { code: err instanceof MeterlineError ? err.code : `not a catalogue error: ${String((err as { code?: string }).code)}`, message: (err as Error).message };
  }
  throw new Error(`the store opened at ${path}`);
}

/** The same, as an unprivileged user (a child process running the built store as uid/gid 65534). */
function openFailureAsNobody(path: string): { code: string; message: string } {
  const storeModule = join(process.cwd(), 'dist', 'src', 'store', 'sqlite-store.js');
  if (!existsSync(storeModule)) throw new Error(`${storeModule} is missing: run "npm run build" first`);
  letNobodyReach(process.cwd());
  const script = `
    const { SqliteStore } = await import(${JSON.stringify(storeModule)});
    try { const s = new SqliteStore(${JSON.stringify(path)}); await s.migrate(); await s.close(); console.log(JSON.stringify({ code: 'opened', message: '' })); }
    catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message })); }`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, cwd: tmpdir(), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as { code: string; message: string };
}

describe('opening the SQLite store names the path and the cause', () => {
  it('the path is a directory', async () => {
    const path = join(tempDir(), 'meterline.db');
    mkdirSync(path);
    const e = await openFailure(path);
    expect(e.code).toBe('E_STORE_OPEN');
    expect(e.message).toContain(path);
    expect(e.message).toContain('is a directory');
    expect(e.message).toContain('EISDIR');
    expect(e.message).not.toContain('unable to open database file');
  });

  it('permission denied: the directory is not writable by the gateway’s user', async () => {
    const dir = join(tempDir(), 'private');
    mkdirSync(dir, { mode: 0o700 }); // owned by this (root) user: others may not even look inside
    chmodSync(join(dir, '..'), 0o755);
    const path = join(dir, 'meterline.db');
    if (process.getuid?.() !== 0) throw new Error('this test runs the store as another user and needs root (CI runs the tests as root)');
    const e = openFailureAsNobody(path);
    expect(e.code).toBe('E_STORE_OPEN');
    expect(e.message).toContain(path);
    expect(e.message).toContain('permission denied for uid 65534');
    expect(e.message).toContain('EACCES');
  });

  it('a read-only file system: an existing database whose file system was remounted read-only', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs and needs root (CI runs the tests as root)');
    const mnt = tempDir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
    mounts.push(mnt);
    const path = join(mnt, 'meterline.db');
    const first = new SqliteStore(path);
    await first.migrate();
    await first.close();
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    const e = await openFailure(path);
    expect(e.code).toBe('E_STORE_OPEN');
    expect(e.message).toContain(path);
    expect(e.message).toContain('read-only');
    expect(e.message).toContain('EROFS');
  });

  it('a read-only file system: a new database', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs and needs root (CI runs the tests as root)');
    const mnt = tempDir();
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', mnt]);
    mounts.push(mnt);
    const path = join(mnt, 'meterline.db');
    const e = await openFailure(path);
    expect(e.code).toBe('E_STORE_OPEN');
    expect(e.message).toContain(path);
    expect(e.message).toContain('EROFS');
  });
});
