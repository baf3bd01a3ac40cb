import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { auditAnchorFile, auditKeyFile } from '../../src/config/audit-files.js';
import { AuditKey, unkeyedEntryHash } from '../../src/store/audit-chain.js';
import { startGateway } from '../../src/gateway.js';
import { databaseHands, type DatabaseHands } from '../harness/audit-tamper.js';
import { startGatewayFixture, type GatewayFixture, type TestMeter } from '../harness/gateway-fixture.js';

/**
 * The audit chain against someone with the gateway's database but not its key (issue 14), judged the way an auditor
 * would: by the built `audit-verify` command's exit code and words, and by GET /v1/audit/verify. The gateway runs on
 * SQLite here and on PostgreSQL in postgres-audit-chain.test.ts.
 */
const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'audit-verify.js');
const meters: TestMeter[] = [
  { meterId: 'AUD-1', profileId: 'acme-em340-fw2.4', initialRelay: 'disconnected' },
  { meterId: 'AUD-2', profileId: 'acme-em340-fw2.4', initialRelay: 'disconnected' },
];

let f: GatewayFixture;
let db: DatabaseHands;
let n = 0;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
/** The built command on the gateway's store: `--db` for SQLite, DATABASE_URL and the schema for PostgreSQL. */
const verify = async (args: string[] = [], env: Record<string, string> = {}): Promise<Run> => {
  const store = f.gateway.config.store;
  const pg = store.kind === 'postgres' ? store.postgres : null;
  // The key as an operator would find it: beside the SQLite file (--db), or the configured key file.
  const where = pg
    ? { args: [], env: { DATABASE_URL: pg.url, METERLINE__STORE__POSTGRES__SCHEMA: pg.schema ?? '', METERLINE__AUDIT__KEYFILE: auditKeyFile(f.gateway.config)! } }
    : { args: ['--db', store.sqlite.path], env: { DATABASE_URL: '' } };
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...where.args, ...args], { env: { ...process.env, METERLINE_AUDIT_KEY: '', ...where.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
};
const apiVerify = async () => (await f.http('GET', '/v1/audit/verify', { key: f.supervisorKey })).body;
const head = async (): Promise<number> => (await apiVerify()).entries as number;

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`);
});

beforeEach(async () => {
  f = await startGatewayFixture(meters);
  const store = f.gateway.config.store;
  db = databaseHands(store.kind === 'postgres' && store.postgres ? { postgres: { url: store.postgres.url, schema: store.postgres.schema! } } : { sqlite: store.sqlite.path });
  // Some history: meters registered, two reconnects carried out.
  for (const meterId of ['AUD-1', 'AUD-2']) {
    const r = await f.http('POST', `/v1/meters/${meterId}/reconnect`, { key: f.billingKey, headers: { 'idempotency-key': `aud-${++n}` }, body: { reason: 'payment' } });
    expect(r.status).toBe(202);
    expect((await f.waitForOrder(r.body.id)).state).toBe('done');
  }
  expect(await apiVerify()).toMatchObject({ ok: true });
}, 60_000);

afterEach(async () => {
  await f.stop();
});

describe('the audit chain is keyed with a key outside the database', () => {
  it('the key is made on first start in a file of its own (mode 0600), and is in neither the database, the API nor the anchors', async () => {
    const keyFile = auditKeyFile(f.gateway.config)!;
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const keyHex = readFileSync(keyFile, 'utf8').trim();
    expect(keyHex).toMatch(/^[0-9a-f]{64}$/);
    const dump = await db.dump();
    expect(dump.length).toBeGreaterThan(1000);
    expect(dump).toContain('order.reconnect');
    expect(dump.toLowerCase()).not.toContain(keyHex);
    expect(dump).not.toContain(Buffer.from(keyHex, 'hex').toString('latin1'));
    const body = JSON.stringify(await apiVerify());
    expect(body).toContain(new AuditKey(Buffer.from(keyHex, 'hex')).id);
    expect(body).not.toContain(keyHex);
    const anchors = readFileSync(auditAnchorFile(f.gateway.config)!, 'utf8');
    expect(anchors).toContain('"anchor":"meterline-audit"');
    expect(anchors).not.toContain(keyHex);
    const ok = await verify();
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('chain intact');
  });

  it('a row inserted with plain SQL is refused; inserted after dropping the guards it is reported with its seq (exit 3, and by the API), also after a restart', async () => {
    const seq = (await head()) + 1;
    const intruder = 'INSERT INTO audit (seq, at, actor, action, target, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL)';
    const values = [seq, Date.now(), 'sup-x', 'order.approve', 'AUD-1'];
    await expect(db.sql(intruder, values)).rejects.toThrow(/chain link|null/i);
    await db.dropAuditGuards();
    await db.sql(intruder, values);
    const tampered = await verify();
    expect(tampered.code).toBe(3);
    expect(tampered.stdout).toContain(`TAMPERED at entry ${seq}: entry ${seq} has no chain link`);
    // A restart runs the migrations again; the row stays unlinked and reported.
    await f.restartGateway();
    expect(await apiVerify()).toMatchObject({ ok: false, badSeq: seq });
    const again = await verify();
    expect(again.code).toBe(3);
    expect(again.stdout).toContain(`TAMPERED at entry ${seq}`);
  });

  it('the whole chain recomputed without the key (the unkeyed SHA-256 links, or another key) is reported from entry 1', async () => {
    await db.dropAuditGuards();
    const [approve] = await db.sql("SELECT seq FROM audit WHERE action = 'order.reconnect' LIMIT 1");
    await db.sql("UPDATE audit SET actor = 'someone-else' WHERE seq = ?", [Number(approve!.seq)]);
    await db.relink(unkeyedEntryHash);
    const unkeyed = await verify();
    expect(unkeyed.code).toBe(3);
    expect(unkeyed.stdout).toContain('TAMPERED at entry 1: entry 1 does not verify under the audit key');
    const other = AuditKey.random();
    await db.relink((prev, e) => other.entryHash(prev, e));
    expect((await verify()).code).toBe(3);
    expect(await apiVerify()).toMatchObject({ ok: false, badSeq: 1 });
  });

  it('a cut-off tail is not seen without an anchor (exit 0, and it says so); with --anchor, and by the API against the gateway’s anchors, it is', async () => {
    // The anchors the gateway wrote: at start, and at the stop and start of a restart (covering everything so far).
    await f.restartGateway();
    const anchorFile = auditAnchorFile(f.gateway.config)!;
    const entries = await head();
    expect(readFileSync(anchorFile, 'utf8')).toContain(`"entries":${entries}`);
    await db.dropAuditGuards();
    await db.sql('DELETE FROM audit WHERE seq > ?', [entries - 3]);

    const blind = await verify();
    expect(blind.code).toBe(0);
    expect(blind.stdout).toContain(`${entries - 3} entries, chain intact (no anchors given: a cut-off tail would not show)`);
    const anchored = await verify(['--anchor', anchorFile]);
    expect(anchored.code).toBe(3);
    expect(anchored.stdout).toContain(`TAMPERED at entry ${entries - 2}: entries ${entries - 2} to ${entries} are missing`);
    expect(anchored.stdout).toContain('its tail was cut off');
    expect(await apiVerify()).toMatchObject({ ok: false, badSeq: entries - 2 });
  });

  it('a key missing, malformed or not the log’s: the command says which (exit 4, not 3); the gateway refuses to start and makes no key in its place', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ml-audit-key-'));
    const missing = await verify(['--key-file', join(dir, 'nothing-here.key')]);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/E_AUDIT_KEY_MISSING: the audit log was keyed with key id [0-9a-f]{16} on .*but there is no key in .*nothing-here\.key/);

    const garbled = 'this-is-not-hex-' + randomBytes(8).toString('hex');
    writeFileSync(join(dir, 'garbled.key'), garbled);
    const malformed = await verify(['--key-file', join(dir, 'garbled.key')]);
    expect(malformed.code).toBe(4);
    expect(malformed.stderr).toContain('E_AUDIT_KEY_INVALID');
    expect(malformed.stderr).not.toContain(garbled);

    writeFileSync(join(dir, 'other.key'), randomBytes(32).toString('hex'));
    const wrong = await verify(['--key-file', join(dir, 'other.key')]);
    expect(wrong.code).toBe(4);
    expect(wrong.stderr).toMatch(/E_AUDIT_KEY_MISMATCH: the audit log was keyed with key id ([0-9a-f]{16}).*the key in .*other\.key has id (?!\1)[0-9a-f]{16}/);
    // The environment wins over the file, and is judged the same way.
    expect((await verify([], { METERLINE_AUDIT_KEY: randomBytes(32).toString('hex') })).code).toBe(4);
    // An anchor file that cannot be read is a usage problem (2), not a verdict.
    expect((await verify(['--anchor', join(dir, 'no-anchors.jsonl')])).code).toBe(2);

    // The gateway on the same database with its key file gone: refused at start, no new key made there. (The fixture's
    // gateway stops first: a SQLite file is one running gateway's, and a second start would be refused for that.)
    await f.gateway.stop();
    const config = { ...f.gateway.config, api: { ...f.gateway.config.api, port: 0 }, audit: { ...f.gateway.config.audit, keyFile: join(dir, 'gone.key') } };
    await expect(startGateway(config)).rejects.toMatchObject({ code: 'E_AUDIT_KEY_MISSING' });
    expect(existsSync(join(dir, 'gone.key'))).toBe(false);
    await expect(startGateway({ ...config, audit: { ...config.audit, keyFile: join(dir, 'other.key') } })).rejects.toMatchObject({ code: 'E_AUDIT_KEY_MISMATCH' });
  });
});
