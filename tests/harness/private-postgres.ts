import { execFile, execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './mosquitto.js';

/**
 * A PostgreSQL cluster of the test's own (initdb in a temp dir, trust auth, 127.0.0.1 on a free port), so a
 * test can crash and restart its database without touching the machine's shared server that other test files
 * use at the same time. The server refuses to run as root: when the tests run as root, initdb and pg_ctl run
 * as the `postgres` user (`runuser`) on a directory that user owns.
 */
const run = promisify(execFile);

export interface PrivatePostgres {
  port: number;
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  url: string;
  dataDir: string;
  /** Stop: `immediate` is a crash (no checkpoint, recovery from WAL at the next start); `fast` is clean. */
  stop(mode?: 'immediate' | 'fast'): Promise<void>;
  start(): Promise<void>;
  /** The server's log so far. */
  log(): string;
  /** Stop (immediate) and remove the cluster. */
  destroy(): Promise<void>;
}

const clusters = new Set<{ dir: string; bin: string; asPostgres: boolean }>();
let exitHook = false;

function binDir(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  for (const v of ['17', '16', '15', '14']) {
    const dir = `/usr/lib/postgresql/${v}/bin`;
    try {
      execFileSync(join(dir, 'pg_ctl'), ['--version'], { stdio: 'ignore' });
      return dir;
    } catch {
      /* not this one */
    }
  }
  throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (set PG_BIN)');
}

function command(asPostgres: boolean, bin: string, args: string[]): [string, string[]] {
  return asPostgres ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = binDir();
  const asPostgres = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'ml-pg-'));
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  if (asPostgres) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(dir, uid, gid);
  }
  const entry = { dir: dataDir, bin, asPostgres };
  clusters.add(entry);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const c of clusters) {
        const [cmd, args] = command(c.asPostgres, join(c.bin, 'pg_ctl'), ['stop', '-D', c.dir, '-m', 'immediate']);
        try {
          execFileSync(cmd, args, { stdio: 'ignore' });
        } catch {
          /* not running */
        }
        rmSync(join(c.dir, '..'), { recursive: true, force: true });
      }
    });
  }
  const pg = async (tool: string, args: string[]) => {
    const [cmd, a] = command(asPostgres, join(bin, tool), args);
    return run(cmd, a, { timeout: 60_000 });
  };
  await pg('initdb', ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync', '--no-instructions']);
  const port = await freePort();
  const opts = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off -c max_connections=50`;

  const start = async () => {
    await pg('pg_ctl', ['start', '-w', '-t', '30', '-D', dataDir, '-l', logFile, '-o', opts]);
  };
  const stop = async (mode: 'immediate' | 'fast' = 'immediate') => {
    await pg('pg_ctl', ['stop', '-w', '-D', dataDir, '-m', mode]).catch((err: Error) => {
      if (!/not running|No such file|PID file .* does not exist/i.test(String((err as { stderr?: string }).stderr ?? err.message))) throw err;
    });
  };
  await start();
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    dataDir,
    stop,
    start,
    log: () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
    destroy: async () => {
      await stop('immediate');
      clusters.delete(entry);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
