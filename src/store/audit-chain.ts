import { createHash, createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { inspect } from 'node:util';
import { z } from 'zod';
import type { Row } from './store-rows.js';
import type { Script } from './store-scripts.js';
import type { AuditVerification } from './store.js';

/**
 * The audit log's chain, one model for both stores (only how rows are read and written differs).
 *
 * Each entry carries the link of the one before (`prev_hash`) and its own link (`hash`). Since the chain was keyed
 * (issue 14) a link is an HMAC-SHA256 under a key kept outside the database, so someone who can write the database
 * but not read the key cannot insert, change, remove or recompute entries without the next verification naming the
 * first entry that no longer verifies. Entries written before the chain was keyed keep their unkeyed SHA-256 links
 * and are verified with that scheme up to the keying record (`audit_keying`: the first keyed entry, the key's id and
 * an HMAC over both, so the boundary cannot be moved without the key); the first keyed entry links to the last
 * unkeyed one, so the old entries are covered by the key too.
 *
 * A chain cannot show that entries were cut off its end (the shorter chain is still a chain): anchors do. An anchor
 * (entries, head hash, key id) is written outside the database now and then; verifying against anchors reports a
 * log that no longer reaches an anchor, or reaches it with another head.
 */
export const GENESIS_HASH = '0'.repeat(64);

/** The fields of an entry that its link covers (details as the exact JSON text stored). */
export interface AuditLinkFields {
  seq: number;
  at: number;
  actor: string;
  action: string;
  target: string;
  details: string | null;
}

/** An audit row as stored: a NULL link is possible only where a row was written into the table by hand. */
export interface AuditRow extends AuditLinkFields {
  prev_hash: string | null;
  hash: string | null;
}

/** The unkeyed link of the releases before issue 14: kept only to verify the entries they wrote. */
export function unkeyedEntryHash(prevHash: string, e: AuditLinkFields): string {
  return createHash('sha256')
    .update([prevHash, e.seq, e.at, e.actor, e.action, e.target, e.details ?? ''].join('\u001f'))
    .digest('hex');
}

/**
 * The chain's key. It never leaves this object: not in JSON (logs), not in util.inspect, not in the database; what
 * is shown and stored is its id, an HMAC of a fixed text under it (names the key, reveals nothing of it).
 */
export class AuditKey {
  readonly #key: KeyObject;
  /** 16 hex digits naming the key, for messages, anchors and the keying record. */
  readonly id: string;

  constructor(bytes: Buffer) {
    if (bytes.length < 32) throw new Error('an audit key has at least 32 bytes');
    this.#key = createSecretKey(Buffer.from(bytes));
    this.id = this.#mac(['meterline audit key id']).slice(0, 16);
  }

  /** The key's bytes in hex: only to hand an in-memory key to the store's worker thread (fixedAuditKey). */
  exportHex(): string {
    return this.#key.export().toString('hex');
  }

  /** A new random key (32 bytes from the CSPRNG). */
  static random(): AuditKey {
    return new AuditKey(randomBytes(32));
  }

  /** The link of an entry keyed under this key. Fields go as a JSON array, so no field can run into the next. */
  entryHash(prevHash: string, e: AuditLinkFields): string {
    return this.#mac(['entry', prevHash, e.seq, e.at, e.actor, e.action, e.target, e.details]);
  }

  /** The keying record's own HMAC: the boundary between unkeyed and keyed entries cannot move without the key. */
  keyingMac(k: Omit<AuditKeying, 'mac'>): string {
    return this.#mac(['keyed-from', k.keyedFrom, k.keyId, k.at]);
  }

  #mac(parts: readonly unknown[]): string {
    return createHmac('sha256', this.#key).update(JSON.stringify(parts)).digest('hex');
  }

  toJSON(): { auditKeyId: string } {
    return { auditKeyId: this.id };
  }

  toString(): string {
    return `AuditKey(id ${this.id})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** Where the keyed chain starts (table audit_keying, one row, written once when the chain is keyed). */
export interface AuditKeying {
  /** The first entry linked by HMAC; earlier entries have unkeyed links. 1 for a log keyed from its start. */
  keyedFrom: number;
  keyId: string;
  at: number;
  mac: string;
}

/** An anchor: the chain's head at one moment, kept outside the database (a JSON line in a file, a log line). */
export const AuditAnchorSchema = z.object({
  anchor: z.literal('meterline-audit'),
  /** When it was taken (ISO 8601). */
  at: z.string(),
  /** The gateway instance that took it. */
  instance: z.string(),
  /** How many entries the log had: the head is entry `entries`. */
  entries: z.number().int().min(0),
  /** The head entry's link (GENESIS_HASH for an empty log). */
  head: z.string().regex(/^[0-9a-f]{64}$/),
  /** The id of the key the chain was keyed with. */
  keyId: z.string().regex(/^[0-9a-f]{16}$/),
});
export type AuditAnchor = z.infer<typeof AuditAnchorSchema>;

/** The chain's head as the store has it now. */
export interface AuditHead {
  entries: number;
  head: string;
  keyId: string;
}

/** The audit statements written once for both stores (`?` placeholders, numbered for PostgreSQL). */
export const AUDIT_SQL = {
  last: 'SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1',
  keying: 'SELECT keyed_from, key_id, at, mac FROM audit_keying',
  insertKeying: 'INSERT INTO audit_keying (keyed_from, key_id, at, mac) VALUES (?, ?, ?, ?)',
  /** Entries after a seq (the first page after Number.MIN_SAFE_INTEGER: a row numbered 0 or below is read too). */
  page: 'SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?',
} as const;

export function keyingFromRow(r: Row | undefined): AuditKeying | undefined {
  if (!r) return undefined;
  return { keyedFrom: Number(r.keyed_from), keyId: String(r.key_id), at: Number(r.at), mac: String(r.mac) };
}

/**
 * Key the chain from its end: run once, by the migration that introduces keying, in its transaction. A log that has
 * entries gets a first keyed entry `audit.chain_keyed` (how many unkeyed entries came before it, and their head),
 * so the boundary is in the log itself; an empty log is keyed from entry 1 and gets no entry.
 */
export function* keyTheChain(key: AuditKey, now: number): Script<AuditKeying> {
  const [last] = yield { sql: AUDIT_SQL.last, args: [] };
  const unkeyed = last ? Number(last.seq) : 0;
  if (unkeyed > 0) {
    yield {
      audit: { at: now, actor: 'gateway', action: 'audit.chain_keyed', target: 'audit', details: { scheme: 'hmac-sha256', keyId: key.id, unkeyedEntries: unkeyed, unkeyedHead: last!.hash } },
    };
  }
  const record = { keyedFrom: unkeyed + 1, keyId: key.id, at: now };
  const keying: AuditKeying = { ...record, mac: key.keyingMac(record) };
  yield { sql: AUDIT_SQL.insertKeying, args: [keying.keyedFrom, keying.keyId, keying.at, keying.mac] };
  return keying;
}

/** Rows of a page read for verification (PostgreSQL pages with AUDIT_SQL.page; SQLite reads in one pass). */
export const VERIFY_PAGE = 5000;

const when = (a: AuditAnchor): string => `the anchor taken at ${a.at} by ${a.instance}`;

type Failure = Extract<AuditVerification, { ok: false }>;

/**
 * Walks the chain from entry 1, checking every link under the key (unkeyed links before the keying record's
 * boundary), and each anchor: the entry an anchor names must exist and carry the anchor's head. Rows are fed in seq
 * order (`next`), by whatever reads them (SQLite in one pass, PostgreSQL a page at a time); the first problem ends it.
 */
export class AuditChainWalker {
  private prev = GENESIS_HASH;
  private entries = 0;
  private readonly anchorsAt = new Map<number, AuditAnchor[]>();
  private readonly furthest: AuditAnchor | undefined;

  constructor(
    private readonly key: AuditKey,
    private readonly keying: AuditKeying | undefined,
    private readonly anchors: readonly AuditAnchor[],
  ) {
    for (const a of anchors) if (a.entries > 0) this.anchorsAt.set(a.entries, [...(this.anchorsAt.get(a.entries) ?? []), a]);
    this.furthest = anchors.reduce<AuditAnchor | undefined>((m, a) => (!m || a.entries > m.entries ? a : m), undefined);
  }

  /** What is wrong before any entry is read: the keying record, or anchors of another key. */
  start(): Failure | undefined {
    const { key, keying } = this;
    if (!keying) return { ok: false, entries: 0, problem: 'the record of where the keyed chain starts (table audit_keying) is missing: it was deleted from the database' };
    if (keying.keyId !== key.id) return { ok: false, entries: 0, problem: `the chain was keyed with key id ${keying.keyId}, not with this key (id ${key.id})` };
    if (keying.mac !== key.keyingMac(keying)) return { ok: false, entries: 0, problem: 'the record of where the keyed chain starts (table audit_keying) was changed: its HMAC does not verify' };
    for (const a of this.anchors) {
      if (a.keyId !== key.id) return { ok: false, entries: 0, problem: `${when(a)} names key id ${a.keyId}, but this log is keyed with ${key.id}: the anchors belong to another log, or this chain was recomputed under another key` };
    }
    return undefined;
  }

  next(r: AuditRow): Failure | undefined {
    const seq = Number(r.seq);
    const expectedSeq = this.entries + 1;
    const entries = ++this.entries;
    if (seq < expectedSeq) return { ok: false, entries, badSeq: seq, problem: `an entry numbered ${seq} comes before entry ${expectedSeq}: it was written into the table directly, not by the gateway` };
    if (seq > expectedSeq) return { ok: false, entries, badSeq: expectedSeq, problem: `entry ${expectedSeq} is missing (the next entry is ${seq})` };
    if (r.hash === null || r.prev_hash === null) return { ok: false, entries, badSeq: seq, problem: `entry ${seq} has no chain link: it was written into the table directly, not by the gateway` };
    if (r.prev_hash !== this.prev) return { ok: false, entries, badSeq: seq, problem: `entry ${seq} does not chain to entry ${seq - 1}` };
    const fields = { seq, at: Number(r.at), actor: r.actor, action: r.action, target: r.target, details: r.details };
    if (seq < this.keying!.keyedFrom) {
      if (r.hash !== unkeyedEntryHash(this.prev, fields)) return { ok: false, entries, badSeq: seq, problem: `entry ${seq} was changed after it was written` };
    } else if (r.hash !== this.key.entryHash(this.prev, fields)) {
      return { ok: false, entries, badSeq: seq, problem: `entry ${seq} does not verify under the audit key: it was changed, inserted, or recomputed without the key` };
    }
    for (const a of this.anchorsAt.get(seq) ?? []) {
      if (a.head !== r.hash) return { ok: false, entries, badSeq: seq, problem: `entry ${seq} is not the entry ${when(a)} saw: the log was rewritten from there on` };
    }
    this.prev = r.hash;
    return undefined;
  }

  /** After the last row: a log shorter than its keying boundary or than an anchor lost its tail. */
  finish(): AuditVerification {
    const { entries, keying, furthest } = this;
    if (keying!.keyedFrom > 1 && entries < keying!.keyedFrom) {
      return { ok: false, entries, badSeq: entries + 1, problem: `entries from ${entries + 1} on are missing: the chain was keyed at entry ${keying!.keyedFrom} and the log now ends at ${entries} (its tail was cut off)` };
    }
    if (furthest && furthest.entries > entries) {
      return { ok: false, entries, badSeq: entries + 1, problem: `entries ${entries + 1} to ${furthest.entries} are missing: ${when(furthest)} saw ${furthest.entries} entries and the log now has ${entries} (its tail was cut off)` };
    }
    return { ok: true, entries, lastHash: this.prev, keyId: this.key.id, keyedFrom: keying!.keyedFrom, anchorsChecked: this.anchors.length };
  }
}

/** Verify rows read in one pass (SQLite); `rows` is opened only once the keying record checks out. */
export function verifyAuditRows(rows: () => Iterable<AuditRow>, key: AuditKey, keying: AuditKeying | undefined, anchors: readonly AuditAnchor[] = []): AuditVerification {
  const walker = new AuditChainWalker(key, keying, anchors);
  const bad = walker.start();
  if (bad) return bad;
  for (const r of rows()) {
    const failure = walker.next(r);
    if (failure) return failure;
  }
  return walker.finish();
}
