import { AUDIT_SQL, AuditChainWalker, GENESIS_HASH, keyingFromRow, VERIFY_PAGE, type AuditAnchor, type AuditHead, type AuditKey, type AuditKeying, type AuditRow } from './audit-chain.js';
import type { Q, Row } from './postgres-db.js';
import { numbered } from './store-rows.js';
import type { AuditEntry, AuditQuery, AuditVerification } from './store.js';

/**
 * The audit log on PostgreSQL: the same keyed chain as SQLite's (audit-chain.ts: same links, same verification).
 * Appends from every gateway instance take one transaction-scoped advisory lock, keyed by the schema, before
 * reading the chain's head, so the chain stays linear; the lock is held to commit. Triggers refuse UPDATE,
 * DELETE and TRUNCATE; the key comes with the transaction (`q.auditKey`, set by the store once migrate() knows it).
 */

/** Append one entry; call inside the transaction that makes the change it records. */
export function appendAudit(q: Q, at: number, actor: string, action: string, target: string, details: unknown): Promise<void> {
  return appendAuditMany(q, [{ at, actor, action, target, details }]);
}

/** Append several entries in order, in one statement: the chain is computed here from the last entry. */
export async function appendAuditMany(q: Q, entries: readonly { at: number; actor: string; action: string; target: string; details: unknown }[]): Promise<void> {
  if (entries.length === 0) return;
  const key = q.auditKey;
  if (!key) throw new Error('PostgresStore: no audit key (call migrate() first)');
  if (!q.auditLocked) {
    await q.run(`SELECT pg_advisory_xact_lock(hashtext('meterline:audit:' || current_schema()))`);
    q.auditLocked = true;
  }
  const last = (await q.get(AUDIT_SQL.last)) as { seq: number | string; hash: string | null } | undefined;
  let prev = last?.hash ?? GENESIS_HASH;
  let seq = Number(last?.seq ?? 0);
  const cols = { seq: [] as number[], at: [] as number[], actor: [] as string[], action: [] as string[], target: [] as string[], details: [] as (string | null)[], prev: [] as string[], hash: [] as string[] };
  for (const e of entries) {
    seq += 1;
    const text = e.details === undefined ? null : JSON.stringify(e.details);
    const hash = key.entryHash(prev, { seq, at: e.at, actor: e.actor, action: e.action, target: e.target, details: text });
    cols.seq.push(seq), cols.at.push(e.at), cols.actor.push(e.actor), cols.action.push(e.action), cols.target.push(e.target), cols.details.push(text), cols.prev.push(prev), cols.hash.push(hash);
    prev = hash;
  }
  await q.run(
    `INSERT INTO audit (seq, at, actor, action, target, details, prev_hash, hash)
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])`,
    [cols.seq, cols.at, cols.actor, cols.action, cols.target, cols.details, cols.prev, cols.hash],
  );
}

export async function listAudit(q: Q, query: AuditQuery): Promise<AuditEntry[]> {
  const where: string[] = [];
  const args: unknown[] = [];
  const arg = (v: unknown): string => (args.push(v), `$${args.length}`);
  if (query.target) where.push(`target = ${arg(query.target)}`);
  if (query.actor) where.push(`actor = ${arg(query.actor)}`);
  if (query.action) where.push(query.action.endsWith('.') ? `substr(action, 1, length(${arg(query.action)})) = ${arg(query.action)}` : `action = ${arg(query.action)}`);
  if (query.from !== undefined) where.push(`at >= ${arg(query.from)}`);
  if (query.to !== undefined) where.push(`at < ${arg(query.to)}`);
  if (query.afterSeq !== undefined) where.push(`seq > ${arg(query.afterSeq)}`);
  if (query.beforeSeq !== undefined) where.push(`seq < ${arg(query.beforeSeq)}`);
  const order = query.newestFirst ? 'DESC' : 'ASC';
  const rows = (await q.all(`SELECT * FROM audit ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq ${order} LIMIT ${arg(query.limit)}`, args)) as Row[] as unknown as AuditRow[];
  return rows.map((r) => ({ seq: r.seq, at: r.at, actor: r.actor, action: r.action, target: r.target, details: r.details ? (JSON.parse(r.details) as unknown) : null, hash: r.hash ?? '' }));
}

export async function readKeying(q: Q): Promise<AuditKeying | undefined> {
  return keyingFromRow(await q.get(AUDIT_SQL.keying));
}

export async function auditHead(q: Q, key: AuditKey): Promise<AuditHead> {
  const last = (await q.get(AUDIT_SQL.last)) as { seq: number; hash: string | null } | undefined;
  return { entries: Number(last?.seq ?? 0), head: last?.hash ?? GENESIS_HASH, keyId: key.id };
}

/** Walk the chain in pages (it can be long), checking every link and anchor. */
export async function verifyAudit(q: Q, key: AuditKey, anchors: readonly AuditAnchor[] = []): Promise<AuditVerification> {
  const walker = new AuditChainWalker(key, await readKeying(q), anchors);
  const bad = walker.start();
  if (bad) return bad;
  for (let after = Number.MIN_SAFE_INTEGER; ; ) {
    const page = (await q.all(numbered(AUDIT_SQL.page), [after, VERIFY_PAGE])) as unknown as AuditRow[];
    for (const r of page) {
      const failure = walker.next(r);
      if (failure) return failure;
    }
    if (page.length < VERIFY_PAGE) return walker.finish();
    after = Number(page.at(-1)!.seq);
  }
}
