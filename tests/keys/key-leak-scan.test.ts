import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { startGateway, type RunningGateway } from '../../src/gateway.js';
import { createCipheriv } from 'node:crypto';

/**
 * Issue 15: key bytes never reach a user. Keys are imported through the API (plain and wrapped), then everything a
 * user could see is searched for any key's bytes (hex in both cases, base64, base64url, and the raw bytes in files):
 * the API's answers (the import, its replay and a refused import, the meter's key sets, the audit log and its
 * exports), the gateway's log output, the SQLite file (and its WAL), the PostgreSQL rows. The search is shown to
 * work first: a key planted in the log, the audit and the store is found in each.
 */

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const pgSchemas: string[] = [];
afterAll(async () => {
  if (pgSchemas.length === 0) return;
  const c = new pg.Client({ connectionString: DATABASE_URL });
  await c.connect();
  for (const s of pgSchemas) await c.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
  await c.end();
});

/** The forms a key could take where a user looks. */
function needles(key: Buffer): string[] {
  return [key.toString('hex'), key.toString('hex').toUpperCase(), key.toString('base64'), key.toString('base64url')];
}

/** Where each key shows up in each place: text places by their text forms, files also by their raw bytes. */
function findLeaks(places: Record<string, string | Buffer>, keys: Record<string, Buffer>): string[] {
  const found: string[] = [];
  for (const [where, content] of Object.entries(places)) {
    for (const [name, key] of Object.entries(keys)) {
      const forms = needles(key);
      const hit = typeof content === 'string' ? forms.some((f) => content.includes(f)) : content.includes(key) || forms.some((f) => content.includes(Buffer.from(f)));
      if (hit) found.push(`${name} in ${where}`);
    }
  }
  return found;
}

const wrap = (key: Buffer, kek: Buffer) => {
  const c = createCipheriv('id-aes128-wrap', kek, Buffer.from('A6A6A6A6A6A6A6A6', 'hex'));
  return Buffer.concat([c.update(key), c.final()]).toString('hex');
};

