import type Database from 'better-sqlite3';
import { AUDIT_SQL, GENESIS_HASH, keyingFromRow, unkeyedEntryHash, verifyAuditRows, type AuditAnchor, type AuditHead, type AuditKey, type AuditKeying, type AuditRow } from './audit-chain.js';
import type { Row } from './store-rows.js';
import type { AuditEntry, AuditQuery, AuditVerification } from './store.js';

/**
 * The audit log on SQLite: append-only (triggers refuse UPDATE and DELETE, and an INSERT without a chain link), each
 * entry linked to the one before by an HMAC under the audit key (audit-chain.ts, shared with PostgreSQL).
 */
export class SqliteAuditLog {
  private readonly insert: Database.Statement;
  private readonly last: Database.Statement;
  private key: AuditKey | undefined;
  /**
   * The last entry's (seq, hash) as this connection wrote it, while `holding` (one batch's transaction: see hold());
   * null when it must be read. Issue 19: the read was a statement per order.
   */
  private held: { seq: number; hash: string } | null = null;
  private holding = false;

  constructor(private readonly db: Database.Database) {
    this.insert = db.prepare('INSERT INTO audit (seq, at, actor, action, target, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    this.last = db.prepare(AUDIT_SQL.last);
  }

  /** The key entries are linked with from now on (set by migrate(), once the log's key is known). */
  useKey(key: AuditKey): void {
    this.key = key;
  }

  keying(): AuditKeying | undefined {
    return keyingFromRow(this.db.prepare(AUDIT_SQL.keying).get() as Row | undefined);
  }

  /**
   * From now until release(), keep the head this log appends in memory instead of reading it before each append.
   * The store holds it for one batch's transaction (sqlite-store.ts flush), in which every write to `audit` is an
   * append made here; it calls forgetHead() whenever that transaction, or a savepoint in it, rolls back (the rolled
   * back entries would otherwise be linked to).
   */
  hold(): void {
    this.holding = true;
    this.held = null;
  }

  release(): void {
    this.holding = false;
    this.held = null;
  }

  /** Read the head again at the next append (a rollback may have taken the held one back). */
  forgetHead(): void {
    this.held = null;
  }

  /** Append one entry; call inside the transaction that makes the change it records. */
  append(at: number, actor: string, action: string, target: string, details: unknown): void {
    if (!this.key) throw new Error('SqliteAuditLog: no audit key (call migrate() first)');
    const last = this.held ?? (this.last.get() as { seq: number; hash: string | null } | undefined);
    const prev = last?.hash ?? GENESIS_HASH;
    const seq = (last?.seq ?? 0) + 1;
    const text = details === undefined ? null : JSON.stringify(details);
    const hash = this.key.entryHash(prev, { seq, at, actor, action, target, details: text });
    this.insert.run(seq, at, actor, action, target, text, prev, hash);
    if (this.holding) this.held = { seq, hash };
  }

  list(q: AuditQuery): AuditEntry[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.target) (where.push('target = ?'), args.push(q.target));
    if (q.actor) (where.push('actor = ?'), args.push(q.actor));
    if (q.action) q.action.endsWith('.') ? (where.push('substr(action, 1, length(?)) = ?'), args.push(q.action, q.action)) : (where.push('action = ?'), args.push(q.action));
    if (q.from !== undefined) (where.push('at >= ?'), args.push(q.from));
    if (q.to !== undefined) (where.push('at < ?'), args.push(q.to));
    if (q.afterSeq !== undefined) (where.push('seq > ?'), args.push(q.afterSeq));
    if (q.beforeSeq !== undefined) (where.push('seq < ?'), args.push(q.beforeSeq));
    const order = q.newestFirst ? 'DESC' : 'ASC';
    const rows = this.db.prepare(`SELECT * FROM audit ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq ${order} LIMIT ?`).all(...args, q.limit) as AuditRow[];
    return rows.map((r) => ({ seq: r.seq, at: r.at, actor: r.actor, action: r.action, target: r.target, details: r.details ? JSON.parse(r.details) : null, hash: r.hash ?? '' }));
  }

  head(): AuditHead {
    if (!this.key) throw new Error('SqliteAuditLog: no audit key (call migrate() first)');
    const last = this.last.get() as { seq: number; hash: string | null } | undefined;
    return { entries: last?.seq ?? 0, head: last?.hash ?? GENESIS_HASH, keyId: this.key.id };
  }

  verify(anchors: readonly AuditAnchor[] = []): AuditVerification {
    if (!this.key) throw new Error('SqliteAuditLog: no audit key (call migrate() first)');
    return verifyAuditRows(() => this.db.prepare('SELECT * FROM audit ORDER BY seq').iterate() as IterableIterator<AuditRow>, this.key, this.keying(), anchors);
  }
}

/**
 * Schema version 3 added the chain's columns: the entries written before it are linked here, once, in the
 * transaction that adds the columns. Never again: a row found without a link later was put there by hand, and
 * verification reports it instead of linking it.
 */
export function linkEntriesOfVersion2(db: Database.Database): void {
  const rows = db.prepare('SELECT * FROM audit WHERE hash IS NULL ORDER BY seq').all() as AuditRow[];
  const update = db.prepare('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?');
  let prev = GENESIS_HASH;
  for (const r of rows) {
    const hash = unkeyedEntryHash(prev, r);
    update.run(prev, hash, r.seq);
    prev = hash;
  }
}
