import type Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import type { AuditEntry, AuditQuery, AuditVerification } from './store.js';

/**
 * The audit log: append-only (triggers refuse UPDATE and DELETE) and tamper-evident: each entry carries the
 * SHA-256 of the previous entry's hash and its own content, so changing, inserting or removing an entry in the
 * database breaks the chain at that point, and `verify()` (and `npm run audit:verify`) names it.
 */
export const GENESIS_HASH = '0'.repeat(64);

export function auditEntryHash(prevHash: string, e: { seq: number; at: number; actor: string; action: string; target: string; details: string | null }): string {
  return createHash('sha256')
    .update([prevHash, e.seq, e.at, e.actor, e.action, e.target, e.details ?? ''].join('\u001f'))
    .digest('hex');
}

interface AuditRow {
  seq: number;
  at: number;
  actor: string;
  action: string;
  target: string;
  details: string | null;
  prev_hash: string | null;
  hash: string | null;
}

export class SqliteAuditLog {
  private readonly insert: Database.Statement;
  private readonly last: Database.Statement;

  constructor(private readonly db: Database.Database) {
    this.insert = db.prepare('INSERT INTO audit (at, actor, action, target, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.last = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
  }

  /** Chain entries written before the log was hash-chained (schema version 2 and older). */
  backfill(): void {
    const rows = this.db.prepare('SELECT * FROM audit WHERE hash IS NULL ORDER BY seq').all() as AuditRow[];
    if (rows.length === 0) return;
    const update = this.db.prepare('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?');
    const before = this.db.prepare('SELECT hash FROM audit WHERE seq < ? AND hash IS NOT NULL ORDER BY seq DESC LIMIT 1');
    this.db.transaction(() => {
      let prev = ((before.get(rows[0]!.seq) as { hash: string } | undefined)?.hash) ?? GENESIS_HASH;
      for (const r of rows) {
        const hash = auditEntryHash(prev, r);
        update.run(prev, hash, r.seq);
        prev = hash;
      }
    })();
  }

  /** Append one entry; call inside the transaction that makes the change it records. */
  append(at: number, actor: string, action: string, target: string, details: unknown): void {
    const last = this.last.get() as { seq: number; hash: string | null } | undefined;
    const prev = last?.hash ?? GENESIS_HASH;
    const seq = (last?.seq ?? 0) + 1;
    const text = details === undefined ? null : JSON.stringify(details);
    this.insert.run(at, actor, action, target, text, prev, auditEntryHash(prev, { seq, at, actor, action, target, details: text }));
  }

  list(q: AuditQuery): AuditEntry[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.target) (where.push('target = ?'), args.push(q.target));
    if (q.actor) (where.push('actor = ?'), args.push(q.actor));
    if (q.from !== undefined) (where.push('at >= ?'), args.push(q.from));
    if (q.to !== undefined) (where.push('at < ?'), args.push(q.to));
    if (q.afterSeq !== undefined) (where.push('seq > ?'), args.push(q.afterSeq));
    const order = q.newestFirst ? 'DESC' : 'ASC';
    const rows = this.db.prepare(`SELECT * FROM audit ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq ${order} LIMIT ?`).all(...args, q.limit) as AuditRow[];
    return rows.map((r) => ({ seq: r.seq, at: r.at, actor: r.actor, action: r.action, target: r.target, details: r.details ? JSON.parse(r.details) : null, hash: r.hash ?? '' }));
  }

  verify(): AuditVerification {
    let prev = GENESIS_HASH;
    let expectedSeq = 1;
    let entries = 0;
    for (const r of this.db.prepare('SELECT * FROM audit ORDER BY seq').iterate() as IterableIterator<AuditRow>) {
      entries++;
      if (r.seq !== expectedSeq) return { ok: false, entries, badSeq: expectedSeq, problem: `entry ${expectedSeq} is missing (next entry is ${r.seq})` };
      if (r.prev_hash !== prev) return { ok: false, entries, badSeq: r.seq, problem: `entry ${r.seq} does not chain to entry ${r.seq - 1}` };
      const hash = auditEntryHash(prev, r);
      if (r.hash !== hash) return { ok: false, entries, badSeq: r.seq, problem: `entry ${r.seq} was changed after it was written` };
      prev = hash;
      expectedSeq++;
    }
    return { ok: true, entries, lastHash: prev };
  }
}