describe.each(['sqlite', 'postgres'] as const)('no key bytes anywhere a user looks: %s', (kind) => {
  let gateway: RunningGateway | undefined;
  afterAll(async () => {
    await gateway?.stop();
  });

  it('imports keys (plain and wrapped), then finds none of them, nor the key master or the transport key, in answers, audit, logs or the store; a planted key is found', async () => {
    const master = randomBytes(32);
    const transport = randomBytes(16);
    const keys: Record<string, Buffer> = { master, transport };
    const meter = (i: number) => {
      const k = { ek: randomBytes(16), ak: randomBytes(16), kek: randomBytes(16) };
      keys[`M-${i} GUEK`] = k.ek;
      keys[`M-${i} GAK`] = k.ak;
      keys[`M-${i} KEK`] = k.kek;
      return k;
    };
    const m = [1, 2, 3, 4].map(meter);
    const st = '4D4D4D0000BC614E';
    const plainCsv = `meter id,system title,GUEK,GAK,KEK\n${m.slice(0, 2).map((k, i) => `M-${i + 1},${st},${k.ek.toString('hex')},${k.ak.toString('hex')},${k.kek.toString('hex')}`).join('\n')}\n`;
    const wrappedJson = JSON.stringify(m.slice(2).map((k, i) => ({ meterId: `M-${i + 3}`, systemTitle: st, guek: wrap(k.ek, transport), gak: wrap(k.ak, transport), kek: wrap(k.kek, transport) })));

    let logText = '';
    const logger = pino({ level: 'trace' }, { write: (s: string) => void (logText += s) });
    const dir = mkdtempSync(join(tmpdir(), 'ml-leak-'));
    const schema = `ml_leak_${randomBytes(5).toString('hex')}`;
    if (kind === 'postgres') pgSchemas.push(schema);
    const base = loadConfig({});
    const config = ConfigSchema.parse({
      ...base,
      instanceId: 'leak',
      api: { ...base.api, host: '127.0.0.1', port: 0 },
      store:
        kind === 'sqlite'
          ? { kind: 'sqlite', sqlite: { path: join(dir, 'gw.db') }, postgres: null }
          : { kind: 'postgres', sqlite: { path: 'unused.db' }, postgres: { url: DATABASE_URL, schema, maxConnections: 4 } },
      audit: { ...base.audit, keyFile: join(dir, 'audit.key'), anchorFile: join(dir, 'audit-anchors.jsonl') },
      auth: { keys: [], demoKeys: true },
      fleet: { seed: null },
      simulator: { ...base.simulator, inProcess: false },
      demo: { reconnectEveryMs: 0 },
      log: { level: 'trace' },
    });
    gateway = await startGateway(config, { logger, env: { METERLINE_KEY_MASTER: master.toString('hex'), METERLINE_TRANSPORT_KEY_ACME: transport.toString('base64') } });
    const admin = gateway.demoKeys!.admin;
    const answers: Record<string, string> = {};
    const call = async (name: string, method: string, path: string, body?: unknown, idem?: string) => {
      const res = await fetch(gateway!.apiUrl + path, {
        method,
        headers: { authorization: `Bearer ${admin}`, ...(body ? { 'content-type': 'application/json', 'idempotency-key': idem ?? randomBytes(8).toString('hex') } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      answers[name] = await res.text();
      let parsed: any = null;
      try {
        parsed = JSON.parse(answers[name]!);
      } catch {
        /* NDJSON, CSV */
      }
      return { status: res.status, body: parsed };
    };

    const plain = await call('import', 'POST', '/v1/meter-keys/import', { format: 'csv', content: plainCsv }, 'imp-1');
    expect(plain.status).toBe(200);
    expect(plain.body).toMatchObject({ imported: 2, created: 2 });
    expect((await call('replay', 'POST', '/v1/meter-keys/import', { format: 'csv', content: plainCsv }, 'imp-1')).body).toEqual(plain.body);
    const wrapped = await call('wrapped import', 'POST', '/v1/meter-keys/import', { format: 'json', content: wrappedJson, wrappedWithEnv: 'METERLINE_TRANSPORT_KEY_ACME' });
    expect(wrapped).toMatchObject({ status: 200, body: { imported: 2, created: 2 } });
    // A refused import whose bad row holds a key: 400 naming the row and field, and nothing of it stored.
    const badCsv = `meter id,system title,GUEK,GAK\nM-9,${st},${m[0]!.ek.toString('hex')},${m[0]!.ak.toString('hex').slice(0, 30)}\n`;
    expect(await call('refused import', 'POST', '/v1/meter-keys/import', { format: 'csv', content: badCsv })).toMatchObject({ status: 400, body: { code: 'E_KEY_FILE_INVALID', details: { errors: [{ row: 1, field: 'authenticationKey' }] } } });
    const listed = await call('key sets', 'GET', '/v1/meters/M-1/keys');
    expect(listed.body.keySets).toEqual([expect.objectContaining({ keySetId: plain.body.keySets[0].keySetId, state: 'current' })]);
    expect((await call('refused meter key sets', 'GET', '/v1/meters/M-9/keys')).body.keySets).toEqual([]);
    await call('audit', 'GET', '/v1/audit?limit=1000');
    await call('audit ndjson', 'GET', '/v1/audit/export');
    await call('audit csv', 'GET', '/v1/audit/export?format=csv');
    expect(answers.audit).toContain('meter_keys.import');
    // The keyring opens them: they are really there, sealed.
    expect((await gateway.keyring.keysFor('M-3'))!.encryptionKey).toEqual(m[2]!.ek);

    const storePlaces = async (): Promise<Record<string, string | Buffer>> => {
      if (kind === 'sqlite') {
        return Object.fromEntries(readdirSync(dir).filter((f) => f.startsWith('gw.db')).map((f) => [`the store file ${f}`, readFileSync(join(dir, f))]));
      }
      const c = new pg.Client({ connectionString: DATABASE_URL });
      await c.connect();
      try {
        const tables = (await c.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1`, [schema])).rows.map((r) => r.table_name as string);
        const dump: string[] = [];
        for (const t of tables) dump.push(...(await c.query(`SELECT row_to_json(x)::text AS j FROM ${schema}.${t} x`)).rows.map((r) => r.j as string));
        return { 'the PostgreSQL rows': dump.join('\n') };
      } finally {
        await c.end();
      }
    };
    const places = async () => ({ ...Object.fromEntries(Object.entries(answers).map(([k, v]) => [`the API answer "${k}"`, v])), 'the log output': logText, ...(await storePlaces()) });

    expect(logText.length).toBeGreaterThan(1000); // the gateway did log (requests, the import)
    expect(findLeaks(await places(), keys)).toEqual([]);

    // The search finds a key that did leak: planted in the log, the audit and so the store.
    logger.info({ note: `planted ${m[1]!.ak.toString('hex')}` }, 'planted');
    await gateway.store.appendAudit({ at: Date.now(), actor: 'test', action: 'planted', target: 'M-2', details: { k: m[1]!.kek.toString('base64') } });
    await call('audit', 'GET', '/v1/audit?limit=1000');
    const found = findLeaks(await places(), keys);
    expect(found).toContain('M-2 GAK in the log output');
    expect(found).toContain('M-2 KEK in the API answer "audit"');
    expect(found.filter((f) => f.startsWith(kind === 'sqlite' ? 'M-2 KEK in the store file gw.db' : 'M-2 KEK in the PostgreSQL rows'))).toHaveLength(1);
  }, 60_000);
});
