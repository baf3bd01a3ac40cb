import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { MeterlineError, retryAfterSec } from '../errors.js';

/**
 * Whether the store can take writes, as both stores judge it: a write that fails because the store cannot take it
 * (a full disk, a read-only file system or database, a server that is down) is not the caller's mistake and not a
 * bug. It answers `E_STORE_UNAVAILABLE` (503, Retry-After) instead of `E_INTERNAL`, and `/healthz` says so, naming
 * the store and the cause, until a write succeeds again. Only the dialect's error codes differ between the stores.
 */

/** What the store's latest writes say about whether it can take writes now. */
export interface StoreWriteHealth {
  writable: boolean;
  /** When not writable: the store (its file, or its server without credentials) and the cause. */
  detail: string | null;
}

/** SQLite result codes (better-sqlite3 `err.code`, extended codes included) that mean "cannot write now", not "wrong write". */
const SQLITE_UNAVAILABLE = /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN|BUSY|PROTOCOL|NOLFS)/;

/** The cause, when a SQLite error means the store cannot take writes now; null for any other error. */
export function sqliteUnavailableCause(err: unknown): string | null {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (!e || typeof e.code !== 'string' || !SQLITE_UNAVAILABLE.test(e.code)) return null;
  return `${String(e.message)} (${e.code})`;
}

/**
 * PostgreSQL SQLSTATE classes and codes that mean "cannot write now": 08 connection exception, 53 insufficient
 * resources (53100 disk full), 57P operator intervention (shut down, restarting), 58 system error (I/O), 25006 a
 * read-only transaction (a standby after a failover). Network errors of the client count too.
 */
const PG_UNAVAILABLE_PREFIXES = ['08', '53', '57P', '58'];
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
/** What node-postgres says when the connection drops or cannot be made in time (no SQLSTATE). */
const PG_CLIENT_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|connection error|Connection refused/i;

/** The cause, when a PostgreSQL (node-postgres) error means the store cannot take writes now; null for any other error. */
export function postgresUnavailableCause(err: unknown): string | null {
  const e = err as { code?: unknown; message?: unknown; errors?: unknown } | null;
  if (!e) return null;
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' && e.message !== '' ? e.message : describeNested(e.errors);
  if (code === '25006' || PG_UNAVAILABLE_PREFIXES.some((p) => code.startsWith(p)) || NET_CODES.has(code)) return code ? `${message} (${code})` : message;
  if (PG_CLIENT_MESSAGES.test(message)) return message;
  return null;
}

/** An AggregateError's inner messages (a connect that tried IPv6 and IPv4 fails with one, its own message empty). */
function describeNested(errors: unknown): string {
  if (!Array.isArray(errors)) return 'unknown error';
  return errors.map((x) => (x as { message?: string }).message ?? String(x)).join('; ');
}

/** Free space below this on the SQLite file's file system reads as "not writable" (the next growth of the file fails). */
export const MIN_FREE_BYTES = 1024 * 1024;

/** A problem when the file system holding `file` has less than MIN_FREE_BYTES free; null otherwise (or when it cannot tell). */
export function freeSpaceProblem(file: string): string | null {
  try {
    const fs = statfsSync(dirname(file));
    const free = Number(fs.bavail) * Number(fs.bsize);
    if (free >= MIN_FREE_BYTES) return null;
    return `the file system holding it has ${Math.floor(free / 1024)} KiB free (at least ${MIN_FREE_BYTES / 1024} KiB needed): free some space`;
  } catch {
    return null;
  }
}

/** A PostgreSQL connection string as it may be shown (health check, errors): host, port and database, never credentials. */
export function describePostgres(connectionString: string, schema?: string): string {
  let where = 'PostgreSQL';
  try {
    const u = new URL(connectionString);
    where = `PostgreSQL at ${u.hostname || 'localhost'}:${u.port || '5432'}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`;
  } catch {
    /* key=value form: name no parts of it */
  }
  return schema ? `${where} (schema ${schema})` : where;
}

/** One store's record of its writes: turns "cannot write now" errors into E_STORE_UNAVAILABLE and answers the health check. */
export class StoreAvailability {
  /** Failures and successes are ordered by a counter, not a clock (several in one millisecond). */
  private seq = 0;
  private lastFailure: { seq: number; at: number; cause: string } | undefined;
  private lastSuccessSeq = 0;

  /**
   * @param name the store as the messages name it ("the SQLite file /data/gw.db", "PostgreSQL at db:5432/meterline")
   * @param classify the dialect's test: the cause, or null for an error that is not about availability
   * @param standing a check of the store's surroundings that holds between writes (free disk space); null when fine
   */
  constructor(
    readonly name: string,
    private readonly classify: (err: unknown) => string | null,
    private readonly standing: () => string | null = () => null,
  ) {}

  /** A write failed: the error to give its caller (E_STORE_UNAVAILABLE when the store could not take it; otherwise the error itself). */
  failed(err: unknown): unknown {
    if (err instanceof MeterlineError) return err;
    const cause = this.classify(err);
    if (cause === null) return err;
    this.lastFailure = { seq: ++this.seq, at: Date.now(), cause };
    return new MeterlineError(
      'E_STORE_UNAVAILABLE',
      `${this.name} cannot take writes: ${cause}; retry in ${retryAfterSec('E_STORE_UNAVAILABLE')} s (with the same Idempotency-Key: a write that did land is not repeated)`,
      { store: this.name, cause },
    );
  }

  /** A write committed: the store takes writes again. */
  succeeded(): void {
    this.lastSuccessSeq = ++this.seq;
  }

  health(): StoreWriteHealth {
    const f = this.lastFailure;
    if (f && f.seq > this.lastSuccessSeq) {
      return { writable: false, detail: `${this.name} cannot take writes (the last write failed ${Math.round((Date.now() - f.at) / 1000)} s ago, none has succeeded since): ${f.cause}` };
    }
    const standing = this.standing();
    if (standing !== null) return { writable: false, detail: `${this.name}: ${standing}` };
    return { writable: true, detail: null };
  }
}

/** Whether an error is the store saying it cannot take writes now (callers that can wait retry instead of giving up). */
export function isStoreUnavailable(err: unknown): boolean {
  return err instanceof MeterlineError && err.code === 'E_STORE_UNAVAILABLE';
}
