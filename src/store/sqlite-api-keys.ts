import type Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import type { SqliteAuditLog } from './sqlite-audit-log.js';
import { apiKeyFromRow, type Row } from './store-rows.js';
import type { ApiKeyRecord } from './store.js';

/** API keys: only their SHA-256 is stored; rotation replaces it, revocation takes effect on the next request. */

export class SqliteApiKeys {
  constructor(
    private readonly db: Database.Database,
    private readonly audit: SqliteAuditLog,
  ) {}

  create(key: { name: string; role: string; sha256: string }, actor: string, now: number): ApiKeyRecord {
    const id = `key_${randomBytes(8).toString('hex')}`;
    this.db.prepare('INSERT INTO api_keys (id, name, role, sha256, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(id, key.name, key.role, key.sha256, actor, now);
    const rec = this.get(id)!;
    this.audit.append(now, actor, 'key.create', id, { after: rec });
    return rec;
  }

  get(id: string): ApiKeyRecord | undefined {
    const r = this.db.prepare('SELECT * FROM api_keys WHERE id = ?').get(id) as Row | undefined;
    return r ? apiKeyFromRow(r) : undefined;
  }

  rotate(id: string, sha256: string, actor: string, now: number): ApiKeyRecord | undefined {
    const before = this.get(id);
    if (!before || before.revokedAt !== null) return undefined;
    this.db.prepare('UPDATE api_keys SET sha256 = ? WHERE id = ?').run(sha256, id);
    this.audit.append(now, actor, 'key.rotate', id, { before, after: before });
    return before;
  }

  revoke(id: string, actor: string, now: number): ApiKeyRecord | undefined {
    const before = this.get(id);
    if (!before) return undefined;
    if (before.revokedAt === null) {
      this.db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?').run(now, id);
      this.audit.append(now, actor, 'key.revoke', id, { before, after: { ...before, revokedAt: now } });
    }
    return this.get(id);
  }

  find(sha256: string): (ApiKeyRecord & { sha256: string }) | undefined {
    const r = this.db.prepare('SELECT * FROM api_keys WHERE sha256 = ?').get(sha256) as Row | undefined;
    return r ? { ...apiKeyFromRow(r), sha256 } : undefined;
  }

  list(): ApiKeyRecord[] {
    return (this.db.prepare('SELECT * FROM api_keys ORDER BY created_at').all() as Row[]).map(apiKeyFromRow);
  }
}
